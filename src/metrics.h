/* SPDX-License-Identifier: MIT */
/* Prometheus exposition. Process-wide connection counters live per worker in struct
 * bth_metrics (each worker the only writer of its own, relaxed stores); per-listener and
 * per-group counters live in struct bth_stats blocks (stats.h). The main thread sums both
 * when /metrics is asked for, without stopping the data plane. */
#ifndef BERTH_METRICS_H
#define BERTH_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

struct evbuffer;
struct bth_worker;
struct bth_registry;

struct bth_metrics {
    atomic_int_fast64_t active_connections;
    atomic_uint_fast64_t rejected_connections; /* closed at once: max_connections, fd reserve */
    atomic_uint_fast64_t accept_pauses;        /* episodes of accept() failing for lack of
                                                * descriptors or memory */
};

/* Single-writer increment: a plain load and store, safe because only the owning worker
 * writes; readers see a value that is at most slightly stale. */
#define BTH_STAT_ADD(field, n)                                                                     \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (n),    \
                          memory_order_relaxed)

/* Appends the "# HELP" and "# TYPE" lines of one metric family to <out>. */
void bth_metrics_family(struct evbuffer *out, const char *name, const char *type, const char *help);

/* Appends the whole exposition to <out>. Main thread. */
void bth_metrics_render(struct evbuffer *out, struct bth_worker *const *workers, unsigned n,
                        const struct bth_registry *reg);

#endif /* BERTH_METRICS_H */
