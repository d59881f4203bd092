/* SPDX-License-Identifier: MIT */
/* Prometheus text exposition (format 0.0.4). Names follow the ELB CloudWatch metrics:
 * RequestCount -> berth_requests_total, HTTPCode_ELB_5XX_Count ->
 * berth_elb_responses_total{code="5xx"}, TargetResponseTime ->
 * berth_target_response_time_seconds, HealthyHostCount -> berth_healthy_targets, ... */
#include "metrics.h"

#include "grpc.h"

#include <stddef.h>

#include <event2/buffer.h>

#include "balancer.h"
#include "grpc.h"
#include "registry.h"
#include "stats.h"
#include "target.h"
#include "worker.h"

void bth_metrics_family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One labelled counter family over a list of stats blocks. */
static void per_block(struct evbuffer *out, const char *name, const char *help, const char *label,
                      struct bth_stats *const *blocks, size_t n, enum bth_stat k)
{
    bth_metrics_family(out, name, "counter", help);
    for (size_t i = 0; i < n; i++)
        evbuffer_add_printf(out, "%s{%s=\"%s\"} %llu\n", name, label, blocks[i]->name,
                            (unsigned long long)bth_stats_sum(blocks[i], k));
}

static void by_class(struct evbuffer *out, const char *name, const char *help, const char *label,
                     struct bth_stats *const *blocks, size_t n, enum bth_stat first, int c0, int c1)
{
    bth_metrics_family(out, name, "counter", help);
    for (size_t i = 0; i < n; i++) {
        for (int c = c0; c <= c1; c++)
            evbuffer_add_printf(
                out, "%s{%s=\"%s\",code=\"%dxx\"} %llu\n", name, label, blocks[i]->name, c,
                (unsigned long long)bth_stats_sum(blocks[i], (enum bth_stat)(first + c - c0)));
    }
}

/* One counter family whose second label takes <n> values, one consecutive stat each from
 * <first>, over the listeners' blocks. */
/* One counter per block (labelled <block_label>=its name) and per value of <label>. */
static void by_label(struct evbuffer *out, const char *name, const char *help,
                     const char *block_label, struct bth_stats *const *blocks, size_t nb,
                     const char *label, const char *const *values, int n, enum bth_stat first)
{
    bth_metrics_family(out, name, "counter", help);
    for (size_t i = 0; i < nb; i++) {
        for (int k = 0; k < n; k++)
            evbuffer_add_printf(
                out, "%s{%s=\"%s\",%s=\"%s\"} %llu\n", name, block_label, blocks[i]->name, label,
                values[k],
                (unsigned long long)bth_stats_sum(blocks[i], (enum bth_stat)(first + k)));
    }
}

/* gRPC calls by the grpc-status their clients read, for the groups that carry gRPC
 * (protocol_version GRPC, or any group that has seen a gRPC call). */
static void grpc_statuses(struct evbuffer *out, const struct bth_registry *reg)
{
    const char *name = "berth_grpc_responses_total";
    bth_metrics_family(out, name, "counter",
                       "gRPC calls by the grpc-status their client read (the target's, or "
                       "berth's own answer's).");
    for (size_t i = 0; i < reg->ngroups; i++) {
        struct bth_stats *st = reg->groups[i].stats;
        uint64_t n[BTH_GRPC_CODES], total = 0;
        for (int k = 0; k < BTH_GRPC_CODES; k++)
            total += n[k] = bth_stats_sum(st, (enum bth_stat)(BTH_ST_GRPC_STATUS0 + k));
        if (total == 0 && reg->groups[i].cfg->protocol_version != BTH_PV_GRPC)
            continue;
        for (int k = 0; k < BTH_GRPC_CODES; k++)
            evbuffer_add_printf(out, "%s{target_group=\"%s\",code=\"%s\"} %llu\n", name, st->name,
                                bth_grpc_code_name(k), (unsigned long long)n[k]);
    }
}

