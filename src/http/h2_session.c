/* SPDX-License-Identifier: MIT */
/* HTTP/2 client connections. nghttp2 reads and writes the frames; berth keeps the socket,
 * the buffers and the loop. A stream's request becomes HTTP/1.1 bytes in the conn.in of an
 * HTTP/1 session of its own (a "front" session: http_session_int.h), made from the loop once
 * the stream's head is whole, which routes and forwards it exactly as a request from an
 * HTTP/1.1 client. The target's answer head reaches the stream as the session parsed it
 * (front op head) and goes out as HEADERS; berth's own answers, and every body, are read
 * from the session's conn.out and go out as HEADERS, DATA and trailers.
 *
 * Flow control, both ways, with bounded memory per stream:
 *  - request bodies: DATA is queued on the stream and handed to the session only as fast as
 *    the session forwards it (its reads, like a socket's, stop while the target side is
 *    full); the client's window is given back (nghttp2_session_consume) only then, so a
 *    slow target stalls its own stream and nothing else.
 *  - answers: the stream takes answer bytes only while its DATA queue is below STREAM_DATA_MAX;
 *    the rest waits in the session's conn.out, which stops the session reading its target
 *    (out_high). A client that does not open its window stalls that stream alone.
 *
 * Lifetime: the connection frees itself only at the end of its own event callbacks
 * (closing flag, as the HTTP/1 session). A session's calls into the front (read, write,
 * gone) never send: they queue on nghttp2 and activate the connection's event, so nothing
 * here runs inside a session's callback that could free it, nor the reverse: a session is
 * aborted (h1_front_abort) only from this connection's callbacks, where no session code
 * is on the stack. */
#include "h2_session.h"

#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <llhttp.h>
#include <nghttp2/nghttp2.h>

#include "clock.h"
#include "conn.h"
#include "grpc.h"
#include "h2_msg.h"
#include "http_session_int.h"
#include "http_status.h"
#include "list.h"
#include "log.h"
#include "mem.h"
#include "snapshot.h"
#include "stats.h"
#include "worker.h"

#define CONN_OUT_HIGH   (128 * 1024) /* stop framing while the socket's output holds this */
#define READ_BUDGET_H2  (64 * 1024)
#define STREAM_DATA_MAX (32 * 1024) /* answer bytes a stream takes ahead of its window */
#define GOAWAY_GRACE_MS 1000        /* after a last GOAWAY: time for it to reach the client */

/* Flood limits (README, "HTTP/2"): beyond them the connection gets GOAWAY
 * ENHANCE_YOUR_CALM. Token buckets refill per second; the reset limit is below nghttp2's
 * own (1000, 33/s) so berth's answer comes first. */
#define RESET_BURST      200
#define RESET_RATE       100
#define CONTROL_BURST    200 /* PING, SETTINGS, PRIORITY */
#define CONTROL_RATE     50
#define EMPTY_FRAMES_MAX 16 /* consecutive DATA/HEADERS frames without payload */
#define WINDOW_UPDATE_FREE                                                                         \
    1000                /* WINDOW_UPDATEs beyond 4 per DATA frame berth sent and                   \
                         * 2 per stream the client opened */
#define BOMB_FACTOR  4  /* a header list this many times the limit: HPACK bomb */
#define CLOSED_EARLY 32 /* streams remembered as closed before the client's end */

struct bucket {
    double tokens;
    uint64_t t_ms;
};

struct h2_conn {
    struct bth_conn conn;
    struct bth_worker *w;           /* borrowed: owner */
    struct bth_worker_listener *wl; /* borrowed */
    struct bth_snapshot *snap;      /* one reference: the listener as accepted */
    const struct bth_snap_listener *listener;
    struct bth_worker_conn wc;
    struct event timer; /* idle timeout; after a last GOAWAY, the grace before closing */
    nghttp2_session *ng;
    uint64_t id;
    struct sockaddr_storage peer;
    char client_ip[INET6_ADDRSTRLEN];
    char client_text[INET6_ADDRSTRLEN + 8];
    struct bth_list streams;  /* struct h2_stream.link */
    struct bth_list ready;    /* struct h2_stream.ready_link: heads waiting for a session */
    struct event dispatch_ev; /* no descriptor: activated when a head is ready */
    unsigned nstreams;
    bool closing;           /* free at the end of the current callback */
    bool going_away;        /* a GOAWAY went out: close once the streams are done */
    uint32_t flood;         /* a callback found a flood: terminate with this code (0: none) */
    int32_t last_stream_id; /* highest stream a client's HEADERS opened */
    /* The last streams that closed while the client was still sending (berth's answer was
     * complete first, then RST_STREAM NO_ERROR; or a reset): frames in flight on them,
     * trailers among them, are ignored (RFC 9113 5.1), not taken for a reused stream id. */
    int32_t closed_early[CLOSED_EARLY];
    unsigned nclosed_early;
    uint64_t last_rx_ms;
    uint64_t idle_since_ms; /* when the last stream ended (or the connection began) */
    bool ping_out;          /* a liveness PING is unanswered */
    /* flood accounting */
    struct bucket resets, control;
    unsigned empty_frames;
    uint64_t window_updates, data_sent, streams_opened;
};
_Static_assert(offsetof(struct h2_conn, conn) == 0, "h2_send_to_conn takes it as its conn");

struct h2_stream {
    struct bth_list link;
    struct h2_conn *hc;
    int32_t id;
    struct bth_http_session *s; /* the exchange; NULL before the head is whole, and after */
    /* request */
    nghttp2_rcbuf *method, *path, *authority, *host; /* referenced until dispatch */
    struct evbuffer *head;                           /* header lines as HTTP/1.1 */
    struct evbuffer *cookies;                        /* joined "; " (RFC 9113 8.2.3) */
    struct evbuffer *body;                           /* DATA not yet given to the session */
    struct evbuffer *req_trailers;                   /* trailer lines for the last chunk */
    size_t hdr_bytes;                                /* header list size (name+value+32 each) */
    bool too_large;
    bool has_cl;
    bool grpc;       /* content-type application/grpc*: berth's own answers in gRPC */
    bool chunked;    /* the body goes to the session chunked (no content-length) */
    bool req_end;    /* END_STREAM received */
    bool last_chunk; /* the final chunk went to the session */
    bool queued;     /* on hc->ready: the head is whole, the session not made yet */
    struct bth_list ready_link;
    /* answer */
    struct h2_msg ans; /* the answer the session writes, read into HEADERS and DATA */
    bool head_method;  /* HEAD: the answer has no body whatever it says */
    bool submitted;    /* the final HEADERS are queued */
    bool deferred;     /* the data source waits for bytes (nghttp2_session_resume_data) */
    bool aborted;      /* the answer broke off: the stream is reset */
};

