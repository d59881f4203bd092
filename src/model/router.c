/* SPDX-License-Identifier: MIT */
/* Build: main thread. Match: worker threads, concurrently; the router is never written
 * after bth_router_build returns, so matching takes no lock and allocates nothing.
 *
 * Rules are compiled into one hash table of literal keys so that a request only looks at
 * the few rules that can match it, whatever the number of rules:
 *  - a host pattern is keyed by its literal suffix (the text after its last wildcard:
 *    "*.example.com" -> ".example.com", "api.example.com" -> itself, exact);
 *  - a path pattern by its literal prefix ("/api/x*" -> "/api/x", "/a/?/b" -> "/a/");
 *  - a rule with both host and path conditions is keyed by (host key, path key): its path
 *    keys live in a sub-scope of each of its host keys, so "100 hosts x 100 paths" rules
 *    still give one candidate per request instead of 100.
 * A request hashes every suffix of its host and every prefix of its path once (rolling
 * hashes), and probes only the key lengths that occur in the config (a bitmap per scope);
 * a small Bloom filter keeps missing probes off the big table. Each hit gives a list of
 * rule ranks, ascending; a list is walked only up to the best rank found so far, and each
 * candidate is verified on its remaining conditions. Keys that cannot decide alone (a
 * wildcard before the literal, or longer than KEY_MAX) mark their entries "verify". Rules
 * with neither a host nor a path condition are unindexed and checked on every request.
 * Invariant: the result equals a linear scan in (priority, array index) order. */
#include "router.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "http_head.h"
#include "mem.h"
#include "uri.h"

/* Longest literal used as a key. Longer literals are cut to this (and their entries
 * verified), so the per-request rolling hashes fit a small stack array. */
#define KEY_MAX      128
#define LENSET_WORDS ((KEY_MAX + 64) / 64) /* bitmap of key lengths 0..KEY_MAX */

enum { DIM_HOST = 0, DIM_PATH = 1 };
/* Which list of a slot: EXACT entries match only when the whole host or path is the key;
 * ANCHOR entries match when it ends (host) or starts (path) with the key. */
enum { K_EXACT = 0, K_ANCHOR = 1 };

/* A list entry: rank << 2 | flags. A flag says that reaching this list already proves the
 * rule's host (path) condition, so it is not evaluated again. */
#define E_HOST_OK 1u
#define E_PATH_OK 2u
#define E_SHIFT   2

#define FNV_BASIS 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

struct pat {
    uint32_t off; /* into strs */
    uint32_t len;
    uint8_t wild; /* has '*' or '?' */
};

struct range {
    uint32_t off; /* into the array the field names */
    uint32_t n;
};

/* A header or query condition: a key and its OR-ed value patterns. */
struct kv {
    uint32_t key;      /* index into pats; lowercase */
    struct range vals; /* into pats; lowercase */
    bool any_key;      /* query key "" or "*" */
};

struct cidr {
    uint8_t family; /* AF_INET, AF_INET6, 0 = unparsable (never matches) */
    uint8_t bits;
    uint8_t addr[16]; /* masked to <bits> */
};

/* One rule, in rank order (ascending priority). */
struct rrule {
    uint32_t index;      /* into l->rules */
    struct range host;   /* pats, lowercase */
    struct range path;   /* pats */
    struct range method; /* pats */
    struct range cidr;   /* cidrs */
    struct range hdr;    /* kvs */
    struct range query;  /* kvs */
};

/* A hash table slot: one literal key in one scope. */
struct slot {
    uint64_t hash;        /* final hash; 0 = empty slot */
    uint32_t key_off;     /* into strs: host keys lowercase */
    uint32_t key_len;     /* <= KEY_MAX */
    uint32_t scope;       /* host keys: 0; path keys: 0 (top level) or a host key's sub-scope */
    uint8_t dim;          /* DIM_HOST | DIM_PATH */
    struct range list[2]; /* [K_EXACT], [K_ANCHOR]: entries in lists[], ascending rank */
    uint32_t sub[2];      /* host keys: scope holding the path keys of rules with both
                           * conditions, per kind; 0 = none */
};

/* The path keys of one scope: which lengths to probe. */
struct scope {
    uint64_t lens[LENSET_WORDS]; /* ANCHOR key lengths present */
    bool has_exact;              /* any EXACT key (probed at the path's own length) */
};

struct bth_router {
    uint32_t nrules;
    struct rrule *rules;    /* owned, rank order */
    struct pat *pats;       /* owned */
    struct kv *kvs;         /* owned */
    struct cidr *cidrs;     /* owned */
    char *strs;             /* owned: pattern text */
    uint32_t *lists;        /* owned: entries of all slot lists and the unindexed list */
    struct range unindexed; /* rules with neither host nor path condition */
    struct slot *slots;     /* owned, power-of-two size */
    size_t slot_mask;
    uint64_t *bloom; /* owned, power-of-two words */
    size_t bloom_mask;
    struct scope *scopes; /* owned; [0] = top-level paths */
    uint32_t nscopes;
    uint64_t host_lens[LENSET_WORDS]; /* host ANCHOR key lengths */
    bool host_exact;
    bool any_host;     /* any host key at all */
    bool top_paths;    /* any path key in scope 0 */
    uint32_t host_max; /* longest host key */
    uint32_t path_max; /* longest path key, any scope */
};

