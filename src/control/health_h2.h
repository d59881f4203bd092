/* SPDX-License-Identifier: MIT */
/* Main thread. One health check request over HTTP/2 (groups with protocol_version HTTP2 or
 * GRPC), on a bufferevent the health checker connected: GET <path> for HTTP/2, or a gRPC
 * call to <path> with an empty message for gRPC (ALB's /AWS.ALB/healthcheck, or the
 * standard grpc.health.v1.Health/Check, whose answer says SERVING or not). nghttp2 frames
 * it; the checker owns the socket and the deadline. */
#ifndef BERTH_HEALTH_H2_H
#define BERTH_HEALTH_H2_H

#include <stdbool.h>

struct bufferevent;
struct bth_h2_check;

/* What the answer said; -1 where it said nothing. */
struct bth_h2_check_result {
    int status;      /* :status */
    int grpc_status; /* grpc-status, from the head (trailers-only) or the trailers */
    int serving;     /* grpc.health.v1: the ServingStatus in the answer (1 = SERVING) */
};

/* Sends the request on <bev> (connected; over TLS, h2 must have been chosen by ALPN): a
 * gRPC call when <grpc>, else GET. NULL when out of memory. */
struct bth_h2_check *bth_h2_check_start(struct bufferevent *bev, const char *authority,
                                        const char *path, bool grpc, bool tls);

/* Reads what arrived on the bufferevent. Returns 1 when the answer is whole (<out> filled),
 * 0 when more is needed, -1 on a protocol error (the target's HTTP/2 is broken). */
int bth_h2_check_input(struct bth_h2_check *c, struct bth_h2_check_result *out);

void bth_h2_check_free(struct bth_h2_check *c);

#endif /* BERTH_HEALTH_H2_H */
