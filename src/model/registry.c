/* SPDX-License-Identifier: MIT */
/* Target group registry. Groups are arrays (snapshots copy them as they are) with a hash
 * index by address beside each, so a control call, a state file or a reload touching N
 * targets costs O(N) even in groups of 100k; drains are found from their target and unlink
 * in O(1), and drains ending together leave their group in one pass. */
#include "registry.h"

#include <netinet/in.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "snapshot.h"
#include "stats.h"
#include "tls.h"
#include "target.h"

static void drain_unlink(struct bth_registry *reg, struct bth_drain *d, bool run_waiters);

void bth_registry_init(struct bth_registry *reg, unsigned nworkers)
{
    memset(reg, 0, sizeof(*reg));
    reg->nworkers = nworkers;
}

static void group_fini(struct bth_reg_group *g)
{
    bth_free(g->index);
    bth_stats_unref(g->stats);
    bth_tls_client_unref(g->tls);
    for (size_t i = 0; i < g->ntargets; i++)
        bth_target_unref(g->targets[i]);
    bth_free(g->targets);
    bth_free(g->name);
}

void bth_registry_fini(struct bth_registry *reg)
{
    /* At exit the control server is gone: waiters are dropped, not answered. */
    while (reg->drains != NULL)
        drain_unlink(reg, reg->drains, false);
    for (size_t i = 0; i < reg->ngroups; i++)
        group_fini(&reg->groups[i]);
    bth_free(reg->groups);
    bth_registry_set_listener_tls(reg, NULL, 0);
    for (size_t i = 0; i < reg->nlisteners; i++)
        bth_stats_unref(reg->listener_stats[i]);
    bth_free(reg->listener_stats);
    if (reg->config != NULL)
        bth_config_ref_unref(reg->config);
    memset(reg, 0, sizeof(*reg));
}

/* FNV-1a over what bth_addr_equal compares: family, port, address. */
static uint64_t addr_hash(const struct bth_addr *a)
{
    const unsigned char *p;
    size_t n;
    uint16_t port;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const void *)&a->ss;
        p = (const unsigned char *)&s4->sin_addr;
        n = sizeof(s4->sin_addr);
        port = s4->sin_port;
    } else {
        const struct sockaddr_in6 *s6 = (const void *)&a->ss;
        p = (const unsigned char *)&s6->sin6_addr;
        n = sizeof(s6->sin6_addr);
        port = s6->sin6_port;
    }
    uint64_t h = 0xcbf29ce484222325ull ^ a->ss.ss_family;
    h = (h ^ (port & 0xff)) * 0x100000001b3ull;
    h = (h ^ (port >> 8)) * 0x100000001b3ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static void index_drop(struct bth_reg_group *g)
{
    bth_free(g->index);
    g->index = NULL;
    g->index_cap = 0;
}

static void index_put(struct bth_reg_group *g, size_t pos)
{
    size_t mask = g->index_cap - 1, i = (size_t)addr_hash(&g->targets[pos]->addr) & mask;
    while (g->index[i] != 0)
        i = (i + 1) & mask;
    g->index[i] = (uint32_t)pos + 1;
}

/* Builds the index of <g>. Returns 0, or -1 when out of memory (lookups then scan). */
static int index_build(struct bth_reg_group *g)
{
    size_t cap = 16;
    while (cap < g->ntargets * 2 + 2)
        cap *= 2;
    uint32_t *v = bth_calloc(cap, sizeof(*v));
    if (v == NULL)
        return -1;
    bth_free(g->index);
    g->index = v;
    g->index_cap = cap;
    for (size_t i = 0; i < g->ntargets; i++)
        index_put(g, i);
    return 0;
}

static ssize_t group_index_of(const struct bth_reg_group *cg, const struct bth_addr *addr)
{
    /* The index is a cache: building it does not change what the group holds. */
    struct bth_reg_group *g = (struct bth_reg_group *)cg;
    if (g->index == NULL && g->ntargets > 8)
        index_build(g);
    if (g->index == NULL) {
        for (size_t i = 0; i < g->ntargets; i++) {
            if (bth_addr_equal(&g->targets[i]->addr, addr))
                return (ssize_t)i;
        }
        return -1;
    }
    size_t mask = g->index_cap - 1;
    for (size_t i = (size_t)addr_hash(addr) & mask; g->index[i] != 0; i = (i + 1) & mask) {
        size_t pos = g->index[i] - 1;
        if (bth_addr_equal(&g->targets[pos]->addr, addr))
            return (ssize_t)pos;
    }
    return -1;
}

struct bth_target *bth_registry_find_target(const struct bth_reg_group *g,
                                            const struct bth_addr *addr)
{
    ssize_t i = group_index_of(g, addr);
    return i >= 0 ? g->targets[i] : NULL;
}

