/* SPDX-License-Identifier: MIT */
/* Worker threads. One HTTP/2 client connection in ALB mode (nghttp2 for framing, HPACK and
 * flow control, on the worker's own event loop and buffers). Each stream is one exchange:
 * it runs an HTTP/1 session of its own (http_session_int.h, "front"), so routing, actions,
 * limits, stickiness, retries, berth's answers, the access log and metrics are the very
 * ones of HTTP/1.1, and the target sees the HTTP/1.1 request it would have seen. */
#ifndef BERTH_H2_SESSION_H
#define BERTH_H2_SESSION_H

#include <sys/socket.h>

struct bth_conn;
struct bth_worker;
struct bth_worker_listener;

/* Serves the connection <c> (taken over, with its TLS and the bytes read so far, the
 * client's preface among them) from <peer> as HTTP/2. */
void bth_h2_session_start(struct bth_worker *w, struct bth_worker_listener *wl, struct bth_conn *c,
                          const struct sockaddr_storage *peer);

#endif /* BERTH_H2_SESSION_H */
