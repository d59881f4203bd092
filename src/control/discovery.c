/* SPDX-License-Identifier: MIT */
/* DNS service discovery on the main loop: one UDP query at a time per group, a timer for
 * timeouts and for the next lookup (at the answer's TTL, bounded by the group's interval
 * and a floor), and the registry updated from each good answer. */
#include "discovery.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>

#include "clock.h"
#include "config.h"
#include "dns.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "registry.h"
#include "target.h"
#include "worker.h"

#define QUERY_TIMEOUT_MS 2000
#define RETRY_MAX_MS     5000 /* a failed lookup is retried at least this often */
#define TTL_FLOOR_MS     1000 /* never look up more often than this, whatever the TTL */
#define MAX_RECORDS      4096
#define MAX_WEIGHT       999

struct found {
    struct bth_addr addr;
    unsigned weight;
};

struct found_set {
    struct found *v; /* owned */
    size_t n, cap;
};

enum phase { PHASE_MAIN, PHASE_SRV_TARGETS };

struct dgroup {
    struct bth_discovery *d;
    char *group; /* owned */
    /* the discovery block, copied (the config may go away on reload) */
    char *name; /* owned */
    enum bth_dns_type type;
    unsigned port;
    uint64_t interval_ms;
    struct bth_addr *resolvers; /* owned copy; none: the system's */
    size_t nresolvers;
    struct found_set known; /* registered from the last good answer */
    /* the lookup under way */
    int fd;
    struct event *io, *timer; /* owned */
    bool in_flight;
    bool refused; /* the resolver's port was unreachable (ICMP): retry without waiting */
    uint16_t qid, qtype;
    char qname[BTH_DNS_NAME_MAX];
    unsigned resolver, tries;
    enum phase phase;
    struct bth_dns_record *srv; /* owned: SRV records whose targets are being resolved */
    size_t nsrv, srv_next;
    struct found_set found;
    uint32_t min_ttl;
    /* status */
    bool failing, seen;
    char last_error[BTH_DNS_NAME_MAX + 64];
    uint64_t failures, last_ok_ms;
    size_t ntargets;
};

struct bth_discovery {
    struct event_base *base;  /* borrowed */
    struct bth_registry *reg; /* borrowed */
    bth_discovery_changed_cb cb;
    void *arg;
    struct dgroup **groups; /* owned */
    size_t ngroups;
    struct bth_addr sys[3]; /* nameservers of /etc/resolv.conf */
    size_t nsys;
    struct bth_dns_record *recs; /* owned: answer scratch, MAX_RECORDS */
};

static void lookup_start(struct dgroup *g);
static void on_readable(evutil_socket_t fd, short what, void *arg);

static const char *type_name(enum bth_dns_type t)
{
    return t == BTH_DNS_A ? "A" : t == BTH_DNS_AAAA ? "AAAA" : "SRV";
}

/* ---- system resolvers ------------------------------------------------------------------ */

static void load_resolv_conf(struct bth_discovery *d)
{
    FILE *f = fopen("/etc/resolv.conf", "r");
    char line[256];
    while (f != NULL && d->nsys < 3 && fgets(line, sizeof(line), f) != NULL) {
        char ip[128];
        if (sscanf(line, " nameserver %127s", ip) == 1 &&
            bth_addr_from_ip_port(ip, 53, &d->sys[d->nsys]) == 0)
            d->nsys++;
    }
    if (f != NULL)
        fclose(f);
    if (d->nsys == 0 && bth_addr_from_ip_port("127.0.0.1", 53, &d->sys[0]) == 0)
        d->nsys = 1; /* what the C library assumes without a nameserver line */
}

/* ---- found sets ----------------------------------------------------------------------- */