/* Appends <t> (taking over the caller's reference). */
static int group_push(struct bth_reg_group *g, struct bth_target *t)
{
    if (g->ntargets == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        struct bth_target **v = bth_realloc(g->targets, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        g->targets = v;
        g->cap = cap;
    }
    g->targets[g->ntargets++] = t;
    if (g->index != NULL) {
        if (g->ntargets * 2 + 2 > g->index_cap)
            index_drop(g); /* rebuilt, larger, at the next lookup */
        else
            index_put(g, g->ntargets - 1);
    }
    return 0;
}

static struct bth_reg_group *find_in(struct bth_reg_group *groups, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(groups[i].name, name) == 0)
            return &groups[i];
    }
    return NULL;
}

/* Takes <addr> from the old group when present (live state survives), else creates it. */
static struct bth_target *reuse_or_create(struct bth_reg_group *old, const struct bth_addr *addr,
                                          unsigned weight, unsigned nworkers, bool dynamic)
{
    ssize_t i = old ? group_index_of(old, addr) : -1;
    if (i >= 0) {
        struct bth_target *t = old->targets[i];
        bth_target_ref(t);
        t->dynamic = dynamic;
        return t;
    }
    return bth_target_create(addr, weight, nworkers, dynamic);
}

static int build_group(struct bth_registry *reg, const struct bth_cfg_target_group *cfg,
                       struct bth_reg_group *old, struct bth_reg_group *g)
{
    memset(g, 0, sizeof(*g));
    g->cfg = cfg;
    g->name = bth_strdup(cfg->name);
    if (g->name == NULL)
        return -1;
    if (old != NULL) {
        bth_stats_ref(old->stats);
        g->stats = old->stats;
        g->failing_open = old->failing_open;
    } else if ((g->stats = bth_stats_create(cfg->name, reg->nworkers)) == NULL) {
        return -1;
    }
    if (cfg->protocol == BTH_PROTO_HTTPS || cfg->protocol == BTH_PROTO_TLS) {
        struct bth_err err;
        bth_err_init(&err);
        g->tls = bth_tls_client_create(cfg, &err);
        for (size_t i = 0; i < err.n; i++)
            bth_log(BTH_LOG_ERR, "target group %s: %s", cfg->name, err.msgs[i]);
        bth_err_fini(&err);
        if (g->tls == NULL)
            return -1;
    }
    for (size_t i = 0; i < cfg->ntargets; i++) {
        struct bth_target *t = reuse_or_create(old, &cfg->targets[i].addr, cfg->targets[i].weight,
                                               reg->nworkers, false);
        if (t == NULL || group_push(g, t) != 0) {
            bth_target_unref(t);
            return -1;
        }
    }
    for (size_t i = 0; old != NULL && i < old->ntargets; i++) {
        struct bth_target *t = old->targets[i];
        if (!t->dynamic || group_index_of(g, &t->addr) >= 0)
            continue;
        bth_target_ref(t);
        if (group_push(g, t) != 0) {
            bth_target_unref(t);
            return -1;
        }
    }
    return 0;
}

/* Listener counters by name: kept when a listener survives a reload. */
static struct bth_stats **build_listener_stats(struct bth_registry *reg,
                                               const struct bth_config *cfg)
{
    size_t n = cfg->nlisteners;
    struct bth_stats **v = bth_calloc(n ? n : 1, sizeof(*v));
    if (v == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < reg->nlisteners && v[i] == NULL; j++) {
            if (strcmp(reg->listener_stats[j]->name, cfg->listeners[i].name) == 0) {
                bth_stats_ref(reg->listener_stats[j]);
                v[i] = reg->listener_stats[j];
            }
        }
        if (v[i] == NULL &&
            (v[i] = bth_stats_create(cfg->listeners[i].name, reg->nworkers)) == NULL) {
            for (size_t j = 0; j < i; j++)
                bth_stats_unref(v[j]);
            bth_free(v);
            return NULL;
        }
    }
    return v;
}

