/* SPDX-License-Identifier: MIT */
/* Built by the main thread; read by workers, lock-free. A snapshot is the immutable,
 * compiled routing view: listeners with their resolved actions, and target groups with the
 * array of targets that take part. Workers hold a reference while they use one; the last
 * unref hands it to the main thread's reaper, which frees it (and drops its references to
 * the config and the targets). */
#ifndef BERTH_SNAPSHOT_H
#define BERTH_SNAPSHOT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct bth_lb_state;
struct bth_snapshot;
struct bth_target;
struct bth_router;
struct bth_flow_table;
struct bth_stats;
struct bth_tls_server;
struct bth_tls_client;

struct bth_snap_group {
    const struct bth_cfg_target_group *cfg; /* borrowed: lives as long as the snapshot */
    struct bth_stats *stats;                /* one reference: the group's counters */
    struct bth_tls_client *tls;             /* one reference for HTTPS/TLS groups */
    struct bth_target **targets;            /* owned array; one reference per entry */
    size_t ntargets;
    atomic_uint rr_next;         /* unused since the balancer keeps per-worker state in lb */
    struct bth_flow_table *flow; /* owned: Maglev table for flow_hash groups, else NULL */
    struct bth_lb_state *lb;     /* owned: the algorithm's state (balancer.h); each worker
                                  * writes only its own row of it */
};

struct bth_snap_forward {
    struct bth_snap_group *group; /* borrowed: element of the snapshot's groups */
    unsigned weight;
};

struct bth_snap_action {
    const struct bth_cfg_action *cfg;  /* borrowed */
    struct bth_snap_forward *forwards; /* owned */
    size_t nforwards;
    unsigned total_weight;
};

struct bth_snap_listener {
    const struct bth_cfg_listener *cfg;   /* borrowed */
    struct bth_stats *stats;              /* one reference: the listener's counters */
    struct bth_tls_server *tls;           /* one reference for HTTPS/TLS listeners, else NULL */
    struct bth_router *router;            /* owned: compiled rules, NULL when none */
    struct bth_snap_action *rule_actions; /* owned: one per cfg->rules entry, same index */
    struct bth_snap_action default_action;
    unsigned udp_max_flows; /* UDP: cfg->udp_max_flows, lowered to the open file budget */
};

/* A reference-counted owner of one loaded config, shared by consecutive snapshots. */
struct bth_config_ref {
    atomic_int refcnt;
    struct bth_config *cfg; /* owned */
};

/* Called with a snapshot whose last reference was just dropped, in place of freeing it on
 * the thread that dropped it (bth_snapshot_destroy frees). */
typedef void (*bth_snapshot_reap_fn)(struct bth_snapshot *s, void *arg);

struct bth_snapshot {
    atomic_int refcnt;
    bth_snapshot_reap_fn reap; /* NULL: the last unref frees at once */
    void *reap_arg;
    struct bth_snapshot *reap_next; /* for the reaper's own queue */
    uint64_t generation;
    struct bth_config_ref *config;       /* one reference held */
    struct bth_snap_listener *listeners; /* owned, same order as config listeners */
    size_t nlisteners;
    struct bth_snap_group *groups; /* owned, same order as config groups */
    size_t ngroups;
};

/* Takes ownership of <cfg>; returns a holder with one reference, or NULL. */
struct bth_config_ref *bth_config_ref_create(struct bth_config *cfg);
void bth_config_ref_ref(struct bth_config_ref *r);
void bth_config_ref_unref(struct bth_config_ref *r);

/* The targets of each group, in config group order: <targets>[i] has <ntargets>[i] entries. */
struct bth_snapshot_input {
    struct bth_config_ref *config;
    struct bth_target ***targets;
    size_t *ntargets;
    unsigned nworkers; /* worker ids are 0..nworkers-1: sizes per-worker balancer state */
    struct bth_stats **group_stats;       /* per group, config order */
    struct bth_stats **listener_stats;    /* per listener, config order */
    struct bth_tls_server **listener_tls; /* per listener (NULL entries: plain), may be NULL */
    struct bth_tls_client **group_tls;    /* per group (NULL entries: plain), may be NULL */
    unsigned udp_flow_cap;     /* flows per worker and UDP socket the open file limit allows;
                                * 0: no cap */
    bth_snapshot_reap_fn reap; /* where the last release goes; NULL: freed where dropped */
    void *reap_arg;
};

/* Builds a snapshot with one reference for the caller, taking its own references to the
 * config and every target. Main thread. Returns NULL when out of memory. */
struct bth_snapshot *bth_snapshot_build(const struct bth_snapshot_input *in, uint64_t generation);

static inline void bth_snapshot_ref(struct bth_snapshot *s)
{
    atomic_fetch_add_explicit(&s->refcnt, 1, memory_order_relaxed);
}

/* Any thread. The last unref hands the snapshot to its reaper (the process layer queues it
 * to the main loop, so no request on a worker pays for tearing a config generation down),
 * or frees it when it has none. */
void bth_snapshot_unref(struct bth_snapshot *s);

/* Frees a snapshot nobody references: its listeners, routers, TLS contexts, flow tables,
 * and its references to targets and the config. The reaper's thread. */
void bth_snapshot_destroy(struct bth_snapshot *s);

/* NULL when no group has that name. */
struct bth_snap_group *bth_snapshot_find_group(struct bth_snapshot *s, const char *name);

#endif /* BERTH_SNAPSHOT_H */