static void on_conn_io(evutil_socket_t fd, short what, void *arg);
static void conn_pump(struct h2_conn *hc);
static void stream_take(struct h2_stream *st);

/* ---- small helpers -------------------------------------------------------------------- */

static bool bucket_take(struct bucket *b, double burst, double rate, uint64_t now)
{
    if (b->t_ms == 0) {
        b->tokens = burst;
    } else if (now > b->t_ms) {
        b->tokens += (double)(now - b->t_ms) * rate / 1000.0;
        if (b->tokens > burst)
            b->tokens = burst;
    }
    b->t_ms = now;
    if (b->tokens < 1)
        return false;
    b->tokens -= 1;
    return true;
}

static void schedule_send(struct h2_conn *hc)
{
    event_active(&hc->conn.ev, EV_WRITE, 1);
}

static void arm_timer(struct h2_conn *hc, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(&hc->timer, &tv);
}

static struct bth_span_vec {
    const char *p;
    size_t n;
} rcvec(nghttp2_rcbuf *rc)
{
    nghttp2_vec v = nghttp2_rcbuf_get_buf(rc);
    return (struct bth_span_vec){(const char *)v.base, v.len};
}

static void count(struct h2_conn *hc, enum bth_stat k)
{
    bth_stats_add(hc->listener->stats, hc->w->id, k, 1);
}

/* A flood or a protocol error nghttp2 lets pass: the connection ends with GOAWAY <code>
 * once the current input is handled. */
static int cut_off(struct h2_conn *hc, uint32_t code, const char *what)
{
    /* At most one line a second per worker: an attacker reconnecting as fast as it can
     * must not turn into as many log lines (the metrics count every connection). */
    static _Thread_local uint64_t next_ms;
    static _Thread_local unsigned quiet;
    uint64_t now = bth_clock_mono_ms();
    if (hc->flood == 0 && now < next_ms) {
        quiet++;
    } else if (hc->flood == 0) {
        bth_log(BTH_LOG_INFO, "h2 #%llu from %s: %s: closing with GOAWAY (%u more not logged)",
                (unsigned long long)hc->id, hc->client_text, what, quiet);
        quiet = 0;
        next_ms = now + 1000;
    }
    hc->flood = code;
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* ---- streams ------------------------------------------------------------------------ */

static void rc_release(nghttp2_rcbuf **rc)
{
    if (*rc != NULL) {
        nghttp2_rcbuf_decref(*rc);
        *rc = NULL;
    }
}

static void stream_free(struct h2_stream *st)
{
    struct h2_conn *hc = st->hc;
    if (st->s != NULL)
        h1_front_abort(st->s);
    st->s = NULL;
    rc_release(&st->method);
    rc_release(&st->path);
    rc_release(&st->authority);
    rc_release(&st->host);
    struct evbuffer **bufs[] = {&st->head, &st->cookies, &st->body, &st->req_trailers};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if (*bufs[i] != NULL)
            evbuffer_free(*bufs[i]);
    }
    h2_msg_fini(&st->ans);
    if (st->queued)
        bth_list_remove(&st->ready_link);
    if (!st->req_end)
        hc->closed_early[hc->nclosed_early++ % CLOSED_EARLY] = st->id;
    bth_list_remove(&st->link);
    hc->nstreams--;
    if (hc->nstreams == 0 && !hc->going_away) {
        /* idle from now; the timer is armed only when not already running (it checks the
         * time when it fires), so streams coming and going cost no timer operation */
        hc->idle_since_ms = bth_clock_mono_ms();
        if (!evtimer_pending(&hc->timer, NULL))
            arm_timer(hc, hc->listener->cfg->idle_timeout_ms);
    }
    bth_free(st);
}

static struct evbuffer *lazy(struct evbuffer **b)
{
    if (*b == NULL)
        *b = evbuffer_new();
    return *b;
}

/* ---- the answer: HTTP/1.1 from the session to HEADERS and DATA ------------------------ */

static ssize_t on_data_source(nghttp2_session *ng, int32_t stream_id, uint8_t *buf, size_t length,
                              uint32_t *flags, nghttp2_data_source *source, void *user_data);

/* The session wrote a whole response head: send it on the stream as HEADERS. Returns 0 or
 * -1 (out of memory). */
