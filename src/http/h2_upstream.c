/* SPDX-License-Identifier: MIT */
/* HTTP/2 connections to targets, and the streams on them that sessions use as upstreams.
 *
 * A session writes its request into the stream's conn.out as HTTP/1.1 (head, then the body
 * as the client framed it); flush reads it back (h2_msg) into a request HEADERS and DATA.
 * The answer's HEADERS, DATA and trailers are written as HTTP/1.1 into the stream's rx
 * queue (a status line, the fields, and chunked framing when the target gave no
 * content-length, its trailers in the last chunk); read moves them into conn.in as the
 * session asks, as a socket read would. So the session's parsing, limits, retries, logging
 * and answers are the ones it uses for HTTP/1.1 targets.
 *
 * Flow control with bounded memory: the target's window for a stream is given back
 * (nghttp2_session_consume) only as the session takes the answer from rx; the request body
 * is taken from conn.out only while the stream's DATA queue is below STREAM_DATA_MAX, so
 * the session, which stops reading its client while conn.out is full, holds the rest.
 *
 * Lifetime: a stream is freed when the session has released it and nghttp2 is done with it
 * (closed, or never opened), so nghttp2 never calls back into a freed stream. A connection
 * is freed only from its own event callbacks or from a session's call outside them; it
 * wakes sessions only through their streams' events (event_active), never by calling them,
 * and a session never frees a connection from inside one of its callbacks. */
#include "h2_upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "grpc.h"
#include "h2_msg.h"
#include "http_status.h"
#include "list.h"
#include "log.h"
#include "mem.h"
#include "target.h"
#include "tls.h"
#include "worker.h"

#define STREAM_DATA_MAX        (64 * 1024)  /* request bytes a stream takes ahead of its window */
#define CONN_OUT_HIGH          (128 * 1024) /* stop framing while the socket's output holds this */
#define READ_BUDGET_H2         (64 * 1024)
#define STREAM_WINDOW          (256 * 1024) /* answer bytes a target may send ahead, a stream */
#define CONN_WINDOW            (16 * 1024 * 1024) /* and all streams of a connection */
#define STREAMS_UNTIL_SETTINGS 100                /* RFC 9113 6.5.2's advice before SETTINGS */
#define FIELDS_MAX             (256 * 1024)       /* an answer's head, or its trailers, as text */

enum tconn_state {
    TC_CONNECTING = 0, /* connect() in progress */
    TC_READY,          /* takes new streams */
    TC_GOING_AWAY,     /* the target sent GOAWAY, or berth closes it: open streams finish */
    TC_DEAD,           /* failed or closed; freed at the end of the current callback */
};

struct h2_tconn {
    struct bth_conn conn;
    struct bth_worker *w;      /* borrowed: owner */
    struct bth_target *target; /* one reference held */
    struct bth_worker_conn wc; /* on the worker's list of target connections */
    struct event timer;        /* connect deadline, then the idle time in the pool */
    struct event send_ev;      /* no descriptor: activated to send what was queued */
    nghttp2_session *ng;
    struct bth_list streams; /* struct h2_ustream.link */
    struct h2_tconn *next;   /* the target's pool for this worker, while TC_CONNECTING/READY */
    unsigned nstreams;
    enum tconn_state state;
    int error;          /* errno of the failure (TC_DEAD) */
    bool settings_seen; /* the target's SETTINGS arrived (its stream limit is known) */
    bool alpn_checked;
    bool in_io; /* inside its own callback: freeing waits for its end */
};
_Static_assert(offsetof(struct h2_tconn, conn) == 0, "h2_send_to_conn takes it as its conn");

struct h2_ustream {
    struct bth_upstream up; /* what the session holds; up.conn has no descriptor */
    struct h2_tconn *tc;    /* NULL once the connection is gone */
    struct bth_list link;
    int32_t id;     /* 0 until the request's HEADERS are submitted */
    bool attached;  /* the session holds it */
    bool open;      /* nghttp2 knows the stream (submitted, not closed) */
    bool deferred;  /* the request's data source waits for bytes */
    bool head_done; /* the answer's final head is in rx */
    bool chunked;   /* the answer goes to the session chunked (no content-length) */
    bool has_length;
    bool grpc;     /* a gRPC call, or an answer that announces trailers: chunked to the
                    * session whatever its length, so the trailers (grpc-status) have a place */
    bool resp_end; /* the answer is whole in rx */
    int error;     /* errno of the connection's failure */
    bool broke;    /* the stream or its connection ended before the answer was whole */
    int status;
    char length[21];         /* the answer's content-length, written only if the framing uses it */
    struct h2_msg req;       /* the request as the session wrote it */
    struct evbuffer *rx;     /* owned: the answer as HTTP/1.1, for the session */
    struct evbuffer *fields; /* owned: the fields of the HEADERS being read, as lines */
    size_t rx_unconsumed;    /* DATA bytes in rx whose window is not given back yet */
};