int bth_registry_apply_config(struct bth_registry *reg, struct bth_config_ref *config)
{
    const struct bth_config *cfg = config->cfg;
    size_t n = cfg->ntarget_groups;
    struct bth_reg_group *groups = bth_calloc(n ? n : 1, sizeof(*groups));
    if (groups == NULL)
        return -1;
    size_t built = 0;
    for (; built < n; built++) {
        struct bth_reg_group *old =
            find_in(reg->groups, reg->ngroups, cfg->target_groups[built].name);
        if (build_group(reg, &cfg->target_groups[built], old, &groups[built]) != 0) {
            group_fini(&groups[built]);
            goto fail;
        }
    }
    struct bth_stats **ls = build_listener_stats(reg, cfg);
    if (ls == NULL)
        goto fail;
    for (size_t i = 0; i < reg->nlisteners; i++)
        bth_stats_unref(reg->listener_stats[i]);
    bth_free(reg->listener_stats);
    reg->listener_stats = ls;
    reg->nlisteners = cfg->nlisteners;
    for (size_t i = 0; i < reg->ngroups; i++)
        group_fini(&reg->groups[i]);
    bth_free(reg->groups);
    reg->groups = groups;
    reg->ngroups = n;
    bth_config_ref_ref(config);
    if (reg->config != NULL)
        bth_config_ref_unref(reg->config);
    reg->config = config;
    return 0;
fail:
    for (size_t i = 0; i < built; i++)
        group_fini(&groups[i]);
    bth_free(groups);
    return -1;
}

struct bth_reg_group *bth_registry_find_group(struct bth_registry *reg, const char *name)
{
    return find_in(reg->groups, reg->ngroups, name);
}

/* Takes <d> out of the registry's list (it may be out already). */
static void drain_detach(struct bth_registry *reg, struct bth_drain *d)
{
    if (d->prev != NULL)
        d->prev->next = d->next;
    else if (reg->drains == d)
        reg->drains = d->next;
    if (d->next != NULL)
        d->next->prev = d->prev;
    d->prev = d->next = NULL;
    if (d->target->drain == d)
        d->target->drain = NULL;
}

/* Calls (when <run>) and frees the waiters of <d>. */
static void drain_answer_waiters(struct bth_drain *d, bool run)
{
    struct bth_drain_waiter *w = d->waiters;
    d->waiters = NULL;
    for (struct bth_drain_waiter *n; w != NULL; w = n) {
        n = w->next;
        if (run)
            w->cb(w->arg);
        bth_free(w);
    }
}

/* Frees a detached drain, calling its waiters first when <run_waiters>. */
static void drain_free(struct bth_drain *d, bool run_waiters)
{
    drain_answer_waiters(d, run_waiters);
    bth_target_unref(d->target);
    bth_free(d->group);
    bth_free(d);
}

static void drain_unlink(struct bth_registry *reg, struct bth_drain *d, bool run_waiters)
{
    drain_detach(reg, d);
    drain_free(d, run_waiters);
}

struct bth_drain *bth_registry_find_drain(struct bth_registry *reg, const struct bth_target *t)
{
    return t->drain;
}

int bth_registry_register(struct bth_registry *reg, struct bth_reg_group *g,
                          const struct bth_addr *addr, unsigned weight)
{
    ssize_t at = group_index_of(g, addr);
    if (at >= 0) {
        /* Registering a draining target cancels its drain, as ELB does. */
        struct bth_drain *d = bth_registry_find_drain(reg, g->targets[at]);
        if (d != NULL) {
            atomic_store(&d->target->state, d->prev_state);
            drain_unlink(reg, d, true);
        }
        return 0;
    }
    struct bth_target *t = bth_target_create(addr, weight, reg->nworkers, true);
    if (t == NULL)
        return -1;
    if (group_push(g, t) != 0) {
        bth_target_unref(t);
        return -1;
    }
    return 0;
}

int bth_registry_deregister(struct bth_registry *reg, struct bth_reg_group *g,
                            const struct bth_addr *addr)
{
    ssize_t i = group_index_of(g, addr);
    if (i < 0)
        return 0;
    struct bth_target *t = g->targets[i];
    memmove(&g->targets[i], &g->targets[i + 1], (g->ntargets - (size_t)i - 1) * sizeof(t));
    g->ntargets--;
    index_drop(g);
    atomic_store(&t->removed, true);
    bth_target_unref(t);
    return 1;
}

int bth_registry_drain(struct bth_registry *reg, struct bth_reg_group *g,
                       const struct bth_addr *addr, uint64_t now_ms)
{
    ssize_t at = group_index_of(g, addr);
    if (at < 0)
        return 0;
    struct bth_target *t = g->targets[at];
    if (bth_registry_find_drain(reg, t) != NULL)
        return 1;
    struct bth_drain *d = bth_calloc(1, sizeof(*d));
    if (d == NULL || (d->group = bth_strdup(g->name)) == NULL) {
        bth_free(d);
        return -1;
    }
    bth_target_ref(t);
    d->target = t;
    d->deadline_ms = now_ms + g->cfg->deregistration_delay_ms;
    d->prev_state = atomic_exchange(&t->state, BTH_TARGET_DRAINING);
    d->next = reg->drains;
    if (reg->drains != NULL)
        reg->drains->prev = d;
    reg->drains = d;
    t->drain = d;
    return 1;
}

