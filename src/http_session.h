/* SPDX-License-Identifier: MIT */
/* Worker threads. One client connection in ALB mode: parse requests with llhttp, route
 * them on the worker's snapshot, forward them to a target over a pooled upstream
 * connection, and stream the response back, with keep-alive on both sides, backpressure in
 * both directions, retries of failed connects, and berth's own error answers. */
#ifndef BERTH_HTTP_SESSION_H
#define BERTH_HTTP_SESSION_H

struct bth_worker;
struct bth_worker_listener;
struct bth_http_session;

/* Takes ownership of the accepted, non-blocking <fd>. On failure the fd is closed. */
void bth_http_session_start(struct bth_worker *w, struct bth_worker_listener *wl, int fd);

/* Makes an idle session close now and a busy one close after its current exchange; used
 * when the worker stops. */
void bth_http_session_stop(struct bth_http_session *s);

/* Closes and frees <s> at once (worker exit after the stop deadline). */
void bth_http_session_abort(struct bth_http_session *s);

/* The next session in the worker's list (for iteration that may free the current one). */
struct bth_http_session *bth_http_session_next(struct bth_http_session *s);

#endif /* BERTH_HTTP_SESSION_H */
