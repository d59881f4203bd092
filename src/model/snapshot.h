/* SPDX-License-Identifier: MIT */
/* Built by the main thread; read by workers, lock-free. A snapshot is the immutable,
 * compiled routing view: listeners with their resolved actions, and target groups with the
 * array of targets that take part. Workers hold a reference while they use one; the last
 * unref hands it to the main thread's reaper, which frees it (and drops its references to
 * the config and the targets). */
#ifndef BERTH_SNAPSHOT_H
#define BERTH_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "snapshot_types.h"

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