static int submit_head(struct h2_stream *st, int code)
{
    struct h2_conn *hc = st->hc;
    char status[3] = {(char)('0' + code / 100 % 10), (char)('0' + code / 10 % 10),
                      (char)('0' + code % 10)};
    nghttp2_nv first = {(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    nghttp2_nv stackbuf[32];
    size_t n;
    nghttp2_nv *nva = h2_msg_nva(&st->ans, 0, &first, 1, &n, stackbuf, 32);
    if (nva == NULL)
        return -1;
    int rv;
    if (code < 200) {
        rv = nghttp2_submit_headers(hc->ng, NGHTTP2_FLAG_NONE, st->id, NULL, nva, n, NULL);
    } else {
        nghttp2_data_provider prd = {.source.ptr = st, .read_callback = on_data_source};
        bool body = st->ans.phase != MSG_DONE;
        rv = nghttp2_submit_response(hc->ng, st->id, nva, n, body ? &prd : NULL);
        st->submitted = true;
    }
    if (nva != stackbuf)
        bth_free(nva);
    return rv == 0 ? 0 : -1;
}

/* The grpc-status berth put in its own answer (a gRPC deadline: DEADLINE_EXCEEDED), or -1. */
static int answer_grpc_status(const struct h2_msg *m)
{
    for (size_t i = 0; i < m->nfields; i++) {
        const struct h2_msg_field *f = &m->fields[i];
        const char *v = m->hbuf + f->value_off;
        if (f->name_len == 11 && memcmp(m->hbuf + f->name_off, "grpc-status", 11) == 0 &&
            f->value_len >= 1 && f->value_len <= 2 && v[0] >= '0' && v[0] <= '9')
            return f->value_len == 1 ? v[0] - '0' : (v[0] - '0') * 10 + (v[1] - '0');
    }
    return -1;
}

/* berth's own answer <status> to a gRPC request, as a gRPC client can read it: HTTP 200
 * and a trailers-only answer with grpc-status and grpc-message, by the gRPC project's
 * HTTP-to-gRPC mapping (a target that does not answer in time, 504, is UNAVAILABLE there;
 * berth answers DEADLINE_EXCEEDED only when the call's own grpc-timeout ran out). The HTTP
 * body is dropped. Returns 0 or -1. */
static int submit_grpc_error(struct h2_stream *st, int status)
{
    char code[4], msg[96];
    int g = answer_grpc_status(&st->ans);
    int cn = snprintf(code, sizeof(code), "%d", g >= 0 ? g : (int)bth_grpc_code_of_http(status));
    /* grpc-message is percent-encoded (gRPC over HTTP/2); berth's reason phrases are plain
     * ASCII words, which need no escaping */
    int mn = snprintf(msg, sizeof(msg), "berth: HTTP %d %s", status, bth_http_reason(status));
    if (h2_msg_data(&st->ans) == NULL)
        return -1;
    nghttp2_nv nva[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-status", (uint8_t *)code, 11, (size_t)cn, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-message", (uint8_t *)msg, 12, (size_t)mn, NGHTTP2_NV_FLAG_NONE},
    };
    st->ans.discard = true;
    st->submitted = true;
    h2_msg_clear_fields(&st->ans);
    return nghttp2_submit_response(st->hc->ng, st->id, nva, 4, NULL) == 0 ? 0 : -1;
}

/* Reads the answer's head from <in>. Returns 1 when a final head was sent, 0 when more
 * bytes are needed, -1 on an error. */
static int take_head(struct h2_stream *st, struct evbuffer *in)
{
    for (;;) {
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0)
            return 0;
        size_t len = (size_t)end.pos + 4;
        const char *b = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
        struct h2_msg_head hi;
        if (b == NULL || h2_msg_parse_head(&st->ans, b, len, &hi) != 0 || hi.status == 0)
            return -1; /* berth wrote it: this does not happen */
        evbuffer_drain(in, len);
        if (hi.status == 101)
            return -1; /* no request on a stream asks to switch protocols */
        if (hi.status < 200) {
            if (submit_head(st, hi.status) != 0) /* 100 Continue, 103 Early Hints */
                return -1;
            continue;
        }
        h2_msg_expect_body(&st->ans, &hi, st->head_method || hi.status == 204 || hi.status == 304);
        if (st->grpc && hi.status >= 300)
            return submit_grpc_error(st, hi.status) == 0 ? 1 : -1;
        if (h2_msg_data(&st->ans) == NULL || submit_head(st, hi.status) != 0)
            return -1;
        h2_msg_head_sent(&st->ans); /* trailers, if any, are read from here */
        return 1;
    }
}

/* Takes what the session wrote, as far as the stream's queue has room. */
static void stream_take(struct h2_stream *st)
{
    struct bth_http_session *s = st->s;
    if (s == NULL || st->aborted)
        return;
    struct evbuffer *in = s->conn.out;
    bool had = st->ans.data != NULL && evbuffer_get_length(st->ans.data) > 0;
    bool was_done = st->ans.phase == MSG_DONE && st->submitted;
    if (st->ans.phase == MSG_HEAD) {
        int r = take_head(st, in);
        if (r < 0) {
            st->aborted = true;
            return;
        }
        if (r == 0)
            return;
    }
    if (h2_msg_take_body(&st->ans, in, STREAM_DATA_MAX, false) != 0) {
        st->aborted = true;
        return;
    }
    bool now = evbuffer_get_length(st->ans.data) > 0;
    if (st->deferred && ((now && !had) || (st->ans.phase == MSG_DONE && !was_done))) {
        st->deferred = false;
        nghttp2_session_resume_data(st->hc->ng, st->id);
    }
}

static ssize_t on_data_source(nghttp2_session *ng, int32_t stream_id, uint8_t *buf, size_t length,
                              uint32_t *flags, nghttp2_data_source *source, void *user_data)
{
    struct h2_stream *st = source->ptr;
    (void)buf;
    (void)user_data;
    return h2_msg_read_data(&st->ans, ng, stream_id, length, flags, &st->deferred);
}

/* nghttp2 writes a DATA frame: its 9-byte header, then the payload moved (not copied) from
 * the stream's queue to the socket's output. */
static int on_send_data(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *user_data)
{
    struct h2_conn *hc = user_data;
    struct h2_stream *st = source->ptr;
    (void)ng;
    if (evbuffer_get_length(hc->conn.out) >= CONN_OUT_HIGH)
        return NGHTTP2_ERR_WOULDBLOCK;
    evbuffer_add(hc->conn.out, framehd, 9);
    evbuffer_remove_buffer(st->ans.data, hc->conn.out, length);
    (void)frame; /* berth sends no padding */
    hc->data_sent++;
    if (st->s != NULL) {
        size_t before = evbuffer_get_length(st->s->conn.out);
        stream_take(st);
        /* Room again in the session's output: it may read its target again. */
        if (before >= st->s->out_high && evbuffer_get_length(st->s->conn.out) < st->s->out_high)
            h1_front_drained(st->s);
    }
    return 0;
}

/* ---- front ops: what the session calls ------------------------------------------------- */

static void front_read(struct bth_http_session *s, size_t limit)
{
    struct h2_stream *st = s->front_arg;
    struct h2_conn *hc = st->hc;
    size_t moved = 0;
    s->conn.read_pending = false;
    while (st->body != NULL && evbuffer_get_length(st->body) > 0 && moved < limit) {
        size_t n = evbuffer_get_length(st->body);
        if (n > limit - moved)
            n = limit - moved;
        if (st->chunked)
            h2_chunk_head(s->conn.in, n);
        evbuffer_remove_buffer(st->body, s->conn.in, n);
        if (st->chunked)
            evbuffer_add(s->conn.in, "\r\n", 2);
        moved += n;
    }
    if (moved > 0) {
        nghttp2_session_consume(hc->ng, st->id, moved); /* the client may send as much again */
        schedule_send(hc);
    }
    if (st->body != NULL && evbuffer_get_length(st->body) > 0) {
        s->conn.read_pending = true;
    } else if (st->req_end && st->chunked && !st->last_chunk) {
        st->last_chunk = true;
        evbuffer_add(s->conn.in, "0\r\n", 3);
        if (st->req_trailers != NULL)
            evbuffer_add_buffer(s->conn.in, st->req_trailers);
        evbuffer_add(s->conn.in, "\r\n", 2);
    }
}