/* ------------------------------------------------------------------------------------ */
/* Character and hash helpers */

static inline unsigned char lc(unsigned char c)
{
    return (unsigned char)(c - 'A') < 26 ? (unsigned char)(c + 32) : c;
}

/* Mixes the rolling hash of a key with what else identifies it (murmur3's finalizer), so
 * equal text in another scope or dimension lands elsewhere. Never 0: 0 marks empty slots. */
static inline uint64_t final_hash(uint64_t h, size_t len, unsigned dim, uint32_t scope)
{
    h ^= (uint64_t)len * 0x9e3779b97f4a7c15ull ^ ((uint64_t)scope << 8) ^ dim;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h != 0 ? h : 1;
}

static inline uint64_t bloom_bits(uint64_t fh)
{
    return (1ull << ((fh >> 28) & 63)) | (1ull << ((fh >> 34) & 63));
}

static inline size_t bloom_word(const struct bth_router *r, uint64_t fh)
{
    return (size_t)(fh >> 40) & r->bloom_mask;
}

/* ------------------------------------------------------------------------------------ */
/* Matching primitives */

enum { G_CS, G_CI, G_PCT }; /* input: as is; lowercased; percent-decoded and lowercased */

/* Reads the input character at <i> in <mode>; returns the index after it. */
static inline size_t next_char(const char *s, size_t i, size_t n, int mode, unsigned char *c)
{
    unsigned char ch = (unsigned char)s[i];
    if (mode == G_CS) {
        *c = ch;
        return i + 1;
    }
    if (mode == G_PCT && ch == '%' && i + 2 < n) {
        int hi = bth_uri_hex_value((unsigned char)s[i + 1]),
            lo = bth_uri_hex_value((unsigned char)s[i + 2]);
        if (hi >= 0 && lo >= 0) {
            *c = lc((unsigned char)(hi << 4 | lo));
            return i + 3;
        }
        /* An invalid escape in a raw query compares as the bytes it is. */
    }
    *c = lc(ch);
    return i + 1;
}

/* Glob match of <s> against pattern <p> ('*' any run, '?' one character). Linear in
 * practice: on a mismatch only the last '*' is retried, which is enough for globs since a
 * later '*' can absorb anything an earlier one could. Patterns are lowercase for G_CI and
 * G_PCT. */
static inline bool glob(const char *p, size_t pn, const char *s, size_t sn, int mode)
{
    size_t pi = 0, si = 0, star_p = SIZE_MAX, star_s = 0;
    while (si < sn) {
        unsigned char c;
        size_t sj = next_char(s, si, sn, mode, &c);
        if (pi < pn) {
            unsigned char pc = (unsigned char)p[pi];
            if (pc == '*') {
                star_p = pi++;
                star_s = si;
                continue;
            }
            if (pc == '?' || pc == c) {
                pi++;
                si = sj;
                continue;
            }
        }
        if (star_p == SIZE_MAX)
            return false;
        pi = star_p + 1;
        star_s = next_char(s, star_s, sn, mode, &c);
        si = star_s;
    }
    while (pi < pn && p[pi] == '*')
        pi++;
    return pi == pn;
}

static inline bool pat_match(const struct bth_router *r, const struct pat *p, const char *s,
                             size_t n, int mode)
{
    const char *t = r->strs + p->off;
    if (!p->wild && mode != G_PCT) {
        if (n != p->len)
            return false;
        if (mode == G_CS)
            return n == 0 || memcmp(t, s, n) == 0;
        for (size_t i = 0; i < n; i++)
            if (lc((unsigned char)s[i]) != (unsigned char)t[i])
                return false;
        return true;
    }
    return glob(t, p->len, s, n, mode);
}

static bool any_pat(const struct bth_router *r, struct range rg, const char *s, size_t n, int mode)
{
    for (uint32_t i = 0; i < rg.n; i++)
        if (pat_match(r, &r->pats[rg.off + i], s, n, mode))
            return true;
    return false;
}

