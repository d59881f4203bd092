/* SPDX-License-Identifier: MIT */
/* Worker threads. One HTTP/1 client connection in ALB mode: parse requests with llhttp, route
 * them on the worker's snapshot, forward them to a target over a pooled upstream
 * connection, and stream the response back, with keep-alive on both sides, backpressure in
 * both directions, retries of failed connects, and berth's own error answers. */
#ifndef BERTH_HTTP_SESSION_H
#define BERTH_HTTP_SESSION_H

#include <sys/socket.h>

struct bth_conn;
struct bth_worker;
struct bth_worker_listener;

/* Serves the accepted plain-TCP connection <fd> (ownership passes) from <peer> as HTTP/1:
 * a session on the worker's client list, which closes once idle when the worker stops. */
void bth_h1_session_accept(struct bth_worker *w, struct bth_worker_listener *wl, int fd,
                           const struct sockaddr_storage *peer);
/* The same for the connection <c> (taken over, with its TLS and any bytes read), whose
 * protocol the front door chose (http_front.h). */
void bth_h1_session_start(struct bth_worker *w, struct bth_worker_listener *wl, struct bth_conn *c,
                          const struct sockaddr_storage *peer);

#endif /* BERTH_HTTP_SESSION_H */
