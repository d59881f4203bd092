/* SPDX-License-Identifier: MIT */
/* The types of a snapshot, without its functions (HAProxy's -t.h pattern): the balancer
 * reads a group's targets and the snapshot builder calls the balancer, so both need these
 * structs, and only one of them may depend on the other's functions. Ownership and threads:
 * see snapshot.h. */
#ifndef BERTH_SNAPSHOT_TYPES_H
#define BERTH_SNAPSHOT_TYPES_H

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

#endif /* BERTH_SNAPSHOT_TYPES_H */