static bool cidr_match(const struct cidr *c, const uint8_t *addr)
{
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (full > 0 && memcmp(c->addr, addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return (addr[full] & mask) == c->addr[full];
}

/* An IPv4-mapped IPv6 client (a dual-stack listener) also matches IPv4 CIDRs, as the same
 * client would over an IPv4 socket. */
static bool src_match(const struct bth_router *r, struct range rg, const struct sockaddr *sa)
{
    const uint8_t *v4 = NULL, *v6 = NULL;
    if (sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        v4 = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        v6 = (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(v6, mapped, sizeof(mapped)) == 0)
            v4 = v6 + 12;
    }
    for (uint32_t i = 0; i < rg.n; i++) {
        const struct cidr *c = &r->cidrs[rg.off + i];
        if ((c->family == AF_INET && v4 != NULL && cidr_match(c, v4)) ||
            (c->family == AF_INET6 && v6 != NULL && cidr_match(c, v6)))
            return true;
    }
    return false;
}

/* Optional whitespace around a field value is not part of it (RFC 9110 section 5.5). */
static void trim_ows(const char **s, size_t *n)
{
    while (*n > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

/* True when any header named like <kv>'s key has a value matching one of its patterns. */
static bool header_match(const struct bth_router *r, const struct kv *kv,
                         const struct bth_http_head *h)
{
    const struct pat *name = &r->pats[kv->key];
    const char *lname = r->strs + name->off;
    unsigned nh = h->nhdrs < BTH_HTTP_MAX_HEADERS ? h->nhdrs : BTH_HTTP_MAX_HEADERS;
    for (unsigned i = 0; i < nh; i++) {
        const struct bth_http_hdr *hd = &h->hdrs[i];
        if (hd->name.len != name->len)
            continue;
        const char *hn = bth_span_ptr(h, hd->name);
        size_t k = 0;
        while (k < name->len && lc((unsigned char)hn[k]) == (unsigned char)lname[k])
            k++;
        if (k != name->len)
            continue;
        const char *v = bth_span_ptr(h, hd->value);
        size_t vn = hd->value.len;
        trim_ows(&v, &vn);
        if (any_pat(r, kv->vals, v, vn, G_CI))
            return true;
    }
    return false;
}

/* True when any key=value pair of the raw query <q> matches <kv>'s key pattern and one of
 * its value patterns, both compared percent-decoded. A pair without '=' has an empty value. */
static bool query_match(const struct bth_router *r, const struct kv *kv, const char *q, size_t qn)
{
    const struct pat *kp = &r->pats[kv->key];
    size_t start = 0;
    while (start < qn) {
        const char *amp = memchr(q + start, '&', qn - start);
        size_t end = amp != NULL ? (size_t)(amp - q) : qn;
        if (end > start) {
            const char *pair = q + start;
            const char *eq = memchr(pair, '=', end - start);
            size_t kn = eq != NULL ? (size_t)(eq - pair) : end - start;
            const char *val = eq != NULL ? eq + 1 : pair + kn;
            size_t vn = end - start - kn - (eq != NULL);
            if ((kv->any_key || glob(r->strs + kp->off, kp->len, pair, kn, G_PCT))) {
                for (uint32_t i = 0; i < kv->vals.n; i++) {
                    const struct pat *vp = &r->pats[kv->vals.off + i];
                    if (glob(r->strs + vp->off, vp->len, val, vn, G_PCT))
                        return true;
                }
            }
        }
        start = end + 1;
    }
    return false;
}

/* Evaluates every condition of rule <rank> except those <flags> already proved. */
static bool rule_match(const struct bth_router *r, uint32_t rank, unsigned flags,
                       const struct bth_route_input *in)
{
    const struct rrule *rr = &r->rules[rank];
    if (rr->method.n > 0 && !any_pat(r, rr->method, in->method, in->method_len, G_CS))
        return false;
    if (!(flags & E_HOST_OK) && rr->host.n > 0 &&
        !any_pat(r, rr->host, in->host, in->host_len, G_CI))
        return false;
    if (!(flags & E_PATH_OK) && rr->path.n > 0 &&
        !any_pat(r, rr->path, in->path, in->path_len, G_CS))
        return false;
    if (rr->cidr.n > 0 && !src_match(r, rr->cidr, in->src))
        return false;
    for (uint32_t i = 0; i < rr->hdr.n; i++)
        if (in->head == NULL || !header_match(r, &r->kvs[rr->hdr.off + i], in->head))
            return false;
    for (uint32_t i = 0; i < rr->query.n; i++)
        if (!query_match(r, &r->kvs[rr->query.off + i], in->query, in->query_len))
            return false;
    return true;
}

/* ------------------------------------------------------------------------------------ */
/* Matching */

/* Per-request state, on the worker's stack. */
struct mstate {
    const struct bth_router *r;
    const struct bth_route_input *in;
    uint32_t best; /* lowest matching rank so far; nrules = none */
    uint32_t plim; /* path hashes computed for lengths 0..plim */
    bool phashed;
    uint64_t ph[KEY_MAX + 1]; /* ph[n]: rolling hash of the path's first n bytes */
};

/* Walks one ascending list, stopping at the first full match or at the best rank so far. */
static void scan(struct mstate *m, struct range rg)
{
    const uint32_t *e = m->r->lists + rg.off;
    for (uint32_t i = 0; i < rg.n; i++) {
        uint32_t rank = e[i] >> E_SHIFT;
        if (rank >= m->best)
            return;
        if (rule_match(m->r, rank, e[i] & (E_HOST_OK | E_PATH_OK), m->in)) {
            m->best = rank;
            return;
        }
    }
}

static const struct slot *lookup(const struct bth_router *r, uint64_t h, unsigned dim,
                                 uint32_t scope, const char *key, size_t len)
{
    uint64_t fh = final_hash(h, len, dim, scope);
    uint64_t want = bloom_bits(fh);
    if ((r->bloom[bloom_word(r, fh)] & want) != want)
        return NULL;
    for (size_t i = fh & r->slot_mask;; i = (i + 1) & r->slot_mask) {
        const struct slot *s = &r->slots[i];
        if (s->hash == 0)
            return NULL;
        if (s->hash != fh || s->key_len != len || s->dim != dim || s->scope != scope)
            continue;
        const char *t = r->strs + s->key_off;
        size_t k = 0;
        if (dim == DIM_HOST) {
            while (k < len && lc((unsigned char)key[k]) == (unsigned char)t[k])
                k++;
        } else {
            while (k < len && key[k] == t[k])
                k++;
        }
        if (k == len)
            return s;
    }
}

static void probe_paths(struct mstate *m, uint32_t scope)
{
    const struct bth_router *r = m->r;
    const struct scope *sc = &r->scopes[scope];
    const char *path = m->in->path;
    size_t plen = m->in->path_len;
    if (!m->phashed) {
        /* Once per request, shared by every scope the host probes lead to. */
        uint64_t h = FNV_BASIS;
        m->plim = (uint32_t)(plen < r->path_max ? plen : r->path_max);
        m->ph[0] = h;
        for (uint32_t i = 0; i < m->plim; i++) {
            h = (h ^ (unsigned char)path[i]) * FNV_PRIME;
            m->ph[i + 1] = h;
        }
        m->phashed = true;
    }
    bool exact_done = false;
    for (unsigned w = 0; w < LENSET_WORDS && w * 64 <= m->plim; w++) {
        uint64_t bits = sc->lens[w];
        while (bits != 0) {
            uint32_t len = w * 64 + (uint32_t)__builtin_ctzll(bits);
            bits &= bits - 1;
            if (len > m->plim)
                break;
            const struct slot *s = lookup(r, m->ph[len], DIM_PATH, scope, path, len);
            if (s == NULL)
                continue;
            scan(m, s->list[K_ANCHOR]);
            if (len == plen) {
                scan(m, s->list[K_EXACT]);
                exact_done = true;
            }
        }
    }
    if (sc->has_exact && !exact_done && plen <= m->plim) {
        const struct slot *s = lookup(r, m->ph[plen], DIM_PATH, scope, path, plen);
        if (s != NULL)
            scan(m, s->list[K_EXACT]);
    }
}

/* Visits a host slot reached with the whole host (<exact>) or a suffix of it. */
static void host_hit(struct mstate *m, const struct slot *s, bool exact)
{
    scan(m, s->list[K_ANCHOR]);
    if (s->sub[K_ANCHOR] != 0)
        probe_paths(m, s->sub[K_ANCHOR]);
    if (exact) {
        scan(m, s->list[K_EXACT]);
        if (s->sub[K_EXACT] != 0)
            probe_paths(m, s->sub[K_EXACT]);
    }
}

static void probe_hosts(struct mstate *m)
{
    const struct bth_router *r = m->r;
    const char *host = m->in->host != NULL ? m->in->host : ""; /* no Host: offsets stay valid */
    size_t hlen = m->in->host != NULL ? m->in->host_len : 0;
    uint32_t lim = (uint32_t)(hlen < r->host_max ? hlen : r->host_max);
    uint64_t hh[KEY_MAX + 1]; /* hh[n]: rolling hash of the host's last n bytes, lowercase */
    uint64_t h = FNV_BASIS;
    hh[0] = h;
    for (uint32_t i = 0; i < lim; i++) {
        h = (h ^ lc((unsigned char)host[hlen - 1 - i])) * FNV_PRIME;
        hh[i + 1] = h;
    }
    bool exact_done = false;
    for (unsigned w = 0; w < LENSET_WORDS && w * 64 <= lim; w++) {
        uint64_t bits = r->host_lens[w];
        while (bits != 0) {
            uint32_t len = w * 64 + (uint32_t)__builtin_ctzll(bits);
            bits &= bits - 1;
            if (len > lim)
                break;
            const struct slot *s = lookup(r, hh[len], DIM_HOST, 0, host + hlen - len, len);
            if (s == NULL)
                continue;
            host_hit(m, s, len == hlen);
            exact_done |= len == hlen;
        }
    }
    if (r->host_exact && !exact_done && hlen <= lim) {
        const struct slot *s = lookup(r, hh[hlen], DIM_HOST, 0, host, hlen);
        if (s != NULL)
            host_hit(m, s, true);
    }
}

int bth_router_match(const struct bth_router *r, const struct bth_route_input *in)
{
    struct mstate m;
    m.r = r;
    m.in = in;
    m.best = r->nrules;
    m.phashed = false;
    m.plim = 0;
    if (r->unindexed.n > 0)
        scan(&m, r->unindexed);
    if (r->top_paths)
        probe_paths(&m, 0);
    if (r->any_host)
        probe_hosts(&m);
    return m.best < r->nrules ? (int)r->rules[m.best].index : -1;
}

/* ------------------------------------------------------------------------------------ */
/* Building */

/* A growable list of entries for one slot and kind, build time only. */
struct blist {
    uint32_t *v; /* owned */
    uint32_t n, cap;
};

struct builder {
    struct bth_router *r;
    size_t npats, cap_pats;
    size_t nkvs, cap_kvs;
    size_t ncidrs, cap_cidrs;
    size_t nstrs, cap_strs;
    size_t cap_scopes;
    struct blist (*bl)[2]; /* owned, parallel to r->slots */
    struct blist unindexed;
    bool oom;
};

/* Makes room for one more item in a growable array. */
static bool grow(struct builder *b, void **arr, size_t *cap, size_t n, size_t size)
{
    if (b->oom)
        return false;
    if (n < *cap)
        return true;
    size_t ncap = *cap != 0 ? *cap * 2 : 16;
    void *p = bth_realloc(*arr, ncap * size);
    if (p == NULL) {
        b->oom = true;
        return false;
    }
    *arr = p;
    *cap = ncap;
    return true;
}

/* Appends <s> to the string pool, lowercased when <lower>; returns its offset. */
static uint32_t add_str(struct builder *b, const char *s, size_t n, bool lower)
{
    while (b->nstrs + n + 1 > b->cap_strs) {
        if (!grow(b, (void **)&b->r->strs, &b->cap_strs, b->cap_strs, 1))
            return 0;
    }
    uint32_t off = (uint32_t)b->nstrs;
    for (size_t i = 0; i < n; i++)
        b->r->strs[off + i] = lower ? (char)lc((unsigned char)s[i]) : s[i];
    b->r->strs[off + n] = '\0';
    b->nstrs += n + 1;
    return off;
}

/* Percent-decodes <s> in place (query patterns: "k%20ey" and "k ey" mean the same key, as
 * request keys are compared decoded). Invalid escapes and "%00" stay as written. */
static void decode_pattern(char *s)
{
    char *o = s;
    for (const char *i = s; *i != '\0'; i++) {
        int hi, lo;
        if (i[0] == '%' && (hi = bth_uri_hex_value((unsigned char)i[1])) >= 0 &&
            (lo = bth_uri_hex_value((unsigned char)i[2])) >= 0 && (hi | lo) != 0) {
            *o++ = (char)(hi << 4 | lo);
            i += 2;
        } else {
            *o++ = *i;
        }
    }
    *o = '\0';
}

/* Adds one pattern: lowercased when <lower>, percent-decoded when <decode>. */
static uint32_t add_pat(struct builder *b, const char *s, bool lower, bool decode)
{
    if (s == NULL)
        s = "";
    if (!grow(b, (void **)&b->r->pats, &b->cap_pats, b->npats, sizeof(struct pat)))
        return 0;
    size_t n = strlen(s);
    uint32_t off = add_str(b, s, n, lower);
    if (b->oom)
        return 0;
    char *t = b->r->strs + off;
    if (decode) {
        decode_pattern(t);
        n = strlen(t);
        if (lower)
            for (size_t i = 0; i < n; i++)
                t[i] = (char)lc((unsigned char)t[i]);
    }
    struct pat *p = &b->r->pats[b->npats];
    p->off = off;
    p->len = (uint32_t)n;
    p->wild = strpbrk(t, "*?") != NULL;
    return (uint32_t)b->npats++;
}

static struct range add_pats(struct builder *b, const struct bth_strlist *sl, bool lower,
                             bool decode)
{
    struct range rg = {(uint32_t)b->npats, 0};
    for (size_t i = 0; i < sl->n; i++)
        add_pat(b, sl->v[i], lower, decode);
    rg.n = (uint32_t)(b->npats - rg.off);
    return rg;
}

static struct range add_kvs(struct builder *b, const struct bth_cfg_kv_cond *c, size_t n,
                            bool query)
{
    struct range rg = {(uint32_t)b->nkvs, 0};
    for (size_t i = 0; i < n; i++) {
        if (!grow(b, (void **)&b->r->kvs, &b->cap_kvs, b->nkvs, sizeof(struct kv)))
            break;
        struct kv kv;
        const char *key = c[i].key != NULL ? c[i].key : "";
        kv.key = add_pat(b, key, true, query);
        kv.vals = add_pats(b, &c[i].values, true, query);
        kv.any_key = query && (strcmp(key, "") == 0 || strcmp(key, "*") == 0);
        b->r->kvs[b->nkvs++] = kv;
    }
    rg.n = (uint32_t)(b->nkvs - rg.off);
    return rg;
}

/* "10.0.0.0/8", "fd00::/8" into binary form, masked. config.c validated the text already;
 * anything unparsable here gets family 0 and never matches. */
static void parse_cidr(const char *s, struct cidr *c)
{
    memset(c, 0, sizeof(*c));
    const char *slash = s != NULL ? strchr(s, '/') : NULL;
    char ip[INET6_ADDRSTRLEN];
    if (slash == NULL || (size_t)(slash - s) >= sizeof(ip))
        return;
    memcpy(ip, s, (size_t)(slash - s));
    ip[slash - s] = '\0';
    char *end;
    unsigned long bits = strtoul(slash + 1, &end, 10);
    if (*end != '\0' || end == slash + 1)
        return;
    if (inet_pton(AF_INET, ip, c->addr) == 1 && bits <= 32)
        c->family = AF_INET;
    else if (inet_pton(AF_INET6, ip, c->addr) == 1 && bits <= 128)
        c->family = AF_INET6;
    else
        return;
    c->bits = (uint8_t)bits;
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? (unsigned)bits - 8 * i : 0;
        c->addr[i] &= (uint8_t)(0xff00u >> keep);
    }
}

static struct range add_cidrs(struct builder *b, const struct bth_strlist *sl)
{
    struct range rg = {(uint32_t)b->ncidrs, 0};
    for (size_t i = 0; i < sl->n; i++) {
        if (!grow(b, (void **)&b->r->cidrs, &b->cap_cidrs, b->ncidrs, sizeof(struct cidr)))
            break;
        parse_cidr(sl->v[i], &b->r->cidrs[b->ncidrs++]);
    }
    rg.n = (uint32_t)(b->ncidrs - rg.off);
    return rg;
}

/* The index key of one host or path pattern. */
struct key {
    uint32_t off, len; /* into strs */
    uint8_t kind;      /* K_EXACT | K_ANCHOR */
    bool ok;           /* reaching the key proves the pattern matches */
    uint64_t h;        /* rolling hash as the matcher computes it */
};

/* Host: the literal after the last wildcard, matched as a suffix. "*.a.com" proves a
 * match; "api-?.a.com" only narrows the candidates. */
static struct key host_key(const struct bth_router *r, const struct pat *p)
{
    const char *s = r->strs + p->off;
    struct key k = {p->off, p->len, K_EXACT, true, FNV_BASIS};
    if (p->wild) {
        size_t w = p->len;
        while (s[w - 1] != '*' && s[w - 1] != '?')
            w--;
        k.kind = K_ANCHOR;
        k.off = p->off + (uint32_t)w;
        k.len = p->len - (uint32_t)w;
        for (size_t i = 0; i < w; i++)
            k.ok = k.ok && s[i] == '*';
    }
    if (k.len > KEY_MAX) {
        k.off += k.len - KEY_MAX;
        k.len = KEY_MAX;
        k.kind = K_ANCHOR;
        k.ok = false;
    }
    for (uint32_t i = k.len; i-- > 0;)
        k.h = (k.h ^ (unsigned char)r->strs[k.off + i]) * FNV_PRIME;
    return k;
}

/* Path: the literal before the first wildcard, matched as a prefix. "/api/x*" proves a
 * match; "/a/?/b" only narrows the candidates. */
static struct key path_key(const struct bth_router *r, const struct pat *p)
{
    const char *s = r->strs + p->off;
    struct key k = {p->off, p->len, K_EXACT, true, FNV_BASIS};
    if (p->wild) {
        size_t f = strcspn(s, "*?");
        k.kind = K_ANCHOR;
        k.len = (uint32_t)f;
        for (size_t i = f; i < p->len; i++)
            k.ok = k.ok && s[i] == '*';
    }
    if (k.len > KEY_MAX) {
        k.len = KEY_MAX;
        k.kind = K_ANCHOR;
        k.ok = false;
    }
    for (uint32_t i = 0; i < k.len; i++)
        k.h = (k.h ^ (unsigned char)r->strs[k.off + i]) * FNV_PRIME;
    return k;
}

/* Finds or adds the slot of (<dim>, <scope>, <k>) in the build table. */
static size_t slot_of(struct builder *b, unsigned dim, uint32_t scope, const struct key *k)
{
    struct bth_router *r = b->r;
    uint64_t fh = final_hash(k->h, k->len, dim, scope);
    size_t i = fh & r->slot_mask;
    for (;; i = (i + 1) & r->slot_mask) {
        struct slot *s = &r->slots[i];
        if (s->hash == 0)
            break;
        if (s->hash == fh && s->dim == dim && s->scope == scope && s->key_len == k->len &&
            memcmp(r->strs + s->key_off, r->strs + k->off, k->len) == 0)
            return i;
    }
    struct slot *s = &r->slots[i];
    s->hash = fh;
    s->key_off = k->off;
    s->key_len = k->len;
    s->scope = scope;
    s->dim = (uint8_t)dim;
    return i;
}

static void push(struct builder *b, struct blist *l, uint32_t e)
{
    /* Rules arrive in rank order: a rule already at the tail had another pattern with the
     * same key. Either entry being reached proves what its own flag says, so both hold. */
    if (l->n > 0 && (l->v[l->n - 1] >> E_SHIFT) == (e >> E_SHIFT)) {
        l->v[l->n - 1] |= e;
        return;
    }
    size_t cap = l->cap;
    if (!grow(b, (void **)&l->v, &cap, l->n, sizeof(uint32_t)))
        return;
    l->cap = (uint32_t)cap;
    l->v[l->n++] = e;
}

static uint32_t new_scope(struct builder *b)
{
    struct bth_router *r = b->r;
    if (!grow(b, (void **)&r->scopes, &b->cap_scopes, r->nscopes, sizeof(struct scope)))
        return 0;
    memset(&r->scopes[r->nscopes], 0, sizeof(struct scope));
    return r->nscopes++;
}

/* Indexes rule <rank> under its host keys, path keys, or both (see the file comment). */
static void index_rule(struct builder *b, uint32_t rank)
{
    struct bth_router *r = b->r;
    const struct rrule *rr = &r->rules[rank];
    uint32_t base = rank << E_SHIFT;
    if (rr->host.n == 0 && rr->path.n == 0) {
        push(b, &b->unindexed, base | E_HOST_OK | E_PATH_OK);
        return;
    }
    if (rr->host.n == 0) {
        for (uint32_t j = 0; j < rr->path.n && !b->oom; j++) {
            struct key pk = path_key(r, &r->pats[rr->path.off + j]);
            size_t ps = slot_of(b, DIM_PATH, 0, &pk);
            push(b, &b->bl[ps][pk.kind], base | E_HOST_OK | (pk.ok ? E_PATH_OK : 0));
        }
        return;
    }
    for (uint32_t i = 0; i < rr->host.n && !b->oom; i++) {
        struct key hk = host_key(r, &r->pats[rr->host.off + i]);
        size_t hs = slot_of(b, DIM_HOST, 0, &hk);
        unsigned hflag = hk.ok ? E_HOST_OK : 0;
        if (rr->path.n == 0) {
            push(b, &b->bl[hs][hk.kind], base | hflag | E_PATH_OK);
            continue;
        }
        if (r->slots[hs].sub[hk.kind] == 0)
            r->slots[hs].sub[hk.kind] = new_scope(b);
        uint32_t sub = r->slots[hs].sub[hk.kind];
        for (uint32_t j = 0; j < rr->path.n && !b->oom; j++) {
            struct key pk = path_key(r, &r->pats[rr->path.off + j]);
            size_t ps = slot_of(b, DIM_PATH, sub, &pk);
            push(b, &b->bl[ps][pk.kind], base | hflag | (pk.ok ? E_PATH_OK : 0));
        }
    }
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

struct order {
    unsigned priority;
    uint32_t index;
};

static int cmp_order(const void *a, const void *b)
{
    const struct order *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Moves the build table into a right-sized final table, with the entry lists flattened
 * into r->lists and the length bitmaps and Bloom filter filled in. */
static int finish(struct builder *b, size_t build_slots)
{
    struct bth_router *r = b->r;
    struct slot *old = r->slots;
    size_t nused = 0, nentries = b->unindexed.n;
    for (size_t i = 0; i < build_slots; i++) {
        if (old[i].hash == 0)
            continue;
        nused++;
        nentries += b->bl[i][0].n + b->bl[i][1].n;
    }
    size_t nslots = pow2_at_least(nused * 2 < 8 ? 8 : nused * 2);
    size_t nbloom = pow2_at_least(nused / 4 + 1);
    r->slots = bth_calloc(nslots, sizeof(struct slot));
    r->bloom = bth_calloc(nbloom, sizeof(uint64_t));
    r->lists = bth_malloc((nentries + 1) * sizeof(uint32_t));
    if (r->slots == NULL || r->bloom == NULL || r->lists == NULL) {
        bth_free(old);
        return -1;
    }
    r->slot_mask = nslots - 1;
    r->bloom_mask = nbloom - 1;
    if (b->unindexed.n > 0)
        memcpy(r->lists, b->unindexed.v, b->unindexed.n * sizeof(uint32_t));
    r->unindexed = (struct range){0, b->unindexed.n};
    size_t off = b->unindexed.n;
    for (size_t i = 0; i < build_slots; i++) {
        struct slot s = old[i];
        if (s.hash == 0)
            continue;
        for (int k = 0; k < 2; k++) {
            struct blist *l = &b->bl[i][k];
            if (l->n > 0)
                memcpy(r->lists + off, l->v, l->n * sizeof(uint32_t));
            s.list[k] = (struct range){(uint32_t)off, l->n};
            off += l->n;
        }
        size_t j = s.hash & r->slot_mask;
        while (r->slots[j].hash != 0)
            j = (j + 1) & r->slot_mask;
        r->slots[j] = s;
        r->bloom[bloom_word(r, s.hash)] |= bloom_bits(s.hash);
        bool anchor = s.list[K_ANCHOR].n > 0 || s.sub[K_ANCHOR] != 0;
        bool exact = s.list[K_EXACT].n > 0 || s.sub[K_EXACT] != 0;
        uint64_t bit = 1ull << (s.key_len % 64);
        if (s.dim == DIM_HOST) {
            r->any_host = true;
            if (anchor)
                r->host_lens[s.key_len / 64] |= bit;
            r->host_exact |= exact;
            if (s.key_len > r->host_max)
                r->host_max = s.key_len;
        } else {
            struct scope *sc = &r->scopes[s.scope];
            r->top_paths |= s.scope == 0;
            if (anchor)
                sc->lens[s.key_len / 64] |= bit;
            sc->has_exact |= exact;
            if (s.key_len > r->path_max)
                r->path_max = s.key_len;
        }
    }
    bth_free(old);
    return 0;
}

struct bth_router *bth_router_build(const struct bth_cfg_listener *l)
{
    struct builder b;
    memset(&b, 0, sizeof(b));
    struct order *ord = NULL;
    size_t build_slots = 0;
    struct bth_router *r = bth_calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    b.r = r;
    if (l->nrules >= (1u << (32 - E_SHIFT)) - 1)
        goto fail;
    r->nrules = (uint32_t)l->nrules;
    r->rules = bth_calloc(l->nrules + 1, sizeof(struct rrule));
    ord = bth_malloc((l->nrules + 1) * sizeof(*ord));
    if (r->rules == NULL || ord == NULL || new_scope(&b) != 0) /* scope 0: top-level paths */
        goto fail;

    /* Ranks follow (priority, array index): config.c sorts already, but the contract is
     * the priority, not the array order. */
    size_t nkeys = 0;
    for (size_t i = 0; i < l->nrules; i++) {
        const struct bth_cfg_rule *cr = &l->rules[i];
        ord[i] = (struct order){cr->priority, (uint32_t)i};
        nkeys += cr->host.n + cr->host.n * cr->path.n + cr->path.n;
    }
    qsort(ord, l->nrules, sizeof(*ord), cmp_order);

    for (size_t k = 0; k < l->nrules && !b.oom; k++) {
        const struct bth_cfg_rule *cr = &l->rules[ord[k].index];
        struct rrule *rr = &r->rules[k];
        rr->index = ord[k].index;
        rr->host = add_pats(&b, &cr->host, true, false);
        rr->path = add_pats(&b, &cr->path, false, false);
        rr->method = add_pats(&b, &cr->method, false, false);
        rr->cidr = add_cidrs(&b, &cr->source_ip);
        rr->hdr = add_kvs(&b, cr->headers, cr->nheaders, false);
        rr->query = add_kvs(&b, cr->query, cr->nquery, true);
    }
    if (b.oom)
        goto fail;

    /* The build table holds every possible key at load <= 1/2; finish() right-sizes it. */
    build_slots = pow2_at_least(nkeys * 2 < 8 ? 8 : nkeys * 2);
    r->slots = bth_calloc(build_slots, sizeof(struct slot));
    b.bl = bth_calloc(build_slots, sizeof(*b.bl));
    if (r->slots == NULL || b.bl == NULL)
        goto fail;
    r->slot_mask = build_slots - 1;
    for (uint32_t k = 0; k < r->nrules && !b.oom; k++)
        index_rule(&b, k);
    if (b.oom || finish(&b, build_slots) < 0)
        goto fail;

    for (size_t i = 0; i < build_slots; i++) {
        bth_free(b.bl[i][0].v);
        bth_free(b.bl[i][1].v);
    }
    bth_free(b.bl);
    bth_free(b.unindexed.v);
    bth_free(ord);
    return r;

fail:
    if (b.bl != NULL) {
        for (size_t i = 0; i < build_slots; i++) {
            bth_free(b.bl[i][0].v);
            bth_free(b.bl[i][1].v);
        }
    }
    bth_free(b.bl);
    bth_free(b.unindexed.v);
    bth_free(ord);
    bth_router_destroy(r);
    return NULL;
}

void bth_router_destroy(struct bth_router *r)
{
    if (r == NULL)
        return;
    bth_free(r->rules);
    bth_free(r->pats);
    bth_free(r->kvs);
    bth_free(r->cidrs);
    bth_free(r->strs);
    bth_free(r->lists);
    bth_free(r->slots);
    bth_free(r->bloom);
    bth_free(r->scopes);
    bth_free(r);
}
