/* SPDX-License-Identifier: MIT */
/* Maglev lookup tables and flow hashes for NLB-mode groups. Tables are built on the main
 * thread and never written after; workers pick from them lock-free. Invariant: a table is a
 * function of the multiset of (address text, weight) of its targets only, so instances
 * agree, and every slot holds the array index of a target with weight > 0. */
#include "flow_hash.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "target.h"

/* Fixed SipHash keys. They are part of the contract between berth instances (and between
 * versions running side by side during an upgrade): changing one moves every flow. A fixed
 * key lets a client aim many flows at one target by choosing source ports, but it can do
 * that by opening connections anyway; agreement between instances matters more here.
 * The bytes are ASCII "berth-flow-hash1", "berth-maglev-off", "berth-maglev-skp". */
static const uint8_t flow_key[16] = {0x62, 0x65, 0x72, 0x74, 0x68, 0x2d, 0x66, 0x6c,
                                     0x6f, 0x77, 0x2d, 0x68, 0x61, 0x73, 0x68, 0x31};
/* Maglev hashes a backend name twice, with independent functions, for offset and skip. */
static const uint8_t offset_key[16] = {0x62, 0x65, 0x72, 0x74, 0x68, 0x2d, 0x6d, 0x61,
                                       0x67, 0x6c, 0x65, 0x76, 0x2d, 0x6f, 0x66, 0x66};
static const uint8_t skip_key[16] = {0x62, 0x65, 0x72, 0x74, 0x68, 0x2d, 0x6d, 0x61,
                                     0x67, 0x6c, 0x65, 0x76, 0x2d, 0x73, 0x6b, 0x70};

/* Table sizes: primes, so every skip in [1, M-1] walks all slots (Maglev §3.4). The size
 * is the first one with M >= 100 * N (the paper's bound for near-even shares), but the
 * steps are wide on purpose: a size change reshuffles every flow, so groups should almost
 * never cross a step. 10007 slots (20 KiB) covers up to 100 targets, 65537 (the paper's
 * default) up to 655; from 65535 targets on build refuses. */
static const uint32_t table_primes[] = {10007, 65537, 655373, 6553621};

/* Further slots tried when the first one's target does not take traffic, before the scan.
 * With a fraction f of the group down, a flow reaches the scan with probability f^32. */
#define PICK_PROBES 32

#define SLOT_EMPTY UINT16_MAX

struct bth_flow_table {
    size_t n;       /* length of the targets array the table was built from */
    uint32_t m;     /* slots: a prime from table_primes; 0 when no target has weight */
    uint32_t nlive; /* targets with weight > 0 */
    uint16_t idx[]; /* m slots (array indices), then nlive array indices in address order */
};

/* ---- SipHash ---- */

static inline uint64_t rotl64(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl64(v1, 13);                                                                       \
        v1 ^= v0;                                                                                  \
        v0 = rotl64(v0, 32);                                                                       \
        v2 += v3;                                                                                  \
        v3 = rotl64(v3, 16);                                                                       \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl64(v3, 21);                                                                       \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl64(v1, 17);                                                                       \
        v1 ^= v2;                                                                                  \
        v2 = rotl64(v2, 32);                                                                       \
    } while (0)

uint64_t bth_siphash(const uint8_t key[16], const void *data, size_t len, unsigned crounds,
                     unsigned drounds)
{
    const uint8_t *in = data;
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    size_t full = len - len % 8;
    for (size_t off = 0; off < full; off += 8) {
        uint64_t m = load_le64(in + off);
        v3 ^= m;
        for (unsigned r = 0; r < crounds; r++)
            SIPROUND;
        v0 ^= m;
    }
    /* Last block: the remaining bytes, with the length's low byte on top. */
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)in[full + i] << (8 * i);
    v3 ^= b;
    for (unsigned r = 0; r < crounds; r++)
        SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    for (unsigned r = 0; r < drounds; r++)
        SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- flow hashes ---- */

