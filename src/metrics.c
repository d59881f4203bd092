/* SPDX-License-Identifier: MIT */
/* Prometheus exposition of the per-worker counters, summed on the main thread. Names follow
 * the ELB CloudWatch metrics (RequestCount -> berth_requests_total, and so on). */
#include "metrics.h"

#include <stddef.h>

#include <event2/buffer.h>

#include "worker.h"

/* Upper bounds in seconds, as a Prometheus histogram ("le"). */
const double bth_metrics_rt_bounds[BTH_RT_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                      0.1,   0.25,   0.5,   1,    2.5,   10};

void bth_metrics_observe_rt(struct bth_metrics *m, uint64_t us)
{
    BTH_STAT_ADD(m->target_response_time_sum_us, us);
    BTH_STAT_ADD(m->target_response_time_count, 1);
    for (int i = 0; i < BTH_RT_BUCKETS; i++) {
        if ((double)us <= bth_metrics_rt_bounds[i] * 1e6) {
            BTH_STAT_ADD(m->target_response_time_buckets[i], 1);
            break;
        }
    }
}

/* The sum of one counter over all workers; <off> is its offset in struct bth_metrics. */
static uint64_t sum_at(struct bth_worker *const *workers, unsigned n, size_t off)
{
    uint64_t acc = 0;
    for (unsigned i = 0; i < n; i++) {
        atomic_uint_fast64_t *f = (atomic_uint_fast64_t *)((char *)&workers[i]->metrics + off);
        acc += atomic_load_explicit(f, memory_order_relaxed);
    }
    return acc;
}

#define SUM(field) sum_at(workers, n, offsetof(struct bth_metrics, field))

static void counter(struct evbuffer *out, const char *name, const char *help, uint64_t v)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                        (unsigned long long)v);
}

void bth_metrics_render(struct evbuffer *out, struct bth_worker *const *workers, unsigned n)
{
    counter(out, "berth_requests_total", "Requests processed (RequestCount).", SUM(requests));
    counter(out, "berth_new_connections_total", "Client connections accepted.",
            SUM(new_connections));
    evbuffer_add_printf(out,
                        "# HELP berth_active_connections Client connections open.\n"
                        "# TYPE berth_active_connections gauge\nberth_active_connections %lld\n",
                        (long long)(int64_t)SUM(active_connections));
    counter(out, "berth_rejected_connections_total", "Connections refused (out of descriptors).",
            SUM(rejected_connections));
    counter(out, "berth_processed_bytes_total", "Bytes received and sent for clients.",
            SUM(processed_bytes));
    counter(out, "berth_target_connection_errors_total",
            "Failed connections to targets (TargetConnectionErrorCount).",
            SUM(target_connection_errors));
    evbuffer_add_printf(out, "# HELP berth_http_responses_total Responses by origin and class.\n"
                             "# TYPE berth_http_responses_total counter\n");
    for (int c = 1; c <= 5; c++) {
        evbuffer_add_printf(out, "berth_http_responses_total{origin=\"target\",code=\"%dxx\"} %llu\n",
                            c, (unsigned long long)SUM(target_xx[c]));
        evbuffer_add_printf(out, "berth_http_responses_total{origin=\"berth\",code=\"%dxx\"} %llu\n",
                            c, (unsigned long long)SUM(elb_xx[c]));
    }
    evbuffer_add_printf(out, "# HELP berth_target_response_time_seconds Time from request sent "
                             "to response head (TargetResponseTime).\n"
                             "# TYPE berth_target_response_time_seconds histogram\n");
    uint64_t cum = 0;
    for (int b = 0; b < BTH_RT_BUCKETS; b++) {
        cum += SUM(target_response_time_buckets[b]);
        evbuffer_add_printf(out, "berth_target_response_time_seconds_bucket{le=\"%g\"} %llu\n",
                            bth_metrics_rt_bounds[b], (unsigned long long)cum);
    }
    uint64_t count = SUM(target_response_time_count);
    evbuffer_add_printf(out,
                        "berth_target_response_time_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "berth_target_response_time_seconds_sum %.6f\n"
                        "berth_target_response_time_seconds_count %llu\n",
                        (unsigned long long)count,
                        (double)SUM(target_response_time_sum_us) / 1e6, (unsigned long long)count);
}