int bth_registry_drain_wait(struct bth_registry *reg, struct bth_reg_group *g,
                            const struct bth_addr *addr, bth_drain_done_cb cb, void *arg)
{
    ssize_t at = group_index_of(g, addr);
    struct bth_drain *d = at >= 0 ? bth_registry_find_drain(reg, g->targets[at]) : NULL;
    if (d == NULL || atomic_load_explicit(&d->target->outstanding, memory_order_relaxed) == 0) {
        cb(arg); /* gone, or nothing in flight: its deregistration is complete */
        return 0;
    }
    struct bth_drain_waiter *w = bth_calloc(1, sizeof(*w));
    if (w == NULL)
        return -1;
    w->cb = cb;
    w->arg = arg;
    w->next = d->waiters;
    d->waiters = w;
    return 0;
}

/* Drops the targets marked removed from <g>'s array in one pass. */
static void group_compact(struct bth_reg_group *g)
{
    size_t kept = 0;
    for (size_t i = 0; i < g->ntargets; i++) {
        struct bth_target *t = g->targets[i];
        if (atomic_load(&t->removed))
            bth_target_unref(t);
        else
            g->targets[kept++] = t;
    }
    g->ntargets = kept;
    g->compact = false;
    index_drop(g);
}

int bth_registry_drain_tick(struct bth_registry *reg, uint64_t now_ms)
{
    /* The ended drains leave their groups together: one by one, each would move the rest
     * of its group's array (a thousand drains ending in a large group: quadratic). */
    struct bth_drain *ended = NULL, *d = reg->drains, *next;
    int n = 0;
    for (; d != NULL; d = next) {
        next = d->next;
        if (now_ms < d->deadline_ms) {
            /* As ELB: the target stays draining for the whole delay, but a caller waiting
             * for its deregistration hears as soon as nothing is in flight. */
            if (d->waiters != NULL &&
                atomic_load_explicit(&d->target->outstanding, memory_order_relaxed) == 0)
                drain_answer_waiters(d, true);
            continue;
        }
        struct bth_reg_group *g = bth_registry_find_group(reg, d->group);
        ssize_t at = g != NULL ? group_index_of(g, &d->target->addr) : -1;
        if (at >= 0) {
            atomic_store(&g->targets[at]->removed, true);
            g->compact = true;
        }
        atomic_store(&d->target->removed, true);
        atomic_store(&d->target->expired, true); /* what still runs on it ends (ELB) */
        drain_detach(reg, d);
        d->next = ended;
        ended = d;
        n++;
    }
    for (size_t i = 0; i < reg->ngroups; i++) {
        if (reg->groups[i].compact)
            group_compact(&reg->groups[i]);
    }
    for (d = ended; d != NULL; d = next) {
        next = d->next;
        drain_free(d, true);
    }
    return n;
}

void bth_registry_set_listener_tls(struct bth_registry *reg, struct bth_tls_server **tls, size_t n)
{
    for (size_t i = 0; reg->listener_tls != NULL && i < reg->nlistener_tls; i++)
        bth_tls_server_unref(reg->listener_tls[i]);
    bth_free(reg->listener_tls);
    reg->listener_tls = tls;
    reg->nlistener_tls = n;
}

struct bth_snapshot *bth_registry_build_snapshot(struct bth_registry *reg)
{
    size_t n = reg->ngroups;
    struct bth_target ***targets = bth_calloc(n ? n : 1, sizeof(*targets));
    size_t *counts = bth_calloc(n ? n : 1, sizeof(*counts));
    struct bth_stats **gstats = bth_calloc(n ? n : 1, sizeof(*gstats));
    struct bth_tls_client **gtls = bth_calloc(n ? n : 1, sizeof(*gtls));
    struct bth_snapshot *s = NULL;
    if (targets != NULL && counts != NULL && gstats != NULL && gtls != NULL) {
        for (size_t i = 0; i < n; i++) {
            targets[i] = reg->groups[i].targets;
            counts[i] = reg->groups[i].ntargets;
            gstats[i] = reg->groups[i].stats;
            gtls[i] = reg->groups[i].tls;
        }
        struct bth_snapshot_input in = {
            .config = reg->config,
            .targets = targets,
            .ntargets = counts,
            .nworkers = reg->nworkers,
            .group_stats = gstats,
            .listener_stats = reg->listener_stats,
            .listener_tls = reg->listener_tls,
            .group_tls = gtls,
            .udp_flow_cap = reg->udp_flow_cap,
            .reap = reg->snapshot_reap,
            .reap_arg = reg->snapshot_reap_arg,
        };
        s = bth_snapshot_build(&in, ++reg->generation);
    }
    bth_free(targets);
    bth_free(counts);
    bth_free(gstats);
    bth_free(gtls);
    return s;
}