static const struct bth_upstream_ops stream_ops;

/* ---- helpers --------------------------------------------------------------------------- */

static struct h2_tconn **pool_head(struct bth_worker *w, struct bth_target *t)
{
    return (struct h2_tconn **)&t->pools[w->id].h2_conns;
}

static void pool_unlink(struct h2_tconn *tc)
{
    for (struct h2_tconn **p = pool_head(tc->w, tc->target); *p != NULL; p = &(*p)->next) {
        if (*p == tc) {
            *p = tc->next;
            break;
        }
    }
    tc->next = NULL;
}

static void schedule_send(struct h2_tconn *tc)
{
    if (tc->state == TC_READY || tc->state == TC_GOING_AWAY)
        event_active(&tc->send_ev, EV_WRITE, 1);
}

/* Wakes the session of <st> with <what> from the event loop. */
static void notify(struct h2_ustream *st, short what)
{
    if (st->attached)
        event_active(&st->up.conn.ev, what, 1);
}

static void notify_all(struct h2_tconn *tc, short what)
{
    struct bth_list *it, *tmp;
    bth_list_foreach_safe(it, tmp, &tc->streams)
    {
        notify(bth_list_entry(it, struct h2_ustream, link), what);
    }
}

static struct h2_ustream *stream_of(struct h2_tconn *tc, int32_t id)
{
    return nghttp2_session_get_stream_user_data(tc->ng, id);
}

/* ---- connections ------------------------------------------------------------------------- */

static void tconn_settle(struct h2_tconn *tc);

static void stream_free(struct h2_ustream *st)
{
    struct h2_tconn *tc = st->tc;
    if (tc != NULL) {
        if (st->rx_unconsumed > 0 && tc->state != TC_DEAD)
            nghttp2_session_consume_connection(tc->ng, st->rx_unconsumed);
        if (st->open && tc->state != TC_DEAD)
            nghttp2_session_set_stream_user_data(tc->ng, st->id, NULL);
        bth_list_remove(&st->link);
        tc->nstreams--;
    }
    h2_msg_fini(&st->req);
    if (st->rx != NULL)
        evbuffer_free(st->rx);
    if (st->fields != NULL)
        evbuffer_free(st->fields);
    bth_conn_fini(&st->up.conn);
    bth_target_unref(st->up.target);
    bth_free(st);
}

/* Ends every stream of <tc> (the connection failed or closes) with <err>; the connection
 * is freed by tconn_settle. */
static void tconn_fail(struct h2_tconn *tc, int err)
{
    if (tc->state == TC_DEAD)
        return;
    bool was_connecting = tc->state == TC_CONNECTING;
    pool_unlink(tc);
    tc->state = TC_DEAD;
    tc->error = err;
    evtimer_del(&tc->timer);
    while (!bth_list_empty(&tc->streams)) {
        struct h2_ustream *st = bth_list_entry(tc->streams.next, struct h2_ustream, link);
        bth_list_remove(&st->link);
        tc->nstreams--;
        st->tc = NULL;
        st->open = false;
        st->rx_unconsumed = 0;
        if (!st->attached) {
            stream_free(st);
            continue;
        }
        st->error = err;
        if (!st->resp_end)
            st->broke = true;
        /* a session waiting for the connection hears it failed; the others read the end */
        notify(st, (short)(was_connecting ? EV_WRITE : EV_READ | EV_WRITE));
    }
}

static void tconn_free(struct h2_tconn *tc)
{
    tconn_fail(tc, ECONNABORTED);
    evtimer_del(&tc->timer);
    event_del(&tc->send_ev);
    nghttp2_session_del(tc->ng);
    bth_conn_fini(&tc->conn);
    bth_worker_untrack(tc->w, &tc->wc);
    atomic_fetch_sub_explicit(&tc->target->active_conns, 1, memory_order_relaxed);
    bth_target_unref(tc->target);
    bth_free(tc);
}