/* Writes <sa>'s address as 16 bytes (IPv4 mapped into IPv6, RFC 4291 §2.5.5.2) and its
 * port in network order; zeros for a family without them. Mapping makes the hash independent
 * of whether the listener socket is IPv4 or dual-stack. */
static void put_endpoint(const struct sockaddr *sa, uint8_t addr[16], uint8_t port[2])
{
    memset(addr, 0, 16);
    memset(port, 0, 2);
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        memcpy(addr, &s6->sin6_addr, 16);
        memcpy(port, &s6->sin6_port, 2);
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        addr[10] = addr[11] = 0xff;
        memcpy(addr + 12, &s4->sin_addr, 4);
        memcpy(port, &s4->sin_port, 2);
    }
}

uint64_t bth_flow_hash_5tuple(const struct sockaddr *src, const struct sockaddr *dst, int proto)
{
    /* src addr | dst addr | src port | dst port | proto: a fixed layout, so the value is the
     * same on every host whatever its byte order. */
    uint8_t buf[16 + 16 + 2 + 2 + 1];
    put_endpoint(src, buf, buf + 32);
    put_endpoint(dst, buf + 16, buf + 34);
    buf[36] = (uint8_t)proto;
    return bth_siphash(flow_key, buf, sizeof(buf), 1, 3);
}

uint64_t bth_flow_hash_source(const struct sockaddr *src)
{
    uint8_t addr[16], port[2];
    put_endpoint(src, addr, port);
    return bth_siphash(flow_key, addr, sizeof(addr), 1, 3);
}

/* ---- Maglev table ---- */

struct build_ent {
    const char *text; /* borrowed: the target's address text */
    uint32_t index;   /* in the caller's array */
    uint32_t turns;   /* slots claimed per round: weight / gcd of weights */
    uint32_t pos;     /* next slot of this target's permutation to try */
    uint32_t skip;    /* permutation step, 1..m-1 */
};

static int cmp_ent(const void *a, const void *b)
{
    const struct build_ent *x = a, *y = b;
    int c = strcmp(x->text, y->text);
    if (c != 0)
        return c;
    /* Same address twice: the order between them cannot change the table, since both walk
     * the same permutation; the index only makes the sort total. */
    return x->index < y->index ? -1 : x->index > y->index;
}

static unsigned gcd(unsigned a, unsigned b)
{
    while (b != 0) {
        unsigned r = a % b;
        a = b;
        b = r;
    }
    return a;
}

static uint32_t choose_size(size_t nlive)
{
    size_t nprimes = sizeof(table_primes) / sizeof(table_primes[0]);
    for (size_t i = 0; i < nprimes; i++)
        if (table_primes[i] >= 100 * (uint64_t)nlive)
            return table_primes[i];
    return table_primes[nprimes - 1];
}

struct bth_flow_table *bth_flow_table_build(struct bth_target *const *targets, size_t n)
{
    struct bth_flow_table *t = NULL;
    struct build_ent *ent = NULL;
    /* Indices are stored as uint16_t with UINT16_MAX as the empty mark. */
    if (n == 0 || n >= SLOT_EMPTY)
        return NULL;

    size_t nlive = 0;
    unsigned g = 0;
    for (size_t i = 0; i < n; i++) {
        if (targets[i]->weight > 0) {
            nlive++;
            g = gcd(targets[i]->weight, g);
        }
    }
    uint32_t m = nlive > 0 ? choose_size(nlive) : 0;
    t = bth_malloc(sizeof(*t) + ((size_t)m + nlive) * sizeof(t->idx[0]));
    if (t == NULL)
        goto fail;
    t->n = n;
    t->m = m;
    t->nlive = (uint32_t)nlive;
    if (nlive == 0)
        return t;

