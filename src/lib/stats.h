/* SPDX-License-Identifier: MIT */
/* Labelled counters for one listener or one target group, one row per worker plus one for
 * the main thread (health checking), which callers create as row <nworkers>. Each thread
 * writes only its own row (plain load+store, no lock prefix); the main thread sums rows
 * for /metrics. A block is refcounted and kept by name across snapshots and reloads, so
 * counters never reset while berth runs. */
#ifndef BERTH_STATS_H
#define BERTH_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#define BTH_RT_BUCKETS 12

#define BTH_GRPC_CODES 17 /* gRPC status codes OK (0) .. UNAUTHENTICATED (16) */

enum bth_stat {
    BTH_ST_REQUESTS = 0,
    BTH_ST_NEW_CONNECTIONS,
    BTH_ST_PROCESSED_BYTES,
    BTH_ST_ELB_3XX,
    BTH_ST_ELB_4XX,
    BTH_ST_ELB_5XX,
    BTH_ST_TARGET_1XX,
    BTH_ST_TARGET_2XX,
    BTH_ST_TARGET_3XX,
    BTH_ST_TARGET_4XX,
    BTH_ST_TARGET_5XX,
    BTH_ST_TARGET_CONN_ERRORS,
    BTH_ST_RT_SUM_US,
    BTH_ST_RT_COUNT,
    BTH_ST_HC_TO_HEALTHY, /* main thread's row: active check transitions */
    BTH_ST_HC_TO_UNHEALTHY,
    BTH_ST_EJECTIONS, /* main thread's row: passive check ejections */
    BTH_ST_UDP_FLOWS_CREATED,
    BTH_ST_UDP_FLOWS_CLOSED,
    BTH_ST_UDP_FLOWS_REJECTED, /* the flow table was full */
    BTH_ST_DESYNC_ACCEPTABLE,  /* requests classified by the desync classifier, */
    BTH_ST_DESYNC_AMBIGUOUS,   /* in this order (see desync.h) */
    BTH_ST_DESYNC_SEVERE,
    BTH_ST_DESYNC_BLOCKED,       /* refused with 400 by the listener's mode */
    BTH_ST_REJECTED_CONNECTIONS, /* refused by max_connections */
    BTH_ST_HEADER_TIMEOUTS,      /* 408: the head did not arrive within header_timeout */
    BTH_ST_BODY_TIMEOUTS,        /* the body fell behind min_body_rate (408 or a close) */
    BTH_ST_H2_CONNECTIONS,       /* HTTP/2 client connections */
    BTH_ST_H2_STREAMS,           /* HTTP/2 streams opened by clients */
    BTH_ST_H2_RESETS_RECEIVED,   /* RST_STREAM from clients */
    BTH_ST_H2_RESETS_SENT,       /* RST_STREAM from berth */
    BTH_ST_H2_GOAWAY_NO_ERROR,   /* GOAWAY sent, by code, in this order */
    BTH_ST_H2_GOAWAY_PROTOCOL_ERROR,
    BTH_ST_H2_GOAWAY_FLOW_CONTROL_ERROR,
    BTH_ST_H2_GOAWAY_COMPRESSION_ERROR,
    BTH_ST_H2_GOAWAY_ENHANCE_YOUR_CALM,
    BTH_ST_H2_GOAWAY_OTHER,
    BTH_ST_GRPC_STATUS0, /* gRPC calls by grpc-status, BTH_GRPC_CODES entries (0..16) */
    BTH_ST_RT_BUCKET0 = BTH_ST_GRPC_STATUS0 + BTH_GRPC_CODES, /* BTH_RT_BUCKETS entries follow */
    BTH_ST_COUNT = BTH_ST_RT_BUCKET0 + BTH_RT_BUCKETS,
};

/* Process-wide connection counters, one block per worker: each worker the only writer of
 * its own (BTH_STAT_ADD); the main thread sums them for /metrics. */
struct bth_counters {
    atomic_int_fast64_t active_connections;
    atomic_uint_fast64_t rejected_connections; /* closed at once: max_connections, fd reserve */
    atomic_uint_fast64_t accept_pauses;        /* episodes of accept() failing for lack of
                                                * descriptors or memory */
};

/* Single-writer increment: a plain load and store, safe because only the owning thread
 * writes; readers see a value that is at most slightly stale. */
#define BTH_STAT_ADD(field, n)                                                                     \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (n),    \
                          memory_order_relaxed)

struct bth_stats_row {
    atomic_uint_fast64_t v[BTH_ST_COUNT];
} __attribute__((aligned(64)));

struct bth_stats {
    atomic_int refcnt;
    atomic_long active; /* listeners: client connections open now, all workers (limits) */
    char *name;         /* owned: listener or group name, the metric label */
    unsigned nrows;
    struct bth_stats_row rows[];
};

/* Upper bounds in seconds of the response-time buckets. */
extern const double bth_stats_rt_bounds[BTH_RT_BUCKETS];

/* A zeroed block with one reference, or NULL. Main thread. */
struct bth_stats *bth_stats_create(const char *name, unsigned nworkers);
void bth_stats_ref(struct bth_stats *st);
void bth_stats_unref(struct bth_stats *st);

/* Worker <row> adds <n> to counter <k>. Only that worker may call it for that row. */
static inline void bth_stats_add(struct bth_stats *st, unsigned row, enum bth_stat k, uint64_t n)
{
    atomic_uint_fast64_t *c = &st->rows[row].v[k];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Records one target response time. Worker <row> only. */
void bth_stats_observe_rt(struct bth_stats *st, unsigned row, uint64_t us);

/* The sum of counter <k> over all rows. Any thread. */
uint64_t bth_stats_sum(const struct bth_stats *st, enum bth_stat k);

#endif /* BERTH_STATS_H */