static void histogram(struct evbuffer *out, struct bth_stats *const *blocks, size_t n)
{
    const char *name = "berth_target_response_time_seconds";
    bth_metrics_family(
        out, name, "histogram",
        "Time from the request sent to the target until its response head (TargetResponseTime).");
    for (size_t i = 0; i < n; i++) {
        uint64_t cum = 0;
        for (int b = 0; b < BTH_RT_BUCKETS; b++) {
            cum += bth_stats_sum(blocks[i], (enum bth_stat)(BTH_ST_RT_BUCKET0 + b));
            evbuffer_add_printf(out, "%s_bucket{target_group=\"%s\",le=\"%g\"} %llu\n", name,
                                blocks[i]->name, bth_stats_rt_bounds[b], (unsigned long long)cum);
        }
        uint64_t count = bth_stats_sum(blocks[i], BTH_ST_RT_COUNT);
        evbuffer_add_printf(
            out,
            "%s_bucket{target_group=\"%s\",le=\"+Inf\"} %llu\n"
            "%s_sum{target_group=\"%s\"} %.6f\n%s_count{target_group=\"%s\"} %llu\n",
            name, blocks[i]->name, (unsigned long long)count, name, blocks[i]->name,
            (double)bth_stats_sum(blocks[i], BTH_ST_RT_SUM_US) / 1e6, name, blocks[i]->name,
            (unsigned long long)count);
    }
}

static void target_gauges(struct evbuffer *out, const struct bth_registry *reg)
{
    bth_metrics_family(out, "berth_healthy_targets", "gauge",
                       "Targets taking traffic per group (HealthyHostCount).");
    for (size_t i = 0; i < reg->ngroups; i++) {
        unsigned n = 0;
        for (size_t j = 0; j < reg->groups[i].ntargets; j++)
            n += bth_target_takes_traffic(reg->groups[i].targets[j]);
        evbuffer_add_printf(out, "berth_healthy_targets{target_group=\"%s\"} %u\n",
                            reg->groups[i].name, n);
    }
    bth_metrics_family(out, "berth_unhealthy_targets", "gauge",
                       "Targets failing health checks per group (UnHealthyHostCount).");
    for (size_t i = 0; i < reg->ngroups; i++) {
        unsigned n = 0;
        for (size_t j = 0; j < reg->groups[i].ntargets; j++)
            n += atomic_load(&reg->groups[i].targets[j]->state) == BTH_TARGET_UNHEALTHY;
        evbuffer_add_printf(out, "berth_unhealthy_targets{target_group=\"%s\"} %u\n",
                            reg->groups[i].name, n);
    }
    bth_metrics_family(
        out, "berth_group_failing_open", "gauge",
        "1 when no target of the group passes health checks and traffic goes to all of "
        "them (fail open, as ELB does).");
    for (size_t i = 0; i < reg->ngroups; i++) {
        const struct bth_reg_group *g = &reg->groups[i];
        evbuffer_add_printf(out, "berth_group_failing_open{target_group=\"%s\"} %d\n", g->name,
                            bth_lb_targets_failing_open(g->targets, g->ntargets));
    }
    bth_metrics_family(out, "berth_ejected_targets", "gauge",
                       "Targets out of rotation after passive health checks (outlier detection).");
    for (size_t i = 0; i < reg->ngroups; i++) {
        unsigned n = 0;
        for (size_t j = 0; j < reg->groups[i].ntargets; j++)
            n += atomic_load(&reg->groups[i].targets[j]->ejected);
        evbuffer_add_printf(out, "berth_ejected_targets{target_group=\"%s\"} %u\n",
                            reg->groups[i].name, n);
    }
    bth_metrics_family(out, "berth_targets", "gauge", "Registered targets per group and state.");
    for (size_t i = 0; i < reg->ngroups; i++) {
        unsigned by_state[BTH_TARGET_UNAVAILABLE + 1] = {0};
        for (size_t j = 0; j < reg->groups[i].ntargets; j++)
            by_state[atomic_load(&reg->groups[i].targets[j]->state)]++;
        for (int st = 0; st <= BTH_TARGET_UNAVAILABLE; st++)
            evbuffer_add_printf(out, "berth_targets{target_group=\"%s\",state=\"%s\"} %u\n",
                                reg->groups[i].name,
                                bth_target_state_name((enum bth_target_state)st), by_state[st]);
    }
}