static int front_write(struct bth_http_session *s)
{
    struct h2_stream *st = s->front_arg;
    stream_take(st);
    if (st->aborted)
        return -1;
    schedule_send(st->hc);
    return 0;
}

/* A gRPC answer broke off: the call ends with UNAVAILABLE, in trailers after the messages
 * already queued when the head went out, else as a trailers-only answer. Returns 0, or -1
 * when the stream is to be reset instead. */
static int grpc_broke_off(struct h2_stream *st)
{
    static const char code[] = "14", msg[] = "berth: target connection lost";
    if (!st->submitted) {
        h2_msg_clear_fields(&st->ans);
        return submit_grpc_error(st, 502);
    }
    if (st->ans.discard || st->ans.phase == MSG_DONE)
        return -1;
    h2_msg_clear_fields(&st->ans);
    if (h2_msg_add_field(&st->ans, "grpc-status", 11, code, 2) != 0 ||
        h2_msg_add_field(&st->ans, "grpc-message", 12, msg, sizeof(msg) - 1) != 0)
        return -1;
    st->ans.phase = MSG_DONE;
    st->ans.ntrailers = st->ans.nfields;
    st->aborted = false;
    if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(st->hc->ng, st->id);
    }
    return 0;
}

static void front_gone(struct bth_http_session *s)
{
    struct h2_stream *st = s->front_arg;
    struct h2_conn *hc = st->hc;
    struct evbuffer *in = s->conn.out;
    st->s = NULL;
    if (!st->aborted && st->ans.phase == MSG_HEAD && take_head(st, in) < 0)
        st->aborted = true;
    if (!st->aborted && h2_msg_take_body(&st->ans, in, 0, true) != 0)
        st->aborted = true;
    if (!st->aborted && st->ans.phase == MSG_UNTIL_GONE)
        st->ans.phase = MSG_DONE; /* the session's end is the body's end */
    if (st->grpc && (st->aborted || st->ans.phase != MSG_DONE) && grpc_broke_off(st) == 0) {
        /* a gRPC client reads UNAVAILABLE, and may retry */
    } else if (st->aborted || st->ans.phase != MSG_DONE) {
        /* The answer broke off (the target went away mid-answer, or berth gave up on the
         * exchange): the client learns it from a reset, not from a short body. */
        st->aborted = true;
        nghttp2_submit_rst_stream(hc->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        count(hc, BTH_ST_H2_RESETS_SENT);
    } else if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(hc->ng, st->id);
    }
    /* The rest of a request body nobody will read: the client's window comes back. */
    if (st->body != NULL && evbuffer_get_length(st->body) > 0) {
        nghttp2_session_consume(hc->ng, st->id, evbuffer_get_length(st->body));
        evbuffer_drain(st->body, evbuffer_get_length(st->body));
    }
    schedule_send(hc);
}

/* The target's answer head, straight from the session's parse: HEADERS without writing
 * it out as HTTP/1.1 and reading it back (berth's own answers still come that way). */
static ssize_t front_head(struct bth_http_session *s, int status, const struct bth_http_head *h,
                          struct evbuffer *extra, enum body_mode mode, uint64_t length)
{
    struct h2_stream *st = s->front_arg;
    if (evbuffer_get_length(s->conn.out) > 0)
        stream_take(st); /* interim answers (100 Continue) the session wrote before */
    if (st->aborted || st->ans.phase != MSG_HEAD)
        return -1;
    h2_msg_clear_fields(&st->ans);
    ssize_t size = 17;
    struct h2_msg_head ignored = {.status = status};
    for (unsigned i = 0; i < h->nhdrs; i++) {
        const struct bth_http_hdr *hd = &h->hdrs[i];
        /* the session marked the hop-by-hop fields; the framing is HTTP/2's own */
        if (hd->drop || hd->kind == BTH_HDR_TRANSFER_ENCODING)
            continue;
        size += hd->name.len + hd->value.len + 4;
        const char *v = bth_span_ptr(h, hd->value);
        size_t vlen = hd->value.len;
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--; /* llhttp keeps trailing whitespace */
        if (h2_msg_add_field(&st->ans, bth_span_ptr(h, hd->name), hd->name.len, v, vlen) != 0)
            return -1;
    }
    if (extra != NULL) {
        size += (ssize_t)evbuffer_get_length(extra);
        size_t n = evbuffer_get_length(extra);
        const char *b = (const char *)evbuffer_pullup(extra, -1);
        for (const char *p = b, *end = b + n; p < end;) {
            const char *eol = memchr(p, '\n', (size_t)(end - p));
            size_t l = eol != NULL ? (size_t)(eol - p) : (size_t)(end - p);
            if (l > 0 && p[l - 1] == '\r')
                l--;
            if (l > 0 && h2_msg_head_field(&st->ans, p, l, &ignored) != 0)
                return -1;
            p = eol != NULL ? eol + 1 : end;
        }
    }
    struct h2_msg_head framing = {.status = status,
                                  .chunked = mode == BODY_CHUNKED,
                                  .has_length = mode == BODY_LENGTH,
                                  .length = length};
    h2_msg_expect_body(&st->ans, &framing, st->head_method || mode == BODY_NONE);
    if (h2_msg_data(&st->ans) == NULL || submit_head(st, status) != 0)
        return -1;
    h2_msg_head_sent(&st->ans); /* trailers, if any, are read from here */
    schedule_send(st->hc);
    return size;
}

static const struct h1_front_ops stream_front = {
    .read = front_read,
    .write = front_write,
    .gone = front_gone,
    .head = front_head,
};

/* ---- the request: HEADERS to HTTP/1.1 ---------------------------------------------------- */