/* Closes <tc> politely: GOAWAY, then the socket (its streams are done). */
static void tconn_close(struct h2_tconn *tc)
{
    if (tc->state == TC_READY || tc->state == TC_GOING_AWAY) {
        nghttp2_session_terminate_session(tc->ng, NGHTTP2_NO_ERROR);
        nghttp2_session_send(tc->ng);
        bth_conn_flush(&tc->conn);
    }
    tconn_fail(tc, ECONNABORTED);
}

/* At the end of a callback or a session's call: frees a dead connection, and closes or
 * parks an idle one. */
static void tconn_settle(struct h2_tconn *tc)
{
    if (tc->in_io)
        return;
    if (tc->state != TC_DEAD && tc->nstreams == 0) {
        bool removed = atomic_load_explicit(&tc->target->removed, memory_order_relaxed);
        if (tc->state == TC_GOING_AWAY || removed)
            tconn_close(tc);
        else if (tc->state == TC_READY && !evtimer_pending(&tc->timer, NULL))
            evtimer_add(&tc->timer, bth_worker_timeout(tc->w, BTH_UPSTREAM_POOL_IDLE_MS));
    }
    if (tc->state == TC_DEAD)
        tconn_free(tc);
}

static void going_away(struct h2_tconn *tc)
{
    if (tc->state == TC_READY || tc->state == TC_CONNECTING) {
        pool_unlink(tc);
        tc->state = TC_GOING_AWAY;
    }
}

/* The handshake ended: a TLS target must have chosen h2. */
static int check_alpn(struct h2_tconn *tc)
{
    if (tc->alpn_checked || tc->conn.ssl == NULL || !SSL_is_init_finished(tc->conn.ssl))
        return 0;
    tc->alpn_checked = true;
    const unsigned char *p;
    unsigned n;
    SSL_get0_alpn_selected(tc->conn.ssl, &p, &n);
    if (n == 2 && memcmp(p, "h2", 2) == 0)
        return 0;
    bth_log(BTH_LOG_WARN, "target %s did not choose h2 by ALPN: HTTP/2 group closes it",
            tc->target->addr.text);
    return -1;
}

static void tconn_send(struct h2_tconn *tc)
{
    if (tc->state == TC_DEAD || tc->state == TC_CONNECTING)
        return;
    if (nghttp2_session_send(tc->ng) != 0 || bth_conn_flush(&tc->conn) != 0 || check_alpn(tc)) {
        tconn_fail(tc, tc->conn.error ? tc->conn.error : EPROTO);
        return;
    }
    if (!nghttp2_session_want_read(tc->ng) && !nghttp2_session_want_write(tc->ng) &&
        evbuffer_get_length(tc->conn.out) == 0)
        tconn_fail(tc, ECONNRESET); /* after a GOAWAY both ways: nothing more to say */
}

static void tconn_recv(struct h2_tconn *tc)
{
    for (int round = 0; round < 16 && tc->state != TC_DEAD; round++) {
        bth_conn_read(&tc->conn, READ_BUDGET_H2);
        if (check_alpn(tc) != 0) {
            tconn_fail(tc, EPROTO);
            return;
        }
        size_t n = evbuffer_get_length(tc->conn.in);
        if (n > 0) {
            const uint8_t *b = evbuffer_pullup(tc->conn.in, (ev_ssize_t)n);
            ssize_t rv = nghttp2_session_mem_recv(tc->ng, b, n);
            if (rv < 0) {
                bth_log(BTH_LOG_INFO, "target %s: HTTP/2 error: %s", tc->target->addr.text,
                        nghttp2_strerror((int)rv));
                tconn_fail(tc, EPROTO);
                return;
            }
            evbuffer_drain(tc->conn.in, n);
        }
        if (tc->conn.eof || tc->conn.error) {
            tconn_fail(tc, tc->conn.error ? tc->conn.error : ECONNRESET);
            return;
        }
        if (!tc->conn.read_pending)
            return;
    }
    if (tc->state != TC_DEAD)
        event_active(&tc->conn.ev, EV_READ, 1); /* more to read: yield to others first */
}

