/* SPDX-License-Identifier: MIT */
/* Upstream connections and per-worker pools. A pooled connection keeps its event armed:
 * data or EOF from an idle target means it closed (or misbehaved), so the connection is
 * dropped at once rather than found dead by the next request. */
#include "http_upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "mem.h"
#include "target.h"
#include "tls.h"
#include "worker.h"

static struct bth_upstream_pool *pool_of(struct bth_upstream *up)
{
    return &up->target->pools[up->w->id];
}

static void pool_remove(struct bth_upstream *up)
{
    struct bth_upstream_pool *pool = pool_of(up);
    for (struct bth_upstream **p = &pool->idle_head; *p != NULL; p = &(*p)->next_idle) {
        if (*p == up) {
            *p = up->next_idle;
            pool->nidle--;
            break;
        }
    }
    up->next_idle = NULL;
}

void bth_upstream_destroy(struct bth_upstream *up)
{
    if (up->ops != NULL) {
        up->ops->release(up, false);
        return;
    }
    if (up->state == BTH_UP_ST_IDLE)
        pool_remove(up);
    evtimer_del(&up->timer);
    bth_conn_fini(&up->conn);
    bth_worker_untrack(up->w, &up->wc);
    atomic_fetch_sub_explicit(&up->target->active_conns, 1, memory_order_relaxed);
    bth_target_unref(up->target);
    bth_free(up);
}

/* The worker cuts the connections left in pools when it exits. */
static void upstream_abort(struct bth_worker_conn *c)
{
    bth_upstream_destroy(bth_list_entry(c, struct bth_upstream, wc));
}

static const struct bth_conn_ops upstream_conn_ops = {.abort = upstream_abort};

static void on_upstream_io(evutil_socket_t fd, short what, void *arg)
{
    struct bth_upstream *up = arg;
    bth_conn_note_event(&up->conn, what);
    if (up->state == BTH_UP_ST_IDLE) {
        /* An idle connection has nothing to say: EOF, data or error all end it. */
        if (what & (EV_READ | EV_CLOSED))
            bth_upstream_destroy(up);
        return;
    }
    up->cb(up, what, up->cb_arg);
}

static void on_upstream_timer(evutil_socket_t fd, short what, void *arg)
{
    struct bth_upstream *up = arg;
    if (up->state == BTH_UP_ST_IDLE) {
        bth_upstream_destroy(up);
        return;
    }
    up->cb(up, EV_TIMEOUT, up->cb_arg);
}

int bth_upstream_connect(const struct bth_target *t)
{
    int fd = socket(t->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)&t->addr.ss, t->addr.len) == -1 &&
        errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static struct bth_upstream *take_idle(struct bth_worker *w, struct bth_target *t)
{
    struct bth_upstream_pool *pool = &t->pools[w->id];
    struct bth_upstream *up = pool->idle_head;
    if (up == NULL)
        return NULL;
    pool->idle_head = up->next_idle;
    pool->nidle--;
    up->next_idle = NULL;
    evtimer_del(&up->timer);
    up->state = BTH_UP_ST_ACTIVE;
    return up;
}

struct bth_upstream *bth_upstream_acquire(struct bth_worker *w, struct bth_target *t, bool fresh,
                                          struct bth_tls_client *tls, bth_upstream_event_cb cb,
                                          void *arg)
{
    struct bth_upstream *up = fresh ? NULL : take_idle(w, t);
    if (up != NULL) {
        up->cb = cb;
        up->cb_arg = arg;
        up->grpc_status = -1;
        return up;
    }
    int fd = bth_upstream_connect(t);
    if (fd == -1)
        return NULL;
    up = bth_calloc(1, sizeof(*up));
    if (up == NULL) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    if (bth_conn_init(&up->conn, w->base, fd, on_upstream_io, up) != 0) {
        close(fd);
        bth_free(up);
        errno = ENOMEM;
        return NULL;
    }
    if (tls != NULL) {
        SSL *ssl = bth_tls_client_new_ssl(tls, fd, t->pools[w->id].tls_session);
        if (ssl == NULL) {
            bth_conn_fini(&up->conn);
            bth_free(up);
            errno = ENOMEM;
            return NULL;
        }
        bth_conn_set_ssl(&up->conn, ssl);
    }
    up->w = w;
    bth_worker_track(w, &up->wc, &upstream_conn_ops, false);
    bth_target_ref(t);
    up->target = t;
    atomic_fetch_add_explicit(&t->active_conns, 1, memory_order_relaxed);
    up->state = BTH_UP_ST_CONNECTING;
    up->grpc_status = -1;
    up->cb = cb;
    up->cb_arg = arg;
    evtimer_assign(&up->timer, w->base, on_upstream_timer, up);
    evtimer_add(&up->timer, bth_worker_timeout(w, BTH_UPSTREAM_CONNECT_TIMEOUT_MS));
    return up;
}

int bth_upstream_connected(struct bth_upstream *up)
{
    if (up->ops != NULL)
        return up->ops->connected(up);
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(up->conn.fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    if (err != 0)
        return -err;
    evtimer_del(&up->timer);
    up->state = BTH_UP_ST_ACTIVE;
    return 0;
}

void bth_upstream_release(struct bth_upstream *up, bool reusable)
{
    if (up->ops != NULL) {
        up->ops->release(up, reusable);
        return;
    }
    struct bth_upstream_pool *pool = pool_of(up);
    bool removed = atomic_load_explicit(&up->target->removed, memory_order_relaxed);
    if (!reusable || removed || up->state != BTH_UP_ST_ACTIVE || up->conn.eof ||
        up->conn.error != 0 || evbuffer_get_length(up->conn.in) != 0 ||
        evbuffer_get_length(up->conn.out) != 0 || pool->nidle >= BTH_UPSTREAM_POOL_MAX) {
        bth_upstream_destroy(up);
        return;
    }
    if (up->conn.ssl != NULL && up->requests == 0) {
        /* Keep the session (with TLS 1.3 it arrives after the handshake) to resume the next
         * connection to this target from this worker. */
        SSL_SESSION *sess = SSL_get1_session(up->conn.ssl);
        if (sess != NULL) {
            SSL_SESSION_free(pool->tls_session);
            pool->tls_session = sess;
        }
    }
    up->requests++;
    up->state = BTH_UP_ST_IDLE;
    up->cb = NULL;
    up->cb_arg = NULL;
    up->next_idle = pool->idle_head;
    pool->idle_head = up;
    pool->nidle++;
    evtimer_add(&up->timer, bth_worker_timeout(up->w, BTH_UPSTREAM_POOL_IDLE_MS));
}