/* berth answers the stream itself, before any session: <status> with a short text. */
static void stream_answer(struct h2_stream *st, int status, const char *text)
{
    struct h2_conn *hc = st->hc;
    char code[4], clen[24];
    size_t n = strlen(text);
    snprintf(code, sizeof(code), "%03d", status);
    snprintf(clen, sizeof(clen), "%zu", n);
    nghttp2_nv nva[] = {
        {(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"text/plain", 12, 10, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-length", (uint8_t *)clen, 14, strlen(clen), NGHTTP2_NV_FLAG_NONE},
    };
    if (h2_msg_data(&st->ans) == NULL || evbuffer_add(st->ans.data, text, n) != 0) {
        nghttp2_submit_rst_stream(hc->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    st->ans.phase = MSG_DONE;
    st->submitted = true;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = on_data_source};
    nghttp2_submit_response(hc->ng, st->id, nva, 3, st->head_method ? NULL : &prd);
    bth_stats_add(hc->listener->stats, hc->w->id, BTH_ST_ELB_4XX + (status >= 500), 1);
}

static bool same_host(nghttp2_rcbuf *a, nghttp2_rcbuf *b)
{
    struct bth_span_vec x = rcvec(a), y = rcvec(b);
    return x.n == y.n && strncasecmp(x.p, y.p, x.n) == 0;
}

/* Writes the request as HTTP/1.1 into <req> (a session's input): request line, Host
 * (:authority), the fields, the cookies joined, the framing. Returns 0, or -1 when out of
 * memory. */
static int build_request(struct h2_stream *st, struct evbuffer *req)
{
    struct bth_span_vec m = rcvec(st->method), p = rcvec(st->path);
    /* :authority is the Host; a Host field that names another one makes the request
     * ambiguous, and the session refuses two Hosts with 400 (RFC 9113 8.3.1). */
    nghttp2_rcbuf *hosts[2] = {st->authority, st->host};
    if (st->authority != NULL && st->host != NULL && same_host(st->authority, st->host))
        hosts[1] = NULL;
    size_t need = m.n + p.n + 12 + 2 * 8;
    for (int i = 0; i < 2; i++)
        need += hosts[i] != NULL ? rcvec(hosts[i]).n : 0;
    struct evbuffer_iovec io;
    if (evbuffer_reserve_space(req, (ev_ssize_t)need, &io, 1) != 1)
        return -1;
    char *w = io.iov_base, *w0 = w;
    memcpy(w, m.p, m.n);
    w += m.n;
    *w++ = ' ';
    memcpy(w, p.p, p.n);
    w += p.n;
    memcpy(w, " HTTP/1.1\r\n", 11);
    w += 11;
    for (int i = 0; i < 2; i++) {
        if (hosts[i] != NULL) {
            struct bth_span_vec h = rcvec(hosts[i]);
            memcpy(w, "Host: ", 6);
            memcpy(w + 6, h.p, h.n);
            w += 6 + h.n;
            *w++ = '\r';
            *w++ = '\n';
        }
    }
    io.iov_len = (size_t)(w - w0);
    evbuffer_commit_space(req, &io, 1);
    if (st->head != NULL)
        evbuffer_add_buffer(req, st->head);
    if (st->cookies != NULL) {
        evbuffer_add(req, "Cookie: ", 8);
        evbuffer_add_buffer(req, st->cookies);
        evbuffer_add(req, "\r\n", 2);
    }
    if (st->chunked) /* the body's end is END_STREAM: chunked to the target */
        evbuffer_add(req, "Transfer-Encoding: chunked\r\n", 28);
    evbuffer_add(req, "\r\n", 2);
    rc_release(&st->method);
    rc_release(&st->path);
    rc_release(&st->authority);
    rc_release(&st->host);
    return 0;
}

/* The request head is whole: the stream waits for its session, which dispatch_ready makes
 * (and writes the request for) from the event loop. A stream reset within the same read,
 * as in the rapid reset attack, so costs neither a session nor the request's bytes. */
static void stream_ready(struct h2_stream *st, bool end_stream)
{
    struct h2_conn *hc = st->hc;
    st->req_end = end_stream;
    if (st->too_large) {
        stream_answer(st, 431, "431 Request Header Fields Too Large\n");
        return;
    }
    if (st->method == NULL || st->path == NULL) { /* CONNECT (nghttp2 checks the rest) */
        stream_answer(st, 405, "405 Method Not Allowed\n");
        return;
    }
    struct bth_span_vec m = rcvec(st->method);
    st->head_method = m.n == 4 && memcmp(m.p, "HEAD", 4) == 0;
    st->chunked = !end_stream && !st->has_cl; /* the body ends with END_STREAM */
    st->queued = true;
    bth_list_push(&hc->ready, &st->ready_link);
    event_active(&hc->dispatch_ev, EV_READ, 1);
}

/* Gives each stream whose head is ready its session, in the order the heads came. */
static void dispatch_ready(evutil_socket_t fd, short what, void *arg)
{
    struct h2_conn *hc = arg;
    (void)fd;
    (void)what;
    bool answered = false;
    while (!bth_list_empty(&hc->ready)) {
        struct h2_stream *st = bth_list_entry(hc->ready.prev, struct h2_stream, ready_link);
        bth_list_remove(&st->ready_link);
        st->queued = false;
        struct bth_http_session *s =
            h1_front_session_new(hc->w, hc->wl, hc->snap, &hc->peer, hc->client_ip, hc->client_text,
                                 hc->conn.ssl != NULL, &stream_front, st);
        if (s != NULL && build_request(st, s->conn.in) != 0) {
            h1_front_abort(s);
            s = NULL;
        }
        if (s == NULL) {
            stream_answer(st, 503, "503 Service Unavailable\n");
            answered = true;
            continue;
        }
        st->s = s;
        h1_front_input(s);
    }
    if (answered)
        schedule_send(hc);
}

/* ---- nghttp2 callbacks ---------------------------------------------------------------------- */

static ssize_t on_send(nghttp2_session *ng, const uint8_t *data, size_t length, int flags,
                       void *user_data)
{
    (void)ng;
    (void)flags;
    return h2_send_to_conn(user_data, data, length, CONN_OUT_HIGH); /* conn comes first */
}

static bool closed_early(const struct h2_conn *hc, int32_t id)
{
    for (unsigned i = 0; i < CLOSED_EARLY && i < hc->nclosed_early; i++) {
        if (hc->closed_early[i] == id)
            return true;
    }
    return false;
}

/* Every frame's header, before its payload: the flood checks. */
static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *user_data)
{
    struct h2_conn *hc = user_data;
    uint64_t now = bth_clock_mono_ms();
    hc->last_rx_ms = now;
    hc->ping_out = false;
    if (hd->type == NGHTTP2_HEADERS) {
        /* A lower or reused stream id (RFC 9113 5.1.1), which nghttp2 ignores rather than
         * track every stream it saw; berth knows its open ones (trailers come on those). */
        if (hd->stream_id <= hc->last_stream_id &&
            nghttp2_session_get_stream_user_data(ng, hd->stream_id) == NULL &&
            !closed_early(hc, hd->stream_id))
            return cut_off(hc, NGHTTP2_PROTOCOL_ERROR, "stream id reused");
        if (hd->stream_id > hc->last_stream_id)
            hc->last_stream_id = hd->stream_id;
    }
    switch (hd->type) {
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS:
    case NGHTTP2_CONTINUATION:
        if (hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM)) {
            if (++hc->empty_frames > EMPTY_FRAMES_MAX)
                return cut_off(hc, NGHTTP2_ENHANCE_YOUR_CALM, "frames without payload");
        } else {
            hc->empty_frames = 0;
        }
        break;
    case NGHTTP2_RST_STREAM:
        if (!bucket_take(&hc->resets, RESET_BURST, RESET_RATE, now))
            return cut_off(hc, NGHTTP2_ENHANCE_YOUR_CALM, "stream reset flood (rapid reset)");
        break;
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PRIORITY:
        if (!bucket_take(&hc->control, CONTROL_BURST, CONTROL_RATE, now))
            return cut_off(hc, NGHTTP2_ENHANCE_YOUR_CALM, "control frame flood");
        break;
    case NGHTTP2_WINDOW_UPDATE:
        /* a client may open each stream's window at once (gRPC's do), before any DATA */
        if (++hc->window_updates > WINDOW_UPDATE_FREE + 4 * hc->data_sent + 2 * hc->streams_opened)
            return cut_off(hc, NGHTTP2_ENHANCE_YOUR_CALM, "WINDOW_UPDATE flood");
        break;
    default:
        break;
    }
    return 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
    struct h2_conn *hc = user_data;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    hc->streams_opened++;
    struct h2_stream *st = bth_calloc(1, sizeof(*st));
    if (st == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset, others go on */
    st->hc = hc;
    st->id = frame->hd.stream_id;
    bth_list_push(&hc->streams, &st->link);
    hc->nstreams++;
    nghttp2_session_set_stream_user_data(ng, st->id, st);
    count(hc, BTH_ST_H2_STREAMS);
    return 0;
}

static void keep_rc(nghttp2_rcbuf **slot, nghttp2_rcbuf *rc)
{
    rc_release(slot);
    nghttp2_rcbuf_incref(rc);
    *slot = rc;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, nghttp2_rcbuf *name,
                     nghttp2_rcbuf *value, uint8_t flags, void *user_data)
{
    struct h2_conn *hc = user_data;
    (void)flags;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (st == NULL)
        return 0;
    struct bth_span_vec n = rcvec(name), v = rcvec(value);
    size_t limit = hc->listener->cfg->http2.max_header_list_size;
    st->hdr_bytes += n.n + v.n + 32;
    if (st->hdr_bytes > limit) {
        if (st->hdr_bytes > BOMB_FACTOR * limit)
            return cut_off(hc, NGHTTP2_ENHANCE_YOUR_CALM, "header list far over the limit");
        st->too_large = true;
    }
    if (st->too_large)
        return 0;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        /* trailers: they can follow only a chunked body */
        if (lazy(&st->req_trailers) == NULL ||
            h2_line_add(st->req_trailers, n.p, n.n, v.p, v.n) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return 0;
    }
    if (n.n > 0 && n.p[0] == ':') {
        if (n.n == 7 && memcmp(n.p, ":method", 7) == 0)
            keep_rc(&st->method, value);
        else if (n.n == 5 && memcmp(n.p, ":path", 5) == 0)
            keep_rc(&st->path, value);
        else if (n.n == 10 && memcmp(n.p, ":authority", 10) == 0)
            keep_rc(&st->authority, value);
        return 0; /* :scheme: the listener's own */
    }
    if (n.n == 6 && memcmp(n.p, "cookie", 6) == 0) {
        if (lazy(&st->cookies) == NULL)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        if (evbuffer_get_length(st->cookies) > 0)
            evbuffer_add(st->cookies, "; ", 2);
        evbuffer_add(st->cookies, v.p, v.n);
        return 0;
    }
    if (n.n == 4 && memcmp(n.p, "host", 4) == 0) {
        keep_rc(&st->host, value);
        return 0;
    }
    if (n.n == 2 && memcmp(n.p, "te", 2) == 0)
        return 0; /* "trailers" (nghttp2 refuses others): hop-by-hop in HTTP/1.1 */
    if (n.n == 14 && memcmp(n.p, "content-length", 14) == 0)
        st->has_cl = true;
    if (n.n == 12 && memcmp(n.p, "content-type", 12) == 0 && v.n >= 16 &&
        strncasecmp(v.p, "application/grpc", 16) == 0)
        st->grpc = true;
    if (lazy(&st->head) == NULL || h2_line_add(st->head, n.p, n.n, v.p, v.n) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
    struct h2_conn *hc = user_data;
    bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    struct h2_stream *st = frame->hd.stream_id != 0
                               ? nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id)
                               : NULL;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (st == NULL)
            break;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            stream_ready(st, end);
        } else if (end) {
            st->req_end = true;
            if (st->s != NULL)
                h1_front_input(st->s);
        }
        break;
    case NGHTTP2_DATA:
        if (st != NULL && end) {
            st->req_end = true;
            if (st->s != NULL)
                h1_front_input(st->s);
        }
        break;
    case NGHTTP2_RST_STREAM:
        count(hc, BTH_ST_H2_RESETS_RECEIVED);
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user_data)
{
    struct h2_conn *hc = user_data;
    (void)flags;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, stream_id);
    if (st == NULL || (st->s == NULL && !st->queued)) {
        /* nobody reads it (answered already, or refused): the window comes back at once */
        nghttp2_session_consume(ng, stream_id, len);
        return 0;
    }
    if (lazy(&st->body) == NULL || evbuffer_add(st->body, data, len) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    (void)hc;
    if (st->s != NULL)
        h1_front_input(st->s); /* a queued stream's session reads it when made */
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user_data)
{
    struct h2_conn *hc = user_data;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        uint32_t code = frame->goaway.error_code;
        enum bth_stat k = code == NGHTTP2_NO_ERROR             ? BTH_ST_H2_GOAWAY_NO_ERROR
                          : code == NGHTTP2_PROTOCOL_ERROR     ? BTH_ST_H2_GOAWAY_PROTOCOL_ERROR
                          : code == NGHTTP2_FLOW_CONTROL_ERROR ? BTH_ST_H2_GOAWAY_FLOW_CONTROL_ERROR
                          : code == NGHTTP2_COMPRESSION_ERROR  ? BTH_ST_H2_GOAWAY_COMPRESSION_ERROR
                          : code == NGHTTP2_ENHANCE_YOUR_CALM  ? BTH_ST_H2_GOAWAY_ENHANCE_YOUR_CALM
                                                               : BTH_ST_H2_GOAWAY_OTHER;
        count(hc, k);
        hc->going_away = true;
        return 0;
    }
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
        if (frame->rst_stream.error_code != NGHTTP2_NO_ERROR)
            count(hc, BTH_ST_H2_RESETS_SENT);
        return 0;
    }
    /* The answer is complete while the client still sends its body, which nobody reads:
     * tell it to stop (RFC 9113 8.1). */
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
        if (st != NULL && !st->req_end)
            nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    (void)error_code;
    (void)user_data;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(ng, stream_id);
    if (st == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(ng, stream_id, NULL);
    stream_free(st); /* aborts the exchange if it still runs (a reset, a lost connection) */
    return 0;
}

