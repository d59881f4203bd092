/* SPDX-License-Identifier: MIT */
/* Worker threads pick, lock-free and without allocation; the main thread creates and frees
 * each group's state when it builds and releases a snapshot. Chooses a target group for a
 * forward action (by weight) and a target inside a group with the group's algorithm (smooth
 * weighted round robin, least outstanding requests, weighted random), with slow start and
 * ELB's fail-open. Invariant: a draining or removed target, a target of weight 0 and a
 * target already tried by the request are never returned. */
#ifndef BERTH_BALANCER_H
#define BERTH_BALANCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rand.h"
#include "target.h"

struct bth_snap_action;
struct bth_snap_group;

/* The group a forward action sends this request to (weighted, drawn from <rand>), or NULL
 * when the action has none with a non-zero weight. Worker thread. */
struct bth_snap_group *bth_lb_pick_group(struct bth_rand *rand, const struct bth_snap_action *a);

/* A target of <g> for a new request, chosen by g->cfg->algorithm, that is not
 * among the <ntried> in <tried> (the targets this request already failed on); NULL when
 * none is left. Only targets that take traffic qualify, unless none of the group does while
 * some are merely unhealthy: then every target that is not draining or removed qualifies
 * (ELB fails open). <row> is the caller's row in per-thread algorithm state (a worker's id,
 * below the nworkers given to bth_lb_group_init; another row falls back to a stateless
 * choice) and <rand> its random generator. The caller takes its own reference. Worker
 * thread; no lock, no allocation. */
struct bth_target *bth_lb_pick_target(unsigned row, struct bth_rand *rand, struct bth_snap_group *g,
                                      struct bth_target *const *tried, size_t ntried);

/* Allocates g->lb for <g>, whose cfg and targets are set, for workers 0..<nworkers>-1,
 * and settles the slow start of its targets (bth_lb_slow_start_settle). Main thread, at
 * snapshot build. Returns 0, or -1 when out of memory (g->lb stays NULL, which
 * bth_lb_pick_target tolerates by falling back to a stateless weighted choice). */
int bth_lb_group_init(struct bth_snap_group *g, unsigned nworkers);

/* True when no target of <g> takes traffic but some are merely unhealthy: the group fails
 * open and sends traffic to all of them. Any thread. */
bool bth_lb_group_failing_open(const struct bth_snap_group *g);

/* The same rule over the <n> targets in <targets> (a registry group's, say). Any thread. */
bool bth_lb_targets_failing_open(struct bth_target *const *targets, size_t n);

/* Frees g->lb (NULL is fine). Any thread, once no worker can pick from <g> any more. */
void bth_lb_group_fini(struct bth_snap_group *g);

/* ELB's rule for entering slow start: a target ramps up only while the group has at least
 * one target that takes traffic and is out of slow start. Without one, every target of the
 * <n> in <targets> still ramping ends its slow start now (ready_since_ms = 0), so the
 * targets of a new group, or of a process that just started, get their full share at once.
 * bth_lb_group_init applies it at every snapshot build (registration, reload, start-up);
 * the health checker should apply it after a target turns healthy. Main thread. */
void bth_lb_slow_start_settle(struct bth_target *const *targets, size_t n, uint64_t slow_start_ms);

/* ------------------------------------------------------------------------------------ */
/* Algorithm interface: for balancer.c and the lb_*.c files only. */

/* Weights are fixed point so that a slow-start ramp moves smoothly even for weight 1. */
#define BTH_LB_WEIGHT_SCALE 1024u
/* A target just entering slow start weighs 1/32 of its weight rather than nothing, so it
 * gets a trickle of traffic (and warms up) from the first moment. */
#define BTH_LB_SLOW_START_FLOOR 32u
/* Least outstanding requests scans groups up to this many targets; larger ones use the
 * power of two choices, which is O(1) and avoids every worker herding onto one target. */
#define BTH_LB_LOR_SCAN_MAX 8u

/* What one pick needs besides the group: computed once per pick by bth_lb_pick_target. */
struct bth_lb_ctx {
    unsigned row;                    /* the picking thread's row of per-thread state */
    struct bth_rand *rand;           /* borrowed: the picking thread's generator */
    struct bth_target *const *tried; /* borrowed: the request's failed targets */
    size_t ntried;
    uint64_t slow_start_ms; /* the group's ramp; 0 = off */
    uint64_t now_ms;        /* monotonic, read once per pick; unset when slow start is off */
    bool fail_open;         /* no target takes traffic: every non-draining one qualifies */
};

struct bth_lb_state;