    ent = bth_malloc(nlive * sizeof(*ent));
    if (ent == NULL)
        goto fail;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct bth_target *tg = targets[i];
        if (tg->weight == 0)
            continue;
        const char *text = tg->addr.text;
        size_t tlen = strnlen(text, sizeof(tg->addr.text));
        ent[k].text = text;
        ent[k].index = (uint32_t)i;
        /* Dividing by the gcd makes weights {2, 2} build the same table as {1, 1}. */
        ent[k].turns = tg->weight / g;
        ent[k].pos = (uint32_t)(bth_siphash(offset_key, text, tlen, 1, 3) % m);
        ent[k].skip = (uint32_t)(bth_siphash(skip_key, text, tlen, 1, 3) % (m - 1)) + 1;
        k++;
    }
    /* Array order differs between instances (registration order, config order); address
     * order does not, and the fill below gives earlier entries first claim on contested
     * slots, so it must run in address order. */
    qsort(ent, nlive, sizeof(*ent), cmp_ent);

    uint16_t *slot = t->idx, *order = t->idx + m;
    for (size_t i = 0; i < nlive; i++)
        order[i] = (uint16_t)ent[i].index;
    for (size_t i = 0; i < m; i++)
        slot[i] = SLOT_EMPTY;
    /* Maglev population (paper, Pseudocode 1): targets take turns claiming the next free
     * slot of their own permutation offset, offset + skip, offset + 2 * skip, ... (mod m).
     * Taking turns gives each target m / N slots to within one per round; the permutations
     * keep most slots with their owner when the set changes. A target always finds a free
     * slot within m steps since m is prime, so the loop ends once all m are taken. */
    size_t filled = 0;
    for (;;) {
        for (size_t i = 0; i < nlive; i++) {
            struct build_ent *e = &ent[i];
            for (uint32_t turn = 0; turn < e->turns; turn++) {
                uint32_t c = e->pos;
                while (slot[c] != SLOT_EMPTY) {
                    c += e->skip;
                    if (c >= m)
                        c -= m;
                }
                slot[c] = (uint16_t)e->index;
                c += e->skip;
                e->pos = c >= m ? c - m : c;
                if (++filled == m)
                    goto out;
            }
        }
    }
out:
    bth_free(ent);
    return t;
fail:
    bth_free(ent);
    bth_free(t);
    return NULL;
}

void bth_flow_table_destroy(struct bth_flow_table *t)
{
    bth_free(t);
}

size_t bth_flow_table_size(const struct bth_flow_table *t)
{
    return t->m;
}

/* splitmix64's finalizer: a cheap bijective mix, so successive probe values of one flow are
 * unrelated to each other and to other flows' first slots. */
static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

struct bth_target *bth_flow_table_pick(const struct bth_flow_table *t,
                                       struct bth_target *const *targets, size_t n, uint64_t hash)
{
    if (t == NULL || t->m == 0 || n != t->n)
        return NULL;
    const uint16_t *slot = t->idx, *order = t->idx + t->m;
    struct bth_target *tg = targets[slot[hash % t->m]];
    if (bth_target_takes_traffic(tg))
        return tg;
    /* The first target is out: try a sequence of slots that depends on the flow only, so
     * the flow lands where any instance would put it and comes back when its target does.
     * Random slots spread the flows over the others in proportion to their shares. */
    uint64_t h = hash;
    for (unsigned i = 0; i < PICK_PROBES; i++) {
        h += 0x9e3779b97f4a7c15ULL;
        tg = targets[slot[mix64(h) % t->m]];
        if (bth_target_takes_traffic(tg))
            return tg;
    }
    /* Most of the group is out: walk all targets in address order from a flow-dependent
     * start, which is bounded and still the same on every instance. */
    size_t start = (size_t)(mix64(hash) % t->nlive);
    for (size_t i = 0; i < t->nlive; i++) {
        tg = targets[order[(start + i) % t->nlive]];
        if (bth_target_takes_traffic(tg))
            return tg;
    }
    return NULL;
}
