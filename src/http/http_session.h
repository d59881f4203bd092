/* SPDX-License-Identifier: MIT */
/* Worker threads. One client connection in ALB mode: parse requests with llhttp, route
 * them on the worker's snapshot, forward them to a target over a pooled upstream
 * connection, and stream the response back, with keep-alive on both sides, backpressure in
 * both directions, retries of failed connects, and berth's own error answers. */
#ifndef BERTH_HTTP_SESSION_H
#define BERTH_HTTP_SESSION_H

struct bth_listener_ops;

/* The worker's handler for HTTP and HTTPS listeners: each accepted connection becomes a
 * session on the worker's client list, which closes once idle when the worker stops. */
extern const struct bth_listener_ops bth_http_listener_ops;

#endif /* BERTH_HTTP_SESSION_H */