/* One algorithm (HAProxy lb_ops, nginx peer.get). There is no release or state-change hook:
 * the in-flight count and the health state are atomics on the target, read at pick time. */
struct bth_lb_ops {
    const char *name;
    /* Main thread: fills the algorithm's part of <st> for <g>; 0 or -1 (out of memory, after
     * freeing what it allocated). NULL when the algorithm keeps no state. */
    int (*init)(struct bth_lb_state *st, const struct bth_snap_group *g, unsigned nworkers);
    /* Worker thread: an eligible target (bth_lb_eligible) or NULL when there is none. */
    struct bth_target *(*pick)(const struct bth_snap_group *g, const struct bth_lb_ctx *c);
    /* Any thread: frees what init allocated. NULL when there is nothing to free. */
    void (*destroy)(struct bth_lb_state *st);
};

/* Per group, per snapshot. Written by the main thread before publication; afterwards
 * workers write only their own round-robin row, so the pick path needs no atomics here. */
/* One target's next turn in a weighted round robin of many targets (lb_round_robin.c). */
struct bth_edf_entry {
    uint64_t deadline;
    uint32_t idx;
};

struct bth_lb_state {
    const struct bth_lb_ops *ops; /* borrowed: static table */
    /* round robin: one row of ntargets counters per worker */
    int64_t *rr_rows;  /* borrowed: rr_mem aligned to a cache line */
    void *rr_mem;      /* owned */
    size_t rr_stride;  /* counters per row, a whole number of cache lines */
    unsigned rr_nrows; /* nworkers; a row past it falls back to weighted random */
    bool rr_cursor;    /* equal weights, no slow start: each row's first entry is a cursor */
    struct bth_edf_entry *rr_heap; /* borrowed (rr_mem): large weighted groups, one
                                    * earliest-deadline-first heap of rr_stride per worker */
    /* weighted random: prefix sums of the configured weights, for a binary search */
    uint64_t *wr_prefix; /* owned, ntargets entries; wr_prefix[i] = weights of 0..i */
    uint64_t wr_total;   /* sum of configured weights (unscaled) */
};

extern const struct bth_lb_ops bth_lb_round_robin_ops;
extern const struct bth_lb_ops bth_lb_least_outstanding_ops;
extern const struct bth_lb_ops bth_lb_weighted_random_ops;

static inline bool bth_lb_was_tried(const struct bth_target *t, const struct bth_lb_ctx *c)
{
    for (size_t i = 0; i < c->ntried; i++) {
        if (c->tried[i] == t)
            return true;
    }
    return false;
}

/* Whether <t> may get this request. Draining and removed targets never may: ELB sends a
 * deregistering target no new requests even when failing open. */
static inline bool bth_lb_eligible(const struct bth_target *t, const struct bth_lb_ctx *c)
{
    if (t->weight == 0 || atomic_load_explicit(&t->removed, memory_order_relaxed))
        return false;
    if (c->fail_open) {
        int s = atomic_load_explicit(&t->state, memory_order_relaxed);
        if (s == BTH_TARGET_DRAINING || s == BTH_TARGET_UNUSED)
            return false;
    } else if (!bth_target_takes_traffic(t)) {
        return false;
    }
    return c->ntried == 0 || !bth_lb_was_tried(t, c);
}

/* The weight of <t> in BTH_LB_WEIGHT_SCALE units: its configured weight, ramped linearly
 * over the group's slow start from the moment it became ready (ready_since_ms; 0 = exempt),
 * never under the floor. */
static inline uint64_t bth_lb_weight(const struct bth_target *t, const struct bth_lb_ctx *c)
{
    uint64_t full = (uint64_t)t->weight * BTH_LB_WEIGHT_SCALE;
    if (c->slow_start_ms == 0 || full == 0)
        return full;
    uint64_t since = atomic_load_explicit(&t->ready_since_ms, memory_order_relaxed);
    if (since == 0)
        return full; /* exempt (bth_lb_slow_start_settle) */
    uint64_t elapsed = c->now_ms > since ? c->now_ms - since : 0;
    if (elapsed >= c->slow_start_ms)
        return full;
    uint64_t w = full * elapsed / c->slow_start_ms;
    uint64_t floor = full / BTH_LB_SLOW_START_FLOOR;
    if (floor == 0)
        floor = 1;
    return w > floor ? w : floor;
}

/* A weighted choice among the eligible targets of <g> by two scans with one random number;
 * NULL when none is eligible. The fallback of the stateful algorithms. Worker thread. */
struct bth_target *bth_lb_pick_weighted_scan(const struct bth_snap_group *g,
                                             const struct bth_lb_ctx *c);

#endif /* BERTH_BALANCER_H */
