/* SPDX-License-Identifier: MIT */
/* Any thread (refcount and atomics); created and retired by the main thread only.
 * A target is one task's IP:port inside one target group. It outlives snapshots: every
 * snapshot that lists it holds a reference, and so does every upstream connection, so live
 * state (in-flight requests, health, draining) survives registration changes and reloads. */
#ifndef BERTH_TARGET_H
#define BERTH_TARGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct bth_upstream;
struct bth_hc;
struct bth_drain;

enum bth_target_state {
    BTH_TARGET_INITIAL = 0, /* registered, first health check pending */
    BTH_TARGET_HEALTHY,     /* passing checks */
    BTH_TARGET_UNHEALTHY,   /* failing checks */
    BTH_TARGET_UNUSED,      /* group not used by any listener */
    BTH_TARGET_DRAINING,    /* deregistered, finishing in-flight work */
    BTH_TARGET_UNAVAILABLE, /* health checks disabled: takes traffic */
};

/* Idle keep-alive connections to this target owned by one worker. Only that worker
 * touches it, so no lock; padded so workers do not share a cache line. */
struct bth_upstream_pool {
    struct bth_upstream *idle_head; /* owned list of idle connections, most recent first */
    unsigned nidle;
    struct ssl_session_st *tls_session; /* owned: last TLS session, for resumption */
    void *h2_conns; /* http/'s HTTP/2 connections to this target (h2_upstream.c owns them) */
} __attribute__((aligned(64)));

struct bth_target {
    atomic_int refcnt;
    atomic_int outstanding;          /* requests in flight, all workers */
    atomic_int active_conns;         /* upstream connections open, all workers */
    atomic_int state;                /* enum bth_target_state */
    atomic_bool removed;             /* no longer in any group: pools drop its connections */
    atomic_bool expired;             /* its deregistration delay ended: workers end the
                                      * exchanges and tunnels still running on it */
    _Atomic uint64_t ready_since_ms; /* monotonic ms it began taking traffic, for slow
                                      * start; 0 = exempt from it. Main thread writes */
    atomic_int consecutive_errors;   /* passive checks: failures in a row seen by workers */
    atomic_bool ejected;             /* passive checks: out of rotation (main thread writes) */
    struct bth_hc *hc;               /* main thread only: active check state, NULL if none */
    struct bth_drain *drain;         /* main thread only: its drain under way, NULL if none */
    struct bth_addr addr;
    unsigned weight;
    bool dynamic;    /* registered through the control API (not from the config file) */
    bool discovered; /* registered by DNS discovery: the next answer decides, not the
                      * state file */
    unsigned npools;
    struct bth_upstream_pool pools[]; /* one per worker */
};

/* Creates a target with one reference for the caller, or NULL when out of memory. */
struct bth_target *bth_target_create(const struct bth_addr *addr, unsigned weight,
                                     unsigned nworkers, bool dynamic);
void bth_target_ref(struct bth_target *t);
/* Drops one reference; the last one frees the target. Its pools must be empty by then,
 * which holds because each pooled connection keeps its own reference. */
void bth_target_unref(struct bth_target *t);

const char *bth_target_state_name(enum bth_target_state s);

/* Moves <t> to <st>. When <t> starts taking traffic (turns healthy, or available with
 * health checks off) ready_since_ms is stamped first, so slow start ramps from this
 * moment. Main thread: it is the only writer of state and ready_since_ms. */
void bth_target_set_state(struct bth_target *t, enum bth_target_state st);

static inline bool bth_target_takes_traffic(const struct bth_target *t)
{
    int s = atomic_load_explicit(&t->state, memory_order_relaxed);
    return (s == BTH_TARGET_HEALTHY || s == BTH_TARGET_UNAVAILABLE) &&
           !atomic_load_explicit(&t->ejected, memory_order_relaxed);
}

/* Passive health: a worker saw the target fail (connect error, reset, 5xx) or succeed. */
static inline void bth_target_note_result(struct bth_target *t, bool failed)
{
    if (failed)
        atomic_fetch_add_explicit(&t->consecutive_errors, 1, memory_order_relaxed);
    else if (atomic_load_explicit(&t->consecutive_errors, memory_order_relaxed) != 0)
        atomic_store_explicit(&t->consecutive_errors, 0, memory_order_relaxed);
}

#endif /* BERTH_TARGET_H */
