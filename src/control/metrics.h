/* SPDX-License-Identifier: MIT */
/* Prometheus exposition. Process-wide connection counters live per worker in struct
 * bth_counters and per-listener and per-group counters in struct bth_stats blocks (both in
 * stats.h). The main thread sums both when /metrics is asked for, without stopping the data
 * plane. */
#ifndef BERTH_METRICS_H
#define BERTH_METRICS_H

struct evbuffer;
struct bth_worker;
struct bth_registry;

/* Appends the "# HELP" and "# TYPE" lines of one metric family to <out>. */
void bth_metrics_family(struct evbuffer *out, const char *name, const char *type, const char *help);

/* Appends the whole exposition to <out>. Main thread. */
void bth_metrics_render(struct evbuffer *out, struct bth_worker *const *workers, unsigned n,
                        const struct bth_registry *reg);

#endif /* BERTH_METRICS_H */