/* ---- the connection ---------------------------------------------------------------------- */

static void conn_free(struct h2_conn *hc)
{
    struct bth_list *it, *tmp;
    hc->going_away = true; /* stream_free must not arm the idle timer */
    bth_list_foreach_safe(it, tmp, &hc->streams)
    {
        stream_free(bth_list_entry(it, struct h2_stream, link));
    }
    nghttp2_session_del(hc->ng);
    event_del(&hc->timer);
    event_del(&hc->dispatch_ev);
    bth_worker_conn_closed(hc->listener->stats);
    bth_worker_untrack(hc->w, &hc->wc);
    bth_conn_fini(&hc->conn);
    bth_snapshot_unref(hc->snap);
    bth_free(hc);
}

/* A last GOAWAY with <code>; the connection closes when the streams before it are done
 * (at once for an error) or when the grace runs out. */
static void go_away(struct h2_conn *hc, uint32_t code)
{
    if (code != NGHTTP2_NO_ERROR)
        nghttp2_session_terminate_session(hc->ng, code);
    else if (!hc->going_away)
        nghttp2_submit_goaway(hc->ng, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(hc->ng), code, NULL, 0);
    hc->going_away = true;
    if (hc->nstreams == 0 || code != NGHTTP2_NO_ERROR)
        arm_timer(hc, GOAWAY_GRACE_MS);
}