static int found_add(struct found_set *s, const struct bth_addr *a, unsigned weight)
{
    for (size_t i = 0; i < s->n; i++) {
        if (bth_addr_equal(&s->v[i].addr, a))
            return 0; /* the same address twice (two SRV names): once is enough */
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct found *v = bth_realloc(s->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (struct found){*a, weight};
    return 0;
}

static bool found_has(const struct found_set *s, const struct bth_addr *a)
{
    for (size_t i = 0; i < s->n; i++) {
        if (bth_addr_equal(&s->v[i].addr, a))
            return true;
    }
    return false;
}

/* The target an A or AAAA record names. Returns 0, or -1 for an address berth cannot send
 * traffic to (0.0.0.0, multicast...: some resolvers answer 0.0.0.0 for blocked names), which
 * is left out of the answer. */
static int record_addr(const struct bth_dns_record *r, unsigned port, struct bth_addr *out)
{
    char ip[INET6_ADDRSTRLEN];
    const char *why;
    int af = r->type == BTH_DNS_TYPE_A ? AF_INET : AF_INET6;
    if (inet_ntop(af, r->addr, ip, sizeof(ip)) == NULL || bth_addr_from_ip_port(ip, port, out) != 0)
        return -1;
    if (!bth_addr_usable(out, &why)) {
        bth_log(BTH_LOG_DEBUG, "discovery: %s left out: %s", out->text, why);
        return -1;
    }
    return 0;
}

/* ---- applying an answer ----------------------------------------------------------------- */

/* Registers what is new in <g->found>, drains what left; returns true when anything
 * changed. Targets that were in the group before (config, API) are left as they are. */
static bool apply_found(struct dgroup *g)
{
    struct bth_registry *reg = g->d->reg;
    struct bth_reg_group *rg = bth_registry_find_group(reg, g->group);
    if (rg == NULL)
        return false;
    bool changed = false;
    for (size_t i = 0; i < g->found.n; i++) {
        const struct found *f = &g->found.v[i];
        struct bth_target *t = bth_registry_find_target(rg, &f->addr);
        bool draining = t != NULL && bth_registry_find_drain(reg, t) != NULL;
        if (t != NULL && !draining)
            continue;
        if (bth_registry_register(reg, rg, &f->addr, f->weight) != 0)
            continue; /* out of memory: the next answer tries again */
        if (t == NULL && (t = bth_registry_find_target(rg, &f->addr)) != NULL)
            t->discovered = true;
        changed = true;
    }
    uint64_t now = bth_clock_mono_ms();
    for (size_t i = 0; i < g->known.n; i++) {
        const struct bth_addr *a = &g->known.v[i].addr;
        if (!found_has(&g->found, a) && bth_registry_drain(reg, rg, a, now) == 1) {
            bth_log(BTH_LOG_INFO, "target group %s: %s left %s, draining", g->group, a->text,
                    g->name);
            changed = true;
        }
    }
    struct found_set old = g->known;
    g->known = g->found;
    g->found = old;
    g->found.n = 0;
    return changed;
}

/* ---- lookups -------------------------------------------------------------------------- */

static void schedule(struct dgroup *g, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(g->timer, &tv);
}

static void end_query(struct dgroup *g)
{
    g->in_flight = false;
    g->refused = false;
    if (g->fd >= 0) {
        event_del(g->io);
        close(g->fd);
        g->fd = -1;
    }
}

static void lookup_failed(struct dgroup *g, const char *why)
{
    end_query(g);
    g->failures++;
    if (!g->failing || strcmp(g->last_error, why) != 0)
        bth_log(BTH_LOG_WARN,
                "target group %s: DNS lookup of %s %s failed: %s; keeping the %zu targets of "
                "the last good answer",
                g->group, type_name(g->type), g->name, why, g->known.n);
    g->failing = true;
    snprintf(g->last_error, sizeof(g->last_error), "%s", why);
    schedule(g, g->interval_ms < RETRY_MAX_MS ? g->interval_ms : RETRY_MAX_MS);
}

static void lookup_done(struct dgroup *g)
{
    end_query(g);
    if (g->found.n == 0) {
        lookup_failed(g, g->type == BTH_DNS_SRV ? "the SRV targets have no addresses"
                                                : "empty answer");
        return;
    }
    if (g->failing)
        bth_log(BTH_LOG_NOTICE, "target group %s: DNS lookup of %s works again", g->group, g->name);
    g->failing = false;
    g->last_error[0] = '\0';
    g->last_ok_ms = bth_clock_mono_ms();
    g->ntargets = g->found.n;
    uint64_t ttl_ms = (uint64_t)g->min_ttl * 1000;
    if (apply_found(g) && g->d->cb != NULL)
        g->d->cb(g->d->arg);
    schedule(g, ttl_ms < TTL_FLOOR_MS     ? TTL_FLOOR_MS
                : ttl_ms > g->interval_ms ? g->interval_ms
                                          : ttl_ms);
}

static void send_query(struct dgroup *g)
{
    struct bth_discovery *d = g->d;
    const struct bth_addr *list = g->nresolvers ? g->resolvers : d->sys;
    size_t n = g->nresolvers ? g->nresolvers : d->nsys;
    const struct bth_addr *r = &list[g->resolver % n];
    uint8_t q[BTH_DNS_NAME_MAX + 64];
    end_query(g);
    evutil_secure_rng_get_bytes(&g->qid, sizeof(g->qid));
    size_t len = bth_dns_build_query(g->qid, g->qname, g->qtype, q, sizeof(q));
    g->fd = socket(r->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (len == 0 || g->fd < 0 || connect(g->fd, (const struct sockaddr *)&r->ss, r->len) != 0 ||
        send(g->fd, q, len, 0) != (ssize_t)len) {
        char why[BTH_DNS_NAME_MAX + 96];
        if (len == 0)
            snprintf(why, sizeof(why), "cannot ask for %s: not a valid DNS name", g->qname);
        else
            snprintf(why, sizeof(why), "cannot query %s: %s", r->text, strerror(errno));
        lookup_failed(g, why);
        return;
    }
    event_assign(g->io, d->base, g->fd, EV_READ | EV_PERSIST, on_readable, g);
    event_add(g->io, NULL);
    g->in_flight = true;
    schedule(g, QUERY_TIMEOUT_MS);
}

static void ask(struct dgroup *g, const char *name, uint16_t qtype)
{
    snprintf(g->qname, sizeof(g->qname), "%s", name);
    g->qtype = qtype;
    g->tries = 0;
    send_query(g);
}

static unsigned srv_weight(uint16_t w)
{
    return w == 0 ? 1 : w > MAX_WEIGHT ? MAX_WEIGHT : w; /* ELB weights are 0..999 */
}

static void note_ttl(struct dgroup *g, uint32_t ttl)
{
    if (ttl < g->min_ttl)
        g->min_ttl = ttl;
}

/* Asks for the address of the next SRV target the answer did not carry, or finishes. */
static void next_srv_target(struct dgroup *g)
{
    if (g->srv_next < g->nsrv)
        ask(g, g->srv[g->srv_next].target, BTH_DNS_TYPE_A);
    else
        lookup_done(g);
}

/* SRV answer: the lowest priority's records (RFC 2782: the others are backups). Targets
 * whose addresses came in the additional section are taken at once; the others are asked
 * for one by one (A records). */
static void on_srv_answer(struct dgroup *g, const struct bth_dns_answer *a)
{
    size_t nsrv = 0;
    int best = 70000;
    for (size_t i = 0; i < a->n; i++) {
        if (a->records[i].type == BTH_DNS_TYPE_SRV && a->records[i].priority < best)
            best = a->records[i].priority;
    }
    bth_free(g->srv);
    g->srv = bth_calloc(a->n ? a->n : 1, sizeof(*g->srv));
    if (g->srv == NULL) {
        lookup_failed(g, "out of memory");
        return;
    }
    for (size_t i = 0; i < a->n; i++) {
        const struct bth_dns_record *s = &a->records[i];
        if (s->type != BTH_DNS_TYPE_SRV || s->priority != best || s->port == 0 ||
            strcmp(s->target, "") == 0)
            continue;
        note_ttl(g, s->ttl);
        bool resolved = false;
        for (size_t j = 0; j < a->n; j++) {
            const struct bth_dns_record *r = &a->records[j];
            struct bth_addr addr;
            if ((r->type == BTH_DNS_TYPE_A || r->type == BTH_DNS_TYPE_AAAA) &&
                strcmp(r->name, s->target) == 0 && record_addr(r, s->port, &addr) == 0) {
                found_add(&g->found, &addr, srv_weight(s->weight));
                note_ttl(g, r->ttl);
                resolved = true;
            }
        }
        if (!resolved)
            g->srv[nsrv++] = *s;
    }
    if (best == 70000) {
        lookup_failed(g, "no SRV records");
        return;
    }
    g->nsrv = nsrv;
    g->srv_next = 0;
    g->phase = PHASE_SRV_TARGETS;
    next_srv_target(g);
}

static void on_answer(struct dgroup *g, const struct bth_dns_answer *a)
{
    static const char *const rcodes[] = {"NOERROR",  "FORMERR", "SERVFAIL",
                                         "NXDOMAIN", "NOTIMP",  "REFUSED"};
    if (a->rcode != 0) {
        char why[BTH_DNS_NAME_MAX + 32];
        snprintf(why, sizeof(why), "%s for %s", a->rcode < 6 ? rcodes[a->rcode] : "error",
                 g->qname);
        if (g->phase == PHASE_SRV_TARGETS) {
            g->srv_next++; /* one SRV target without an address: go on with the others */
            next_srv_target(g);
        } else {
            lookup_failed(g, why);
        }
        return;
    }
    if (g->phase == PHASE_MAIN && g->type == BTH_DNS_SRV) {
        on_srv_answer(g, a);
        return;
    }
    uint16_t want = g->qtype;
    unsigned port = g->phase == PHASE_SRV_TARGETS ? g->srv[g->srv_next].port : g->port;
    unsigned weight = g->phase == PHASE_SRV_TARGETS ? srv_weight(g->srv[g->srv_next].weight) : 1;
    for (size_t i = 0; i < a->n; i++) {
        struct bth_addr addr;
        if (a->records[i].type == want && record_addr(&a->records[i], port, &addr) == 0 &&
            found_add(&g->found, &addr, weight) == 0)
            note_ttl(g, a->records[i].ttl);
    }
    if (g->phase == PHASE_SRV_TARGETS) {
        g->srv_next++;
        next_srv_target(g);
    } else {
        lookup_done(g);
    }
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct dgroup *g = arg;
    uint8_t buf[BTH_DNS_UDP_MAX + 512];
    (void)what;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == ECONNREFUSED) { /* ICMP: nothing listens there: no need to wait */
                g->refused = true;
                schedule(g, 0);
            }
            return; /* EAGAIN; or an error the timeout turns into a retry */
        }
        struct bth_dns_answer a = {.records = g->d->recs, .cap = MAX_RECORDS};
        if (bth_dns_parse_answer(buf, (size_t)n, g->qid, g->qname, g->qtype, &a) != 0)
            continue; /* not the answer to this query (late, spoofed, garbled): wait on */
        on_answer(g, &a);
        return;
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct dgroup *g = arg;
    (void)fd;
    (void)what;
    if (!g->in_flight) {
        lookup_start(g);
        return;
    }
    /* No answer in time, or refused: ask the next resolver (or the only one once more). */
    size_t n = g->nresolvers ? g->nresolvers : g->d->nsys;
    bool refused = g->refused;
    g->refused = false;
    if (++g->tries < (n > 1 ? n : 2)) {
        g->resolver++;
        send_query(g);
        return;
    }
    char why[BTH_DNS_NAME_MAX + 64];
    if (refused)
        snprintf(why, sizeof(why), "resolver refused the connection (port unreachable) for %s",
                 g->qname);
    else
        snprintf(why, sizeof(why), "no answer for %s in %d ms", g->qname, QUERY_TIMEOUT_MS);
    lookup_failed(g, why);
}

static void lookup_start(struct dgroup *g)
{
    static const uint16_t qtypes[] = {BTH_DNS_TYPE_A, BTH_DNS_TYPE_AAAA, BTH_DNS_TYPE_SRV};
    g->phase = PHASE_MAIN;
    g->found.n = 0;
    g->nsrv = 0;
    g->min_ttl = UINT32_MAX;
    ask(g, g->name, qtypes[g->type]);
}

/* ---- groups ------------------------------------------------------------------------- */

static void dgroup_free(struct dgroup *g)
{
    if (g == NULL)
        return;
    end_query(g);
    if (g->io)
        event_free(g->io);
    if (g->timer)
        event_free(g->timer);
    bth_free(g->group);
    bth_free(g->name);
    bth_free(g->resolvers);
    bth_free(g->known.v);
    bth_free(g->found.v);
    bth_free(g->srv);
    bth_free(g);
}

static bool same_block(const struct dgroup *g, const struct bth_cfg_discovery *c)
{
    if (strcmp(g->name, c->dns) != 0 || g->type != c->type || g->port != c->port ||
        g->interval_ms != c->interval_ms || g->nresolvers != c->nresolvers)
        return false;
    for (size_t i = 0; i < c->nresolvers; i++) {
        if (!bth_addr_equal(&g->resolvers[i], &c->resolvers[i]))
            return false;
    }
    return true;
}

/* Copies the block into <g>; returns 0 or -1. */
static int take_block(struct dgroup *g, const struct bth_cfg_discovery *c)
{
    char *name = bth_strdup(c->dns);
    struct bth_addr *rs = NULL;
    if (c->nresolvers > 0 && (rs = bth_calloc(c->nresolvers, sizeof(*rs))) != NULL)
        memcpy(rs, c->resolvers, c->nresolvers * sizeof(*rs));
    if (name == NULL || (c->nresolvers > 0 && rs == NULL)) {
        bth_free(name);
        bth_free(rs);
        return -1;
    }
    bth_free(g->name);
    bth_free(g->resolvers);
    g->name = name;
    g->resolvers = rs;
    g->nresolvers = c->nresolvers;
    g->type = c->type;
    g->port = c->port;
    g->interval_ms = c->interval_ms;
    g->resolver = 0;
    return 0;
}

static struct dgroup *dgroup_new(struct bth_discovery *d, const char *group,
                                 const struct bth_cfg_discovery *c)
{
    struct dgroup *g = bth_calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->d = d;
    g->fd = -1;
    g->group = bth_strdup(group);
    g->io = event_new(d->base, -1, 0, on_readable, g);
    g->timer = event_new(d->base, -1, 0, on_timer, g);
    if (g->group == NULL || g->io == NULL || g->timer == NULL || take_block(g, c) != 0) {
        dgroup_free(g);
        return NULL;
    }
    return g;
}

/* A removed block: what it registered drains, as if its records had gone. */
static void dgroup_retire(struct dgroup *g)
{
    end_query(g);
    g->found.n = 0;
    if (apply_found(g) && g->d->cb != NULL)
        g->d->cb(g->d->arg);
    dgroup_free(g);
}

static struct dgroup *find_dgroup(const struct bth_discovery *d, const char *group)
{
    for (size_t i = 0; i < d->ngroups; i++) {
        if (strcmp(d->groups[i]->group, group) == 0)
            return d->groups[i];
    }
    return NULL;
}

int bth_discovery_sync(struct bth_discovery *d)
{
    struct bth_registry *reg = d->reg;
    struct dgroup **next = bth_calloc(reg->ngroups ? reg->ngroups : 1, sizeof(*next));
    if (next == NULL)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < d->ngroups; i++)
        d->groups[i]->seen = false;
    for (size_t i = 0; i < reg->ngroups; i++) {
        const struct bth_reg_group *rg = &reg->groups[i];
        const struct bth_cfg_discovery *c = &rg->cfg->discovery;
        if (c->dns == NULL)
            continue;
        struct dgroup *g = find_dgroup(d, rg->name);
        if (g != NULL) {
            g->seen = true;
            if (!same_block(g, c) && take_block(g, c) == 0) {
                end_query(g);
                lookup_start(g); /* the known set stays: the new answer is diffed with it */
            }
        } else if ((g = dgroup_new(d, rg->name, c)) != NULL) {
            g->seen = true;
            lookup_start(g);
        }
        if (g != NULL)
            next[n++] = g;
    }
    for (size_t i = 0; i < d->ngroups; i++) {
        if (!d->groups[i]->seen)
            dgroup_retire(d->groups[i]);
    }
    bth_free(d->groups);
    d->groups = next;
    d->ngroups = n;
    return 0;
}