/* The connect finished (or failed). */
static void tconn_connected(struct h2_tconn *tc)
{
    int err = 0;
    socklen_t len = sizeof(err);
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    if (getsockopt(tc->conn.fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    if (err == 0 && getpeername(tc->conn.fd, (struct sockaddr *)&peer, &plen) == -1) {
        if (errno == ENOTCONN)
            return; /* still connecting */
        err = errno;
    }
    if (err != 0) {
        bth_log(BTH_LOG_INFO, "connect() to %s failed: %s", tc->target->addr.text, strerror(err));
        tconn_fail(tc, err);
        return;
    }
    evtimer_del(&tc->timer);
    tc->state = TC_READY;
    notify_all(tc, EV_WRITE); /* their sessions write the requests now */
}

static void on_tconn_io(evutil_socket_t fd, short what, void *arg)
{
    struct h2_tconn *tc = arg;
    (void)fd;
    bth_conn_note_event(&tc->conn, what);
    tc->in_io = true;
    if (tc->state == TC_CONNECTING)
        tconn_connected(tc);
    if (tc->state != TC_CONNECTING && tc->state != TC_DEAD && (what & (EV_READ | EV_CLOSED)))
        tconn_recv(tc);
    tconn_send(tc);
    tc->in_io = false;
    tconn_settle(tc);
}

static void on_tconn_timer(evutil_socket_t fd, short what, void *arg)
{
    struct h2_tconn *tc = arg;
    (void)fd;
    (void)what;
    if (tc->state == TC_CONNECTING) {
        bth_log(BTH_LOG_INFO, "connect() to %s timed out", tc->target->addr.text);
        notify_all(tc, EV_TIMEOUT);
        tconn_fail(tc, ETIMEDOUT);
    } else if (tc->nstreams == 0) { /* idle in the pool for long enough */
        tconn_close(tc);
    }
    tconn_settle(tc);
}

/* The worker cuts its target connections when it exits. */
static void tconn_abort(struct bth_worker_conn *c)
{
    struct h2_tconn *tc = bth_list_entry(c, struct h2_tconn, wc);
    tc->in_io = false;
    tconn_fail(tc, ECONNABORTED);
    tconn_free(tc);
}

static const struct bth_conn_ops tconn_ops = {.abort = tconn_abort};

/* ---- nghttp2 callbacks: the answer, as HTTP/1.1 into rx -------------------------------- */

static ssize_t on_send(nghttp2_session *ng, const uint8_t *data, size_t length, int flags,
                       void *user_data)
{
    (void)ng;
    (void)flags;
    return h2_send_to_conn(user_data, data, length, CONN_OUT_HIGH); /* conn comes first */
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
    struct h2_ustream *st = stream_of(user_data, frame->hd.stream_id);
    (void)ng;
    if (st != NULL && st->fields != NULL)
        evbuffer_drain(st->fields, evbuffer_get_length(st->fields));
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    struct h2_ustream *st = stream_of(user_data, frame->hd.stream_id);
    (void)ng;
    (void)flags;
    if (st == NULL || !st->attached)
        return 0;
    if (namelen > 0 && name[0] == ':') {
        if (namelen == 7 && memcmp(name, ":status", 7) == 0 && valuelen == 3)
            st->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
        return 0;
    }
    if (!st->head_done && namelen == 14 && memcmp(name, "content-length", 14) == 0) {
        if (valuelen >= sizeof(st->length))
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* nghttp2 checked it is a number */
        memcpy(st->length, value, valuelen);
        st->length[valuelen] = '\0';
        st->has_length = true;
        return 0;
    }
    if (!st->head_done && ((namelen == 12 && memcmp(name, "content-type", 12) == 0 &&
                            bth_grpc_content_type((const char *)value, valuelen)) ||
                           (namelen == 7 && memcmp(name, "trailer", 7) == 0)))
        st->grpc = true;
    if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0 && valuelen >= 1 && valuelen <= 2 &&
        value[0] >= '0' && value[0] <= '9' &&
        (valuelen == 1 || (value[1] >= '0' && value[1] <= '9')))
        st->up.grpc_status =
            valuelen == 1 ? value[0] - '0' : (value[0] - '0') * 10 + value[1] - '0';
    if (st->fields == NULL && (st->fields = evbuffer_new()) == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    /* a target's head or trailers beyond this reset the stream (the session would refuse
     * a head far smaller: max_response_header_size) */
    if (evbuffer_get_length(st->fields) + namelen + valuelen > FIELDS_MAX ||
        h2_line_add(st->fields, name, namelen, value, valuelen) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

/* A HEADERS frame was read whole: an interim or final head, or the trailers. */
static void headers_done(struct h2_ustream *st, bool end_stream)
{
    struct evbuffer *rx = st->rx;
    struct evbuffer *f = st->fields;
    if (st->head_done) { /* trailers: in the last chunk, or lost without chunked framing */
        if (st->chunked) {
            evbuffer_add(rx, "0\r\n", 3);
            if (f != NULL)
                evbuffer_add_buffer(rx, f);
            evbuffer_add(rx, "\r\n", 2);
        }
        st->resp_end = true;
        return;
    }
    int code = st->status;
    const char *reason = bth_http_reason(code);
    char line[16] = {'H',
                     'T',
                     'T',
                     'P',
                     '/',
                     '1',
                     '.',
                     '1',
                     ' ',
                     (char)('0' + code / 100 % 10),
                     (char)('0' + code / 10 % 10),
                     (char)('0' + code % 10),
                     ' '};
    evbuffer_add(rx, line, 13);
    evbuffer_add(rx, reason, strlen(reason));
    evbuffer_add(rx, "\r\n", 2);
    if (f != NULL)
        evbuffer_add_buffer(rx, f);
    if (code >= 100 && code < 200) {
        evbuffer_add(rx, "\r\n", 2);
        st->has_length = false;
        return;
    }
    st->head_done = true;
    bool bodiless = code == 204 || code == 304;
    if (end_stream) {
        /* no body: a trailers-only gRPC answer among others */
        if (!bodiless)
            h2_line_add(rx, "content-length", 14, st->has_length ? st->length : "0",
                        st->has_length ? strlen(st->length) : 1);
        st->resp_end = true;
    } else if (st->has_length && !st->grpc) {
        h2_line_add(rx, "content-length", 14, st->length, strlen(st->length));
    } else if (!bodiless) {
        evbuffer_add(rx, "transfer-encoding: chunked\r\n", 28);
        st->chunked = true;
    }
    evbuffer_add(rx, "\r\n", 2);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
    struct h2_tconn *tc = user_data;
    (void)ng;
    switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
        tc->settings_seen = true;
        return 0;
    case NGHTTP2_GOAWAY:
        going_away(tc); /* nghttp2 closes the streams it did not take, REFUSED_STREAM */
        return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        break;
    default:
        return 0;
    }
    struct h2_ustream *st = stream_of(tc, frame->hd.stream_id);
    if (st == NULL || !st->attached)
        return 0;
    bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS) {
        headers_done(st, end);
    } else if (end && !st->resp_end) {
        if (st->chunked)
            evbuffer_add(st->rx, "0\r\n\r\n", 5);
        st->resp_end = true;
    }
    notify(st, EV_READ);
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user_data)
{
    struct h2_tconn *tc = user_data;
    struct h2_ustream *st = stream_of(tc, stream_id);
    (void)flags;
    if (st == NULL || !st->attached || !st->head_done) {
        /* nobody reads it: the window comes back at once */
        nghttp2_session_consume(ng, stream_id, len);
        return 0;
    }
    if (st->chunked)
        h2_chunk_head(st->rx, len);
    evbuffer_add(st->rx, data, len);
    if (st->chunked)
        evbuffer_add(st->rx, "\r\n", 2);
    st->rx_unconsumed += len;
    notify(st, EV_READ);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    struct h2_tconn *tc = user_data;
    struct h2_ustream *st = stream_of(tc, stream_id);
    if (st == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(ng, stream_id, NULL);
    st->open = false;
    if (st->rx_unconsumed > 0) { /* the stream's window is gone; the connection's comes back */
        nghttp2_session_consume_connection(ng, st->rx_unconsumed);
        st->rx_unconsumed = 0;
    }
    if (!st->attached) {
        stream_free(st);
        return 0;
    }
    if (!st->resp_end) {
        st->broke = true;
        if (error_code != NGHTTP2_NO_ERROR)
            bth_log(BTH_LOG_DEBUG, "target %s reset stream %d: %s", tc->target->addr.text,
                    stream_id, nghttp2_http2_strerror(error_code));
    }
    notify(st, EV_READ);
    return 0;
}

/* The request body for DATA frames. */
static ssize_t on_req_data(nghttp2_session *ng, int32_t stream_id, uint8_t *buf, size_t length,
                           uint32_t *flags, nghttp2_data_source *source, void *user_data)
{
    struct h2_ustream *st = source->ptr;
    (void)buf;
    (void)user_data;
    if (!st->attached) /* the session gave up on it: the stream is being reset */
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return h2_msg_read_data(&st->req, ng, stream_id, length, flags, &st->deferred);
}

static void take_request_body(struct h2_ustream *st);

/* A DATA frame goes out: its header, then the payload moved from the stream's queue. */
static int on_send_data(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *user_data)
{
    struct h2_tconn *tc = user_data;
    struct h2_ustream *st = source->ptr;
    (void)ng;
    (void)frame;
    if (evbuffer_get_length(tc->conn.out) >= CONN_OUT_HIGH)
        return NGHTTP2_ERR_WOULDBLOCK;
    evbuffer_add(tc->conn.out, framehd, 9);
    evbuffer_remove_buffer(st->req.data, tc->conn.out, length);
    if (st->attached && st->req.phase != MSG_DONE) {
        take_request_body(st);
        notify(st, EV_WRITE); /* room again: the session may read its client */
    }
    return 0;
}

/* nghttp2 copies the callbacks into each session. */
static nghttp2_session_callbacks *make_callbacks(void)
{
    nghttp2_session_callbacks *c;
    if (nghttp2_session_callbacks_new(&c) != 0)
        return NULL;
    nghttp2_session_callbacks_set_send_callback(c, on_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(c, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(c, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(c, on_stream_close);
    nghttp2_session_callbacks_set_send_data_callback(c, on_send_data);
    return c;
}

static int session_setup(struct h2_tconn *tc)
{
    nghttp2_session_callbacks *cbs = make_callbacks();
    nghttp2_option *opt = NULL;
    if (cbs == NULL || nghttp2_option_new(&opt) != 0) {
        if (cbs != NULL)
            nghttp2_session_callbacks_del(cbs);
        return -1;
    }
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opt, STREAMS_UNTIL_SETTINGS);
    int rv = nghttp2_session_client_new2(&tc->ng, cbs, tc, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
    };
    if (nghttp2_submit_settings(tc->ng, NGHTTP2_FLAG_NONE, iv, 2) != 0 ||
        nghttp2_session_set_local_window_size(tc->ng, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0)
        return -1;
    return 0;
}

/* Starts a connection to <t>; NULL with errno set when it cannot. */
static struct h2_tconn *tconn_open(struct bth_worker *w, struct bth_target *t,
                                   struct bth_tls_client *tls)
{
    int fd = bth_upstream_connect(t);
    if (fd == -1)
        return NULL;
    struct h2_tconn *tc = bth_calloc(1, sizeof(*tc));
    if (tc == NULL || bth_conn_init(&tc->conn, w->base, fd, on_tconn_io, tc) != 0) {
        close(fd);
        bth_free(tc);
        errno = ENOMEM;
        return NULL;
    }
    SSL *ssl = tls != NULL ? bth_tls_client_new_ssl(tls, fd, NULL) : NULL;
    if (tls != NULL && ssl == NULL) {
        bth_conn_fini(&tc->conn);
        bth_free(tc);
        errno = ENOMEM;
        return NULL;
    }
    if (ssl != NULL)
        bth_conn_set_ssl(&tc->conn, ssl);
    tc->w = w;
    bth_target_ref(t);
    tc->target = t;
    atomic_fetch_add_explicit(&t->active_conns, 1, memory_order_relaxed);
    bth_list_init(&tc->streams);
    bth_worker_track(w, &tc->wc, &tconn_ops, false);
    evtimer_assign(&tc->timer, w->base, on_tconn_timer, tc);
    event_assign(&tc->send_ev, w->base, -1, 0, on_tconn_io, tc); /* EV_WRITE: send */
    tc->state = TC_CONNECTING;
    if (session_setup(tc) != 0) {
        tc->state = TC_DEAD;
        tconn_free(tc);
        errno = ENOMEM;
        return NULL;
    }
    evtimer_add(&tc->timer, bth_worker_timeout(w, BTH_UPSTREAM_CONNECT_TIMEOUT_MS));
    struct h2_tconn **head = pool_head(w, t);
    tc->next = *head;
    *head = tc;
    return tc;
}

/* A pooled connection to <t> with room for one more stream. */
static struct h2_tconn *pool_pick(struct bth_worker *w, struct bth_target *t)
{
    for (struct h2_tconn *tc = *pool_head(w, t); tc != NULL; tc = tc->next) {
        uint32_t max = tc->settings_seen ? nghttp2_session_get_remote_settings(
                                               tc->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
                                         : STREAMS_UNTIL_SETTINGS;
        if (tc->nstreams < max && nghttp2_session_check_request_allowed(tc->ng))
            return tc;
    }
    return NULL;
}

/* ---- streams: what the session calls ------------------------------------------------------ */

static void take_request_body(struct h2_ustream *st)
{
    bool had = evbuffer_get_length(st->req.data) > 0;
    bool was_done = st->req.phase == MSG_DONE;
    if (h2_msg_take_body(&st->req, st->up.conn.out, STREAM_DATA_MAX, false) != 0) {
        /* berth framed it: this does not happen; the target must not see half a request */
        nghttp2_submit_rst_stream(st->tc->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    bool now = evbuffer_get_length(st->req.data) > 0;
    if (st->deferred && ((now && !had) || (st->req.phase == MSG_DONE && !was_done))) {
        st->deferred = false;
        nghttp2_session_resume_data(st->tc->ng, st->id);
    }
}

/* The request's content type says gRPC (its fields as read, names lowercase). */
static bool is_grpc_call(const struct h2_msg *m)
{
    for (size_t i = 0; i < m->nfields; i++) {
        const struct h2_msg_field *f = &m->fields[i];
        if (f->name_len == 12 && memcmp(m->hbuf + f->name_off, "content-type", 12) == 0)
            return bth_grpc_content_type(m->hbuf + f->value_off, f->value_len);
    }
    return false;
}

/* Submits the request head the session wrote, once it is whole. Returns 0 or -1. */
static int submit_request(struct h2_ustream *st)
{
    struct evbuffer *out = st->up.conn.out;
    struct evbuffer_ptr end = evbuffer_search(out, "\r\n\r\n", 4, NULL);
    if (end.pos < 0)
        return 0;
    size_t len = (size_t)end.pos + 4;
    const char *b = (const char *)evbuffer_pullup(out, (ev_ssize_t)len);
    struct h2_msg_head hi;
    if (b == NULL || h2_msg_parse_head(&st->req, b, len, &hi) != 0 || hi.status != 0)
        return -1;
    if (h2_msg_data(&st->req) == NULL)
        return -1;
    h2_msg_expect_body(&st->req, &hi, false);
    bool tls = st->tc->conn.ssl != NULL;
    const char *auth = hi.authority != NULL ? hi.authority : st->up.target->addr.text;
    size_t alen = hi.authority != NULL ? hi.authority_len : strlen(auth);
    nghttp2_nv first[] = {
        {(uint8_t *)":method", (uint8_t *)hi.method, 7, hi.method_len, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":scheme", (uint8_t *)(tls ? "https" : "http"), 7, tls ? 5u : 4u,
         NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":authority", (uint8_t *)auth, 10, alen, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":path", (uint8_t *)hi.target, 5, hi.target_len, NGHTTP2_NV_FLAG_NONE},
        /* trailers are welcome (gRPC servers insist on being told) */
        {(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_nv stackbuf[40];
    size_t n;
    nghttp2_nv *nva = h2_msg_nva(&st->req, 0, first, 5, &n, stackbuf, 40);
    if (nva == NULL)
        return -1;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = on_req_data};
    int32_t id = nghttp2_submit_request(st->tc->ng, NULL, nva, n,
                                        st->req.phase == MSG_DONE ? NULL : &prd, st);
    if (nva != stackbuf)
        bth_free(nva);
    if (id < 0)
        return -1;
    st->id = id;
    st->open = true;
    st->grpc = is_grpc_call(&st->req);
    evbuffer_drain(out, len);
    h2_msg_head_sent(&st->req);
    return 0;
}

static int stream_flush(struct bth_upstream *up)
{
    struct h2_ustream *st = (struct h2_ustream *)up;
    if (st->tc == NULL || st->tc->state == TC_DEAD)
        return 0; /* the end reaches the session as a read */
    if (st->id == 0 && submit_request(st) != 0) {
        st->broke = true;
        notify(st, EV_READ);
        return 0;
    }
    if (st->id != 0 && st->open)
        take_request_body(st);
    schedule_send(st->tc);
    return 0;
}

static size_t stream_read(struct bth_upstream *up, size_t limit)
{
    struct h2_ustream *st = (struct h2_ustream *)up;
    size_t have = evbuffer_get_length(up->conn.in);
    size_t room = limit > have ? limit - have : 0;
    size_t avail = evbuffer_get_length(st->rx);
    size_t n = avail < room ? avail : room;
    if (n > 0)
        evbuffer_remove_buffer(st->rx, up->conn.in, n);
    size_t c = n < st->rx_unconsumed ? n : st->rx_unconsumed;
    if (c > 0 && st->tc != NULL) {
        nghttp2_session_consume(st->tc->ng, st->id, c); /* the target may send as much again */
        st->rx_unconsumed -= c;
        schedule_send(st->tc);
    }
    up->conn.read_pending = evbuffer_get_length(st->rx) > 0;
    if (!up->conn.read_pending && st->broke)
        up->conn.error = ECONNRESET;
    return n;
}

static int stream_connected(struct bth_upstream *up)
{
    struct h2_ustream *st = (struct h2_ustream *)up;
    if (st->tc == NULL)
        return -(st->error != 0 ? st->error : ECONNRESET);
    if (st->tc->state == TC_CONNECTING)
        return -EINPROGRESS;
    up->state = BTH_UP_ST_ACTIVE;
    return 0;
}

static void stream_release(struct bth_upstream *up, bool reusable)
{
    struct h2_ustream *st = (struct h2_ustream *)up;
    struct h2_tconn *tc = st->tc;
    (void)reusable; /* the connection is pooled whatever became of this stream */
    st->attached = false;
    event_del(&up->conn.ev);
    if (tc == NULL || !st->open) {
        stream_free(st);
    } else {
        /* the exchange ended before the stream did (the client went away, an early
         * answer): the target stops working on it */
        nghttp2_submit_rst_stream(tc->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        schedule_send(tc);
    }
    if (tc != NULL)
        tconn_settle(tc);
}

static const struct bth_upstream_ops stream_ops = {
    .read = stream_read,
    .flush = stream_flush,
    .connected = stream_connected,
    .release = stream_release,
};

static void on_stream_event(evutil_socket_t fd, short what, void *arg)
{
    struct h2_ustream *st = arg;
    (void)fd;
    if (st->attached)
        st->up.cb(&st->up, what, st->up.cb_arg);
}

struct bth_upstream *bth_h2_upstream_acquire(struct bth_worker *w, struct bth_target *t, bool fresh,
                                             struct bth_tls_client *tls, bth_upstream_event_cb cb,
                                             void *arg)
{
    struct h2_tconn *tc = fresh ? NULL : pool_pick(w, t);
    if (tc == NULL && (tc = tconn_open(w, t, tls)) == NULL)
        return NULL;
    struct h2_ustream *st = bth_calloc(1, sizeof(*st));
    if (st == NULL || bth_conn_init_local(&st->up.conn, w->base, on_stream_event, st) != 0 ||
        (st->rx = evbuffer_new()) == NULL) {
        if (st != NULL) {
            bth_conn_fini(&st->up.conn);
            bth_free(st);
        }
        tconn_settle(tc);
        errno = ENOMEM;
        return NULL;
    }
    st->up.ops = &stream_ops;
    st->up.w = w;
    bth_target_ref(t);
    st->up.target = t;
    st->up.state = tc->state == TC_READY ? BTH_UP_ST_ACTIVE : BTH_UP_ST_CONNECTING;
    st->up.grpc_status = -1;
    st->up.cb = cb;
    st->up.cb_arg = arg;
    st->tc = tc;
    st->attached = true;
    bth_list_push(&tc->streams, &st->link);
    tc->nstreams++;
    if (tc->state == TC_READY)
        evtimer_del(&tc->timer); /* no longer idle */
    return &st->up;
}