/* Feeds what the client sent to nghttp2. */
static void conn_recv(struct h2_conn *hc)
{
    struct evbuffer_iovec v[8];
    while (evbuffer_get_length(hc->conn.in) > 0 && !hc->closing) {
        int n = evbuffer_peek(hc->conn.in, -1, NULL, v, 8);
        if (n > 8)
            n = 8;
        size_t used = 0;
        for (int i = 0; i < n; i++) {
            ssize_t r = nghttp2_session_mem_recv(hc->ng, v[i].iov_base, v[i].iov_len);
            if (r < 0) {
                evbuffer_drain(hc->conn.in, evbuffer_get_length(hc->conn.in));
                if (r == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
                    hc->closing = true; /* not HTTP/2 at all: nothing to say */
                    return;
                }
                uint32_t code =
                    hc->flood ? hc->flood
                    : (r == NGHTTP2_ERR_FLOODED || r == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS)
                        ? NGHTTP2_ENHANCE_YOUR_CALM
                        : NGHTTP2_PROTOCOL_ERROR;
                if (hc->flood == 0)
                    bth_log(BTH_LOG_INFO, "h2 #%llu from %s: %s", (unsigned long long)hc->id,
                            hc->client_text, nghttp2_strerror((int)r));
                go_away(hc, code);
                return;
            }
            used += (size_t)r;
        }
        evbuffer_drain(hc->conn.in, used);
    }
}

/* Frames what nghttp2 has queued and writes it out; decides whether the connection ends. */
static void conn_pump(struct h2_conn *hc)
{
    if (hc->closing)
        return;
    if (evbuffer_get_length(hc->conn.out) < CONN_OUT_HIGH) {
        int rv = nghttp2_session_send(hc->ng);
        if (rv != 0) {
            hc->closing = true;
            return;
        }
    }
    if (bth_conn_flush(&hc->conn) != 0) {
        hc->closing = true;
        return;
    }
    bool idle_out = evbuffer_get_length(hc->conn.out) == 0;
    if (idle_out && !nghttp2_session_want_read(hc->ng) && !nghttp2_session_want_write(hc->ng))
        hc->closing = true;
    else if (idle_out && hc->going_away && hc->nstreams == 0 && !nghttp2_session_want_write(hc->ng))
        hc->closing = true;
}

static void conn_readable(struct h2_conn *hc)
{
    for (int round = 0; round < 16 && !hc->closing; round++) {
        /* Output the client does not read stops its input too: a client cannot make berth
         * queue answers (PING, SETTINGS acks) without bound. */
        if (evbuffer_get_length(hc->conn.out) >= CONN_OUT_HIGH) {
            hc->conn.read_pending = true;
            return;
        }
        bth_conn_read(&hc->conn, READ_BUDGET_H2);
        if (hc->conn.error != 0) {
            hc->closing = true;
            return;
        }
        conn_recv(hc);
        conn_pump(hc);
        if (hc->conn.eof) {
            hc->closing = true; /* the client is gone: its streams go with it */
            return;
        }
        if (!hc->conn.read_pending)
            return;
    }
    if (!hc->closing)
        event_active(&hc->conn.ev, EV_READ, 1);
}

static void on_conn_io(evutil_socket_t fd, short what, void *arg)
{
    struct h2_conn *hc = arg;
    (void)fd;
    bth_conn_note_event(&hc->conn, what);
    if (hc->conn.ssl != NULL)
        what |= EV_READ | EV_WRITE;
    if (what & EV_CLOSED)
        what |= EV_READ;
    if (what & EV_WRITE) {
        conn_pump(hc);
        if (!hc->closing && hc->conn.read_pending &&
            evbuffer_get_length(hc->conn.out) < CONN_OUT_HIGH)
            what |= EV_READ;
    }
    if ((what & EV_READ) && !hc->closing)
        conn_readable(hc);
    if (hc->closing)
        conn_free(hc);
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    struct h2_conn *hc = arg;
    (void)fd;
    (void)what;
    uint64_t idle = hc->listener->cfg->idle_timeout_ms;
    uint64_t quiet = bth_clock_mono_ms() - hc->idle_since_ms;
    if (hc->going_away) {
        hc->closing = true; /* the grace after the last GOAWAY ran out */
    } else if (hc->nstreams == 0 && quiet + 5 >= idle) {
        go_away(hc, NGHTTP2_NO_ERROR); /* idle_timeout: GOAWAY, then close */
        conn_pump(hc);
    } else if (hc->nstreams == 0) {
        arm_timer(hc, idle - quiet); /* streams came and went meanwhile */
    }                                /* else busy: the last stream to end arms it again */
    if (hc->closing)
        conn_free(hc);
}

