/* SPDX-License-Identifier: MIT */
/* Choosing HTTP/1.1 or HTTP/2 for a new connection. A plain HTTP listener without h2c goes
 * straight to an HTTP/1 session (no cost for the common case). Otherwise the connection
 * waits here, on its own event and timer, until the TLS handshake has chosen by ALPN, or
 * until its first bytes are known to be (or not to be) the HTTP/2 preface; the bytes read
 * meanwhile go with the connection. A connection that decides nothing within the
 * listener's header_timeout is closed. */
#include "http_front.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "conn.h"
#include "h2_session.h"
#include "http_session.h"
#include "mem.h"
#include "snapshot.h"
#include "stats.h"
#include "tls.h"
#include "worker.h"

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN (sizeof(PREFACE) - 1)

/* A connection whose protocol is not chosen yet. */
struct front {
    struct bth_conn conn;
    struct bth_worker *w;
    struct bth_worker_listener *wl;
    struct bth_worker_conn wc; /* on the worker's client list: a stop closes it */
    struct event timer;        /* header_timeout */
    struct sockaddr_storage peer;
};

static void front_free(struct front *f, bool counted_closed)
{
    event_del(&f->timer);
    bth_worker_untrack(f->w, &f->wc);
    if (counted_closed)
        bth_worker_conn_closed(f->w->snap->listeners[f->wl->index].stats);
    bth_conn_fini(&f->conn);
    bth_free(f);
}

/* 1: HTTP/2, 0: HTTP/1.1, -1: not known yet. */
static int choose(struct front *f)
{
    if (f->conn.ssl != NULL) {
        if (!SSL_is_init_finished(f->conn.ssl))
            return -1;
        const unsigned char *p;
        unsigned n;
        SSL_get0_alpn_selected(f->conn.ssl, &p, &n);
        return n == 2 && memcmp(p, "h2", 2) == 0;
    }
    size_t len = evbuffer_get_length(f->conn.in);
    if (len == 0)
        return -1;
    size_t n = len < PREFACE_LEN ? len : PREFACE_LEN;
    const char *b = (const char *)evbuffer_pullup(f->conn.in, (ev_ssize_t)n);
    if (b == NULL || memcmp(b, PREFACE, n) != 0)
        return 0;
    return n == PREFACE_LEN ? 1 : -1;
}

static void hand_over(struct front *f, int h2)
{
    struct bth_worker *w = f->w;
    struct bth_worker_listener *wl = f->wl;
    struct sockaddr_storage peer = f->peer;
    struct bth_conn c;
    event_del(&f->timer);
    bth_worker_untrack(w, &f->wc);
    event_del(&f->conn.ev);
    c = f->conn; /* the new owner registers the event again (bth_conn_move) */
    bth_free(f);
    if (h2)
        bth_h2_session_start(w, wl, &c, &peer);
    else
        bth_h1_session_start(w, wl, &c, &peer);
}

static void on_front_io(evutil_socket_t fd, short what, void *arg)
{
    struct front *f = arg;
    (void)fd;
    bth_conn_note_event(&f->conn, what);
    bth_conn_read(&f->conn, 16384);
    if (bth_conn_flush(&f->conn) != 0 || f->conn.error != 0) {
        front_free(f, true);
        return;
    }
    int h2 = choose(f);
    if (h2 < 0 && f->conn.eof) {
        front_free(f, true);
        return;
    }
    if (h2 >= 0)
        hand_over(f, h2);
}

static void on_front_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    front_free(arg, true);
}

static void front_stop(struct bth_worker_conn *c)
{
    front_free(bth_list_entry(c, struct front, wc), true);
}

static const struct bth_conn_ops front_conn_ops = {.stop = front_stop, .abort = front_stop};

static void http_accept(struct bth_worker *w, struct bth_worker_listener *wl, int fd)
{
    const struct bth_snap_listener *lst = &w->snap->listeners[wl->index];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == -1) {
        close(fd);
        bth_worker_conn_closed(lst->stats);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    bth_stats_add(lst->stats, w->id, BTH_ST_NEW_CONNECTIONS, 1);
    if (lst->tls == NULL && !lst->cfg->h2c) {
        bth_h1_session_accept(w, wl, fd, &ss); /* the common case: no choice to make */
        return;
    }
    struct front *f = bth_calloc(1, sizeof(*f));
    if (f == NULL || bth_conn_init(&f->conn, w->base, fd, on_front_io, f) != 0) {
        close(fd);
        bth_free(f);
        bth_worker_conn_closed(lst->stats);
        return;
    }
    f->w = w;
    f->wl = wl;
    f->peer = ss;
    if (lst->tls != NULL) {
        SSL *ssl = bth_tls_server_new_ssl(lst->tls, fd);
        if (ssl == NULL) {
            bth_conn_fini(&f->conn);
            bth_free(f);
            bth_worker_conn_closed(lst->stats);
            return;
        }
        bth_conn_set_ssl(&f->conn, ssl);
    }
    evtimer_assign(&f->timer, w->base, on_front_timer, f);
    struct timeval tv = {(time_t)(lst->cfg->header_timeout_ms / 1000),
                         (suseconds_t)(lst->cfg->header_timeout_ms % 1000) * 1000};
    evtimer_add(&f->timer, &tv);
    bth_worker_track(w, &f->wc, &front_conn_ops, true);
    on_front_io(fd, EV_READ | EV_WRITE, f);
}

const struct bth_listener_ops bth_http_listener_ops = {
    .name = "HTTP",
    .accept = http_accept,
};
