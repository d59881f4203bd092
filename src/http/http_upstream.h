/* SPDX-License-Identifier: MIT */
/* Worker threads. Connections from one worker to one target: connect with a deadline, and
 * a per-worker, per-target pool of idle keep-alive connections (the pool lives in the
 * target object, one slot per worker, so it needs no lock). */
#ifndef BERTH_HTTP_UPSTREAM_H
#define BERTH_HTTP_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event_struct.h>

#include "conn.h"
#include "worker.h"

struct bth_worker;
struct bth_target;
struct bth_upstream;
struct bth_tls_client;

enum bth_upstream_state {
    BTH_UP_ST_CONNECTING = 0, /* connect() in progress */
    BTH_UP_ST_ACTIVE,         /* attached to a session */
    BTH_UP_ST_IDLE,           /* in the pool */
};

/* Called for I/O on an attached connection: <what> is EV_READ/EV_WRITE/EV_TIMEOUT bits;
 * EV_TIMEOUT means the connect deadline passed. */
typedef void (*bth_upstream_event_cb)(struct bth_upstream *up, short what, void *arg);

/* A connection that is not a socket of its own (a stream on an HTTP/2 connection, made by
 * h2_upstream.c) says how the session's reads and writes reach it. Its conn has no
 * descriptor: the request bytes the session writes into conn.out are taken by flush, the
 * answer arrives in conn.in by read, as HTTP/1.1 either way. */
struct bth_upstream_ops {
    size_t (*read)(struct bth_upstream *up, size_t limit);
    int (*flush)(struct bth_upstream *up);
    int (*connected)(struct bth_upstream *up);
    void (*release)(struct bth_upstream *up, bool reusable);
};

struct bth_upstream {
    struct bth_conn conn;
    const struct bth_upstream_ops *ops; /* NULL: conn is a socket to the target */
    struct bth_worker *w;               /* borrowed: owner */
    struct bth_target *target;          /* one reference held */
    enum bth_upstream_state state;
    struct bth_upstream *next_idle; /* pool list link */
    struct bth_worker_conn wc;      /* on the worker's list of target connections */
    struct event timer;             /* connect deadline, then pool idle timeout */
    unsigned requests;              /* requests completed on this connection */
    int grpc_status; /* the grpc-status the target answered with (HTTP/2), -1: none yet */
    bth_upstream_event_cb cb;
    void *cb_arg;
};

#define BTH_UPSTREAM_CONNECT_TIMEOUT_MS 10000
#define BTH_UPSTREAM_POOL_IDLE_MS       60000
#define BTH_UPSTREAM_POOL_MAX           512 /* idle connections per target per worker */

/* Returns an idle pooled connection to <t> (state ACTIVE) unless <fresh>, or starts a new
 * one (state CONNECTING; over TLS when <tls> is set, resuming the pool's last session),
 * attached to <cb>/<arg>. NULL when no socket could be made or
 * connect() failed at once (errno set). */
struct bth_upstream *bth_upstream_acquire(struct bth_worker *w, struct bth_target *t, bool fresh,
                                          struct bth_tls_client *tls, bth_upstream_event_cb cb,
                                          void *arg);

/* A non-blocking socket to <t> with its connect() started (TCP_NODELAY), or -1 with errno
 * set. */
int bth_upstream_connect(const struct bth_target *t);

/* Finishes the connect: checks SO_ERROR. Returns 0 (now ACTIVE) or a negative errno. */
int bth_upstream_connected(struct bth_upstream *up);

/* Reads what the target sent into conn.in, up to <limit> bytes held (bth_conn_read). */
static inline size_t bth_upstream_read(struct bth_upstream *up, size_t limit)
{
    return up->ops != NULL ? up->ops->read(up, limit) : bth_conn_read(&up->conn, limit);
}

/* Sends what the session wrote into conn.out (bth_conn_flush). */
static inline int bth_upstream_flush(struct bth_upstream *up)
{
    return up->ops != NULL ? up->ops->flush(up) : bth_conn_flush(&up->conn);
}

/* Detaches <up> from its session: back to the pool when <reusable> and the pool has room,
 * else closed. */
void bth_upstream_release(struct bth_upstream *up, bool reusable);

/* Closes and frees <up>. */
void bth_upstream_destroy(struct bth_upstream *up);

#endif /* BERTH_HTTP_UPSTREAM_H */