/* Once a second: a removed listener's connections go away, and a quiet connection is
 * checked for life when the listener asks for it (http2.ping_interval). */
static void conn_sweep(struct bth_worker_conn *c, uint64_t now_ms)
{
    struct h2_conn *hc = bth_list_entry(c, struct h2_conn, wc);
    uint64_t ping = hc->listener->cfg->http2.ping_interval_ms;
    struct bth_list *it, *tmp;
    bth_list_foreach_safe(it, tmp, &hc->streams) /* targets whose drain ended: exchanges end */
    {
        struct h2_stream *st = bth_list_entry(it, struct h2_stream, link);
        if (st->s != NULL)
            h1_exchange_expired(st->s);
    }
    if (hc->wl->retired && !hc->going_away) {
        go_away(hc, NGHTTP2_NO_ERROR);
    } else if (ping > 0 && now_ms - hc->last_rx_ms >= ping) {
        if (hc->ping_out && now_ms - hc->last_rx_ms >= 2 * ping) {
            bth_log(BTH_LOG_INFO, "h2 #%llu from %s: no answer to PING, closing",
                    (unsigned long long)hc->id, hc->client_text);
            hc->closing = true;
            conn_free(hc);
            return;
        }
        if (!hc->ping_out) {
            hc->ping_out = true;
            nghttp2_submit_ping(hc->ng, NGHTTP2_FLAG_NONE, NULL);
        }
    } else {
        return;
    }
    schedule_send(hc);
}

/* A graceful stop (shutdown, or the stop of a worker): GOAWAY, open streams finish. */
static void conn_stop(struct bth_worker_conn *c)
{
    struct h2_conn *hc = bth_list_entry(c, struct h2_conn, wc);
    if (!hc->going_away)
        go_away(hc, NGHTTP2_NO_ERROR);
    schedule_send(hc);
}

static void conn_abort(struct bth_worker_conn *c)
{
    conn_free(bth_list_entry(c, struct h2_conn, wc));
}

static const struct bth_conn_ops h2_conn_ops = {
    .stop = conn_stop, .abort = conn_abort, .sweep = conn_sweep};

static nghttp2_session_callbacks *make_callbacks(void)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return NULL;
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_send_data_callback(cb, on_send_data);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback2(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    return cb;
}

static int session_setup(struct h2_conn *hc)
{
    const struct bth_cfg_http2 *h = &hc->listener->cfg->http2;
    nghttp2_session_callbacks *cb = make_callbacks();
    nghttp2_option *opt = NULL;
    int rv = -1;
    if (cb == NULL || nghttp2_option_new(&opt) != 0)
        goto out;
    nghttp2_option_set_no_auto_window_update(opt, 1); /* consumed as forwarded: front_read */
    nghttp2_option_set_max_settings(opt, 32);
    /* berth keeps no priority tree: closed streams need not be remembered for it */
    nghttp2_option_set_no_closed_streams(opt, 1);
    if (nghttp2_session_server_new2(&hc->ng, cb, hc, opt) != 0)
        goto out;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h->max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)h->initial_window_size},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, (uint32_t)h->max_frame_size},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)h->max_header_list_size},
        /* berth does not schedule by priority (RFC 9218 3): clients need not send it */
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    if (nghttp2_submit_settings(hc->ng, NGHTTP2_FLAG_NONE, iv, 5) != 0)
        goto out;
    /* The connection's window covers every stream's, so a fast client is held back only by
     * its streams' windows, which the forwarding opens as it goes (16 MiB at most). */
    uint64_t conn_window = (uint64_t)h->initial_window_size * h->max_concurrent_streams;
    if (conn_window > 16u * 1024 * 1024)
        conn_window = 16u * 1024 * 1024;
    if (conn_window > 65535)
        nghttp2_session_set_local_window_size(hc->ng, NGHTTP2_FLAG_NONE, 0, (int32_t)conn_window);
    rv = 0;
out:
    if (cb != NULL)
        nghttp2_session_callbacks_del(cb);
    if (opt != NULL)
        nghttp2_option_del(opt);
    return rv;
}

void bth_h2_session_start(struct bth_worker *w, struct bth_worker_listener *wl, struct bth_conn *c,
                          const struct sockaddr_storage *peer)
{
    struct bth_stats *stats = w->snap->listeners[wl->index].stats;
    struct h2_conn *hc = bth_calloc(1, sizeof(*hc));
    if (hc == NULL || bth_conn_move(&hc->conn, c, on_conn_io, hc) != 0) {
        if (hc != NULL)
            bth_conn_fini(&hc->conn);
        bth_conn_fini(c);
        bth_free(hc);
        bth_worker_conn_closed(stats);
        return;
    }
    hc->w = w;
    hc->wl = wl;
    bth_snapshot_ref(w->snap);
    hc->snap = w->snap;
    hc->listener = &hc->snap->listeners[wl->index];
    hc->id = ++w->next_conn_id;
    hc->peer = *peer;
    hc->last_rx_ms = hc->idle_since_ms = bth_clock_mono_ms();
    h1_describe_peer(peer, hc->client_ip, hc->client_text);
    bth_list_init(&hc->streams);
    bth_list_init(&hc->ready);
    evtimer_assign(&hc->timer, w->base, on_conn_timer, hc);
    event_assign(&hc->dispatch_ev, w->base, -1, 0, dispatch_ready, hc);
    bth_worker_track(w, &hc->wc, &h2_conn_ops, true);
    count(hc, BTH_ST_H2_CONNECTIONS);
    if (session_setup(hc) != 0) {
        hc->closing = true;
    } else {
        arm_timer(hc, hc->listener->cfg->idle_timeout_ms);
        conn_recv(hc); /* the preface and whatever came with it */
        conn_pump(hc);
        if (!hc->closing)
            conn_readable(hc);
    }
    if (hc->closing)
        conn_free(hc);
}