void bth_metrics_render(struct evbuffer *out, struct bth_worker *const *workers, unsigned n,
                        const struct bth_registry *reg)
{
    int64_t active = 0;
    uint64_t rejected = 0, pauses = 0;
    for (unsigned i = 0; i < n; i++) {
        active +=
            atomic_load_explicit(&workers[i]->counters.active_connections, memory_order_relaxed);
        rejected +=
            atomic_load_explicit(&workers[i]->counters.rejected_connections, memory_order_relaxed);
        pauses += atomic_load_explicit(&workers[i]->counters.accept_pauses, memory_order_relaxed);
    }
    bth_metrics_family(out, "berth_reloads_total", "counter", "Config reloads by result.");
    evbuffer_add_printf(out,
                        "berth_reloads_total{result=\"ok\"} %llu\n"
                        "berth_reloads_total{result=\"error\"} %llu\n",
                        (unsigned long long)reg->reloads_ok,
                        (unsigned long long)reg->reloads_failed);
    bth_metrics_family(out, "berth_active_connections", "gauge",
                       "Client connections open (ActiveConnectionCount).");
    evbuffer_add_printf(out, "berth_active_connections %lld\n", (long long)active);
    bth_metrics_family(out, "berth_rejected_connections_total", "counter",
                       "Client connections closed at once: max_connections reached, or the "
                       "open file limit nearly so (RejectedConnectionCount).");
    evbuffer_add_printf(out, "berth_rejected_connections_total %llu\n",
                        (unsigned long long)rejected);
    bth_metrics_family(out, "berth_accept_pauses_total", "counter",
                       "Times a worker stopped accepting because accept() failed for lack of "
                       "descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM); it retries "
                       "every 100 ms until accept() succeeds.");
    evbuffer_add_printf(out, "berth_accept_pauses_total %llu\n", (unsigned long long)pauses);

    struct bth_stats *const *ls = reg->listener_stats;
    size_t nl = reg->nlisteners;
    per_block(out, "berth_requests_total", "Requests processed (RequestCount).", "listener", ls, nl,
              BTH_ST_REQUESTS);
    per_block(out, "berth_new_connections_total",
              "Client connections accepted (NewConnectionCount).", "listener", ls, nl,
              BTH_ST_NEW_CONNECTIONS);
    per_block(out, "berth_processed_bytes_total",
              "Bytes received from and sent to clients (ProcessedBytes).", "listener", ls, nl,
              BTH_ST_PROCESSED_BYTES);
    by_class(out, "berth_elb_responses_total",
             "Responses berth generated itself by class (HTTPCode_ELB_3XX/4XX/5XX_Count).",
             "listener", ls, nl, BTH_ST_ELB_3XX, 3, 5);

    bth_metrics_family(out, "berth_udp_flows", "gauge", "UDP flows in the flow tables (NLB mode).");
    for (size_t i = 0; i < nl; i++)
        evbuffer_add_printf(out, "berth_udp_flows{listener=\"%s\"} %lld\n", ls[i]->name,
                            (long long)(bth_stats_sum(ls[i], BTH_ST_UDP_FLOWS_CREATED) -
                                        bth_stats_sum(ls[i], BTH_ST_UDP_FLOWS_CLOSED)));
    static const char *const tiers[] = {"acceptable", "ambiguous", "severe"};
    by_label(out, "berth_desync_requests_total",
             "Requests by desync classification (DesyncMitigationMode_NonCompliant_Request_Count).",
             "listener", ls, nl, "class", tiers, 3, BTH_ST_DESYNC_ACCEPTABLE);
    per_block(out, "berth_desync_blocked_total",
              "Requests refused with 400: desync_mitigation_mode, or framing berth cannot read.",
              "listener", ls, nl, BTH_ST_DESYNC_BLOCKED);
    per_block(out, "berth_header_timeouts_total",
              "Requests whose head did not arrive within header_timeout (answered 408).",
              "listener", ls, nl, BTH_ST_HEADER_TIMEOUTS);
    per_block(out, "berth_body_timeouts_total",
              "Requests whose body fell behind body_timeout plus one second per min_body_rate "
              "bytes (408, or a close once the answer had started).",
              "listener", ls, nl, BTH_ST_BODY_TIMEOUTS);
    per_block(out, "berth_http2_connections_total", "HTTP/2 client connections (h2 and h2c).",
              "listener", ls, nl, BTH_ST_H2_CONNECTIONS);
    per_block(out, "berth_http2_streams_total", "HTTP/2 streams opened by clients.", "listener", ls,
              nl, BTH_ST_H2_STREAMS);
    static const char *const by[] = {"client", "berth"}; /* RESETS_RECEIVED, _SENT */
    by_label(out, "berth_http2_stream_resets_total",
             "HTTP/2 streams reset (RST_STREAM), by the side that reset them.", "listener", ls, nl,
             "by", by, 2, BTH_ST_H2_RESETS_RECEIVED);
    static const char *const goaway_codes[] = {"NO_ERROR",           "PROTOCOL_ERROR",
                                               "FLOW_CONTROL_ERROR", "COMPRESSION_ERROR",
                                               "ENHANCE_YOUR_CALM",  "OTHER"};
    by_label(out, "berth_http2_goaways_total",
             "HTTP/2 GOAWAY frames berth sent, by error code (ENHANCE_YOUR_CALM: a flood was "
             "cut off).",
             "listener", ls, nl, "code", goaway_codes, 6, BTH_ST_H2_GOAWAY_NO_ERROR);
    per_block(out, "berth_udp_flows_rejected_total",
              "UDP datagrams dropped because the flow table was full (udp_max_flows).", "listener",
              ls, nl, BTH_ST_UDP_FLOWS_REJECTED);
    struct bth_stats *gs[reg->ngroups ? reg->ngroups : 1];
    for (size_t i = 0; i < reg->ngroups; i++)
        gs[i] = reg->groups[i].stats;
    per_block(out, "berth_target_requests_total", "Requests forwarded to each group's targets.",
              "target_group", gs, reg->ngroups, BTH_ST_REQUESTS);
    by_class(out, "berth_target_responses_total",
             "Target responses by class (HTTPCode_Target_1XX..5XX_Count).", "target_group", gs,
             reg->ngroups, BTH_ST_TARGET_1XX, 1, 5);
    per_block(out, "berth_target_connection_errors_total",
              "Connections to targets that failed (TargetConnectionErrorCount).", "target_group",
              gs, reg->ngroups, BTH_ST_TARGET_CONN_ERRORS);
    histogram(out, gs, reg->ngroups);
    grpc_statuses(out, reg);
    bth_metrics_family(out, "berth_health_transitions_total", "counter",
                       "Target state changes made by active health checks.");
    for (size_t i = 0; i < reg->ngroups; i++) {
        evbuffer_add_printf(
            out,
            "berth_health_transitions_total{target_group=\"%s\",to=\"healthy\"} "
            "%llu\n"
            "berth_health_transitions_total{target_group=\"%s\",to=\"unhealthy\"} "
            "%llu\n",
            gs[i]->name, (unsigned long long)bth_stats_sum(gs[i], BTH_ST_HC_TO_HEALTHY),
            gs[i]->name, (unsigned long long)bth_stats_sum(gs[i], BTH_ST_HC_TO_UNHEALTHY));
    }
    per_block(out, "berth_ejections_total",
              "Targets ejected by passive health checks (outlier detection).", "target_group", gs,
              reg->ngroups, BTH_ST_EJECTIONS);
    target_gauges(out, reg);
}
