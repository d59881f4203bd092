/* SPDX-License-Identifier: MIT */
/* Worker threads. The front door of HTTP and HTTPS listeners: it chooses the protocol of
 * each accepted connection (HTTP/2 when TLS's ALPN chose h2, or when an h2c listener sees
 * the HTTP/2 connection preface; HTTP/1.1 otherwise) and hands the connection over to an
 * HTTP/1 session or an HTTP/2 connection. */
#ifndef BERTH_HTTP_FRONT_H
#define BERTH_HTTP_FRONT_H

struct bth_listener_ops;

/* The worker's handler for HTTP and HTTPS listeners. */
extern const struct bth_listener_ops bth_http_listener_ops;

#endif /* BERTH_HTTP_FRONT_H */