struct bth_discovery *bth_discovery_create(struct event_base *base, struct bth_registry *reg,
                                           bth_discovery_changed_cb cb, void *arg)
{
    struct bth_discovery *d = bth_calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->base = base;
    d->reg = reg;
    d->cb = cb;
    d->arg = arg;
    d->recs = bth_calloc(MAX_RECORDS, sizeof(*d->recs));
    if (d->recs == NULL) {
        bth_free(d);
        return NULL;
    }
    load_resolv_conf(d);
    return d;
}

void bth_discovery_destroy(struct bth_discovery *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->ngroups; i++)
        dgroup_free(d->groups[i]);
    bth_free(d->groups);
    bth_free(d->recs);
    bth_free(d);
}

bool bth_discovery_status(const struct bth_discovery *d, const char *group,
                          struct bth_discovery_status *out)
{
    const struct dgroup *g = d != NULL ? find_dgroup(d, group) : NULL;
    if (g == NULL)
        return false;
    out->name = g->name;
    out->type = type_name(g->type);
    out->failing = g->failing;
    out->last_error = g->last_error;
    out->failures = g->failures;
    out->targets = g->ntargets;
    out->last_ok_age_ms = g->last_ok_ms ? (int64_t)(bth_clock_mono_ms() - g->last_ok_ms) : -1;
    return true;
}

void bth_discovery_metrics(const struct bth_discovery *d, struct evbuffer *out)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"berth_discovery_targets", "gauge", "Addresses in the last good DNS answer per group."},
        {"berth_discovery_failing", "gauge",
         "1 while a group's DNS lookups fail (its last good set of targets is kept)."},
        {"berth_discovery_failures_total", "counter", "Failed DNS lookups per group."},
    };
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        bth_metrics_family(out, fam[f].name, fam[f].type, fam[f].help);
        for (size_t i = 0; d != NULL && i < d->ngroups; i++) {
            const struct dgroup *g = d->groups[i];
            unsigned long long v = f == 0 ? g->ntargets : f == 1 ? g->failing : g->failures;
            evbuffer_add_printf(out, "%s{target_group=\"%s\"} %llu\n", fam[f].name, g->group, v);
        }
    }
}
