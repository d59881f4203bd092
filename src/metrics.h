/* SPDX-License-Identifier: MIT */
/* Counters: each worker owns one struct bth_metrics and is its only writer (relaxed stores,
 * no lock prefix); the main thread sums them when /metrics is asked for. */
#ifndef BERTH_METRICS_H
#define BERTH_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

struct evbuffer;
struct bth_worker;

#define BTH_RT_BUCKETS 12 /* target response time histogram: see bth_metrics_rt_bounds */

struct bth_metrics {
    atomic_uint_fast64_t requests;
    atomic_uint_fast64_t new_connections;
    atomic_int_fast64_t active_connections;
    atomic_uint_fast64_t rejected_connections;
    atomic_uint_fast64_t processed_bytes;
    atomic_uint_fast64_t elb_xx[6];    /* berth-generated responses by class: [4], [5] */
    atomic_uint_fast64_t target_xx[6]; /* target responses by class [1]..[5] */
    atomic_uint_fast64_t target_connection_errors;
    atomic_uint_fast64_t target_response_time_sum_us;
    atomic_uint_fast64_t target_response_time_count;
    atomic_uint_fast64_t target_response_time_buckets[BTH_RT_BUCKETS];
};

/* Single-writer increment: a plain load and store, safe because only the owning worker
 * writes; readers see a value that is at most slightly stale. */
#define BTH_STAT_ADD(field, n)                                                                \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (n), \
                          memory_order_relaxed)

extern const double bth_metrics_rt_bounds[BTH_RT_BUCKETS];

/* Records one target response time in microseconds. Owning worker only. */
void bth_metrics_observe_rt(struct bth_metrics *m, uint64_t us);

/* Appends the Prometheus exposition of the sum over <workers> to <out>. Main thread. */
void bth_metrics_render(struct evbuffer *out, struct bth_worker *const *workers, unsigned n);

#endif /* BERTH_METRICS_H */
