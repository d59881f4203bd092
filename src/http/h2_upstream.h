/* SPDX-License-Identifier: MIT */
/* Worker threads. HTTP/2 to targets (groups with protocol_version HTTP2 or GRPC): per
 * worker and per target, a few pooled HTTP/2 connections (h2c with prior knowledge, or h2
 * by ALPN over TLS), each carrying many exchanges at once as streams, up to the target's
 * SETTINGS_MAX_CONCURRENT_STREAMS; a full or going-away connection takes no new stream and
 * another one opens. Each stream is a struct bth_upstream to its session, which writes the
 * request and reads the answer as HTTP/1.1 exactly as over a socket of its own
 * (bth_upstream_ops); nothing in the session knows HTTP/2. */
#ifndef BERTH_H2_UPSTREAM_H
#define BERTH_H2_UPSTREAM_H

#include <stdbool.h>

#include "http_upstream.h"

struct bth_worker;
struct bth_target;
struct bth_tls_client;

/* A stream to <t> for one exchange, attached to <cb>/<arg>: on a pooled connection with room
 * (state ACTIVE when it is up, CONNECTING while it connects), or on a new one (always with
 * <fresh>), over TLS with <tls>. NULL when no connection could be started (errno set).
 * The upstream's connected, read, flush, release and destroy work as for a socket. */
struct bth_upstream *bth_h2_upstream_acquire(struct bth_worker *w, struct bth_target *t, bool fresh,
                                             struct bth_tls_client *tls, bth_upstream_event_cb cb,
                                             void *arg);

#endif /* BERTH_H2_UPSTREAM_H */
