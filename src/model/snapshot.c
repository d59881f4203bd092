/* SPDX-License-Identifier: MIT */
/* Snapshot construction and release. Construction is main-thread only; release may happen
 * on any worker, so everything a snapshot owns is freed without touching thread state. */
#include "snapshot.h"

#include <string.h>

#include "balancer.h"
#include "mem.h"
#include "flow_hash.h"
#include "router.h"
#include "stats.h"
#include "tls.h"
#include "target.h"

struct bth_config_ref *bth_config_ref_create(struct bth_config *cfg)
{
    struct bth_config_ref *r = bth_calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    atomic_init(&r->refcnt, 1);
    r->cfg = cfg;
    return r;
}

void bth_config_ref_ref(struct bth_config_ref *r)
{
    atomic_fetch_add_explicit(&r->refcnt, 1, memory_order_relaxed);
}

void bth_config_ref_unref(struct bth_config_ref *r)
{
    if (r != NULL && atomic_fetch_sub_explicit(&r->refcnt, 1, memory_order_acq_rel) == 1) {
        bth_config_destroy(r->cfg);
        bth_free(r);
    }
}

static int build_action(struct bth_snapshot *s, const struct bth_cfg_action *cfg,
                        struct bth_snap_action *out)
{
    out->cfg = cfg;
    if (cfg->type != BTH_ACTION_FORWARD || cfg->ngroups == 0)
        return 0;
    out->forwards = bth_calloc(cfg->ngroups, sizeof(*out->forwards));
    if (out->forwards == NULL)
        return -1;
    for (size_t i = 0; i < cfg->ngroups; i++) {
        struct bth_snap_group *g = bth_snapshot_find_group(s, cfg->groups[i].name);
        if (g == NULL)
            continue; /* config validation guarantees presence */
        out->forwards[out->nforwards].group = g;
        out->forwards[out->nforwards].weight = cfg->groups[i].weight;
        out->total_weight += cfg->groups[i].weight;
        out->nforwards++;
    }
    return 0;
}

/* Compiles one listener's rules and resolves every action's groups. */
static int build_listener(struct bth_snapshot *s, const struct bth_cfg_listener *cfg,
                          struct bth_snap_listener *l)
{
    l->cfg = cfg;
    if (build_action(s, &cfg->default_action, &l->default_action) != 0)
        return -1;
    if (cfg->nrules == 0)
        return 0;
    l->rule_actions = bth_calloc(cfg->nrules, sizeof(*l->rule_actions));
    l->router = bth_router_build(cfg);
    if (l->rule_actions == NULL || l->router == NULL)
        return -1;
    for (size_t r = 0; r < cfg->nrules; r++) {
        if (build_action(s, &cfg->rules[r].action, &l->rule_actions[r]) != 0)
            return -1;
    }
    return 0;
}

static void free_listener(struct bth_snap_listener *l)
{
    bth_stats_unref(l->stats);
    bth_tls_server_unref(l->tls);
    bth_free(l->default_action.forwards);
    for (size_t r = 0; l->rule_actions != NULL && r < l->cfg->nrules; r++)
        bth_free(l->rule_actions[r].forwards);
    bth_free(l->rule_actions);
    bth_router_destroy(l->router);
}

struct bth_snapshot *bth_snapshot_build(const struct bth_snapshot_input *in, uint64_t generation)
{
    const struct bth_config *cfg = in->config->cfg;
    struct bth_snapshot *s = bth_calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    atomic_init(&s->refcnt, 1);
    s->generation = generation;
    bth_config_ref_ref(in->config);
    s->config = in->config;

    s->groups = bth_calloc(cfg->ntarget_groups ? cfg->ntarget_groups : 1, sizeof(*s->groups));
    s->listeners = bth_calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(*s->listeners));
    if (s->groups == NULL || s->listeners == NULL)
        goto fail;
    for (size_t i = 0; i < cfg->ntarget_groups; i++) {
        struct bth_snap_group *g = &s->groups[i];
        g->cfg = &cfg->target_groups[i];
        atomic_init(&g->rr_next, 0);
        s->ngroups++; /* from here on the unref path frees whatever this group holds */
        bth_stats_ref(in->group_stats[i]);
        g->stats = in->group_stats[i];
        if (in->group_tls != NULL && in->group_tls[i] != NULL) {
            bth_tls_client_ref(in->group_tls[i]);
            g->tls = in->group_tls[i];
        }
        size_t n = in->ntargets[i];
        if (n > 0) {
            g->targets = bth_calloc(n, sizeof(*g->targets));
            if (g->targets == NULL)
                goto fail;
            for (size_t j = 0; j < n; j++) {
                bth_target_ref(in->targets[i][j]);
                g->targets[j] = in->targets[i][j];
            }
        }
        g->ntargets = n;
        if (bth_lb_group_init(g, in->nworkers) != 0)
            goto fail;
        /* NLB flows: a consistent table, so several berth instances with the same targets
         * agree and one target more or less moves only its share of flows. */
        if (g->cfg->algorithm == BTH_ALG_FLOW_HASH && n > 0 &&
            (g->flow = bth_flow_table_build(g->targets, n)) == NULL)
            goto fail;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        bth_stats_ref(in->listener_stats[i]);
        s->listeners[i].stats = in->listener_stats[i];
        if (in->listener_tls != NULL && in->listener_tls[i] != NULL) {
            bth_tls_server_ref(in->listener_tls[i]);
            s->listeners[i].tls = in->listener_tls[i];
        }
        if (build_listener(s, &cfg->listeners[i], &s->listeners[i]) != 0)
            goto fail;
        unsigned max = cfg->listeners[i].udp_max_flows;
        s->listeners[i].udp_max_flows =
            in->udp_flow_cap != 0 && in->udp_flow_cap < max ? in->udp_flow_cap : max;
        s->nlisteners++;
    }
    s->reap = in->reap; /* from now on the last unref goes to the reaper */
    s->reap_arg = in->reap_arg;
    return s;
fail:
    bth_snapshot_destroy(s);
    return NULL;
}

void bth_snapshot_unref(struct bth_snapshot *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    if (s->reap != NULL)
        s->reap(s, s->reap_arg);
    else
        bth_snapshot_destroy(s);
}

void bth_snapshot_destroy(struct bth_snapshot *s)
{
    /* A listener that failed half-way is freed too: its fields are zero or owned. */
    for (size_t i = 0;
         s->listeners != NULL && i < s->nlisteners + (s->nlisteners < s->config->cfg->nlisteners);
         i++)
        free_listener(&s->listeners[i]);
    for (size_t i = 0; i < s->ngroups; i++) {
        for (size_t j = 0; j < s->groups[i].ntargets; j++)
            bth_target_unref(s->groups[i].targets[j]);
        bth_free(s->groups[i].targets);
        bth_lb_group_fini(&s->groups[i]);
        bth_flow_table_destroy(s->groups[i].flow);
        bth_stats_unref(s->groups[i].stats);
        bth_tls_client_unref(s->groups[i].tls);
    }
    bth_free(s->listeners);
    bth_free(s->groups);
    bth_config_ref_unref(s->config);
    bth_free(s);
}

struct bth_snap_group *bth_snapshot_find_group(struct bth_snapshot *s, const char *name)
{
    for (size_t i = 0; i < s->ngroups; i++) {
        if (strcmp(s->groups[i].cfg->name, name) == 0)
            return &s->groups[i];
    }
    return NULL;
}
