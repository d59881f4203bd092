/* SPDX-License-Identifier: MIT */
/* The control API's HTTP/1.1 server (control_http.h). Main thread only. Bytes go from the
 * bufferevent's input into llhttp one segment at a time and are drained as soon as parsed,
 * so each byte is looked at once, and the head limit counts what llhttp has been fed: a
 * 64 MiB header line costs 16 KiB of parsing. Each connection is one state machine (enum
 * conn_state) with one timer for the deadline of its state. Invariant: nothing is freed
 * while a request callback of its connection is on the stack (conn.in_callback). */
#include "control_http.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <jansson.h>
#include <llhttp.h>

#include "clock.h"
#include "debug.h"
#include "http_status.h"
#include "log.h"
#include "mem.h"

/* ---- the request reader: llhttp and what handlers may ask for, no I/O ------------------ */

#define NO_OFFSET UINT32_MAX
/* The target and every field name and value, each NUL-terminated, never take more than the
 * head itself plus one NUL per element. */
#define STORE_MAX (BTH_CONTROL_HTTP_MAX_HEAD_BYTES + 2 * BTH_CONTROL_HTTP_MAX_HEADERS + 2)

enum piece {
    P_NONE = 0,
    P_URL,
    P_FIELD,
    P_VALUE,
};

/* What feeding bytes to a reader produced. */
enum feed_result {
    FEED_MORE = 0, /* every byte fed was taken; the request needs more */
    FEED_HEAD,     /* the head is complete and acceptable: check it, then creq_resume() */
    FEED_DONE,     /* the request is complete */
    FEED_ERROR,    /* answer r->status (r->code, r->msg), then close */
};

enum pause_point {
    PAUSED_NOT = 0,
    PAUSED_HEAD,
    PAUSED_MESSAGE,
};

struct creq_hdr {
    uint32_t name;  /* offset into store */
    uint32_t value; /* offset into store; NO_OFFSET for an empty value */
};

struct creq {
    llhttp_t parser;
    char *store; /* owned: the target and the fields, each NUL-terminated */
    size_t store_len, store_cap;
    uint32_t url; /* offset into store, NO_OFFSET before the first piece */
    struct creq_hdr hdrs[BTH_CONTROL_HTTP_MAX_HEADERS];
    unsigned nhdrs;
    enum piece last;        /* the element the last piece went to */
    enum pause_point pause; /* where llhttp stopped */
    size_t head_bytes;      /* bytes of this request's head fed to llhttp */
    bool head_done;
    bool complete;         /* the whole message is in */
    bool keep_alive;       /* llhttp's verdict, taken when the message ended */
    bool expect_continue;  /* "Expect: 100-continue" with a body to come */
    struct evbuffer *body; /* owned */
    int status;            /* the error to answer, 0 while none */
    const char *code;      /* static: its Error.Code */
    char msg[160];         /* its Error.Message */
};

static struct creq *creq_of(llhttp_t *p)
{
    return p->data;
}

static int creq_fail(struct creq *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Records the error to answer. Returns -1, which llhttp's callbacks pass back as a failure. */
static int creq_fail(struct creq *r, int status, const char *code, const char *fmt, ...)
{
    if (r->status != 0)
        return -1; /* the first error is the one answered */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
    va_end(ap);
    r->status = status;
    r->code = code;
    return -1;
}

/* Appends a piece of the current element (<fresh>: of a new one, NUL-separated from the
 * one before). Sets <*off> to where a new element starts. Returns 0 or -1. */
static int store_put(struct creq *r, const char *at, size_t len, bool fresh, uint32_t *off)
{
    /* + 1 keeps room for the NUL that ends the last element when the head is complete */
    size_t need = r->store_len + (fresh && r->store_len > 0) + len + 1;
    if (need > r->store_cap) {
        size_t cap = r->store_cap ? r->store_cap : 512;
        while (cap < need)
            cap *= 2;
        if (cap > STORE_MAX)
            cap = STORE_MAX;
        if (need > cap) /* cannot happen while the head limit holds */
            return creq_fail(r, 431, "RequestHeaderFieldsTooLarge", "request head too large");
        char *s = bth_realloc(r->store, cap);
        if (s == NULL)
            return creq_fail(r, 500, "InternalFailure", "out of memory");
        r->store = s;
        r->store_cap = cap;
    }
    if (fresh && r->store_len > 0)
        r->store[r->store_len++] = '\0';
    *off = (uint32_t)r->store_len;
    memcpy(r->store + r->store_len, at, len);
    r->store_len += len;
    return 0;
}

/* llhttp hands over a token in several pieces when it spans reads: a piece of another kind
 * than the last starts a new element. */
static int on_piece(llhttp_t *p, enum piece kind, const char *at, size_t len)
{
    struct creq *r = creq_of(p);
    if (r->head_done)
        return 0; /* trailer fields after a chunked body: not kept */
    bool fresh = r->last != kind;
    if (fresh && kind == P_FIELD && r->nhdrs == BTH_CONTROL_HTTP_MAX_HEADERS)
        return creq_fail(r, 431, "RequestHeaderFieldsTooLarge", "more than %d header fields",
                         BTH_CONTROL_HTTP_MAX_HEADERS);
    uint32_t off = 0;
    if (store_put(r, at, len, fresh, &off) != 0)
        return -1;
    if (fresh) {
        if (kind == P_URL)
            r->url = off;
        else if (kind == P_FIELD)
            r->hdrs[r->nhdrs++] = (struct creq_hdr){off, NO_OFFSET};
        else
            r->hdrs[r->nhdrs - 1].value = off;
        r->last = kind;
    }
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    return on_piece(p, P_URL, at, len);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    return on_piece(p, P_FIELD, at, len);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    return on_piece(p, P_VALUE, at, len);
}

static const char *creq_header(const struct creq *r, const char *name)
{
    for (unsigned i = 0; i < r->nhdrs; i++) {
        if (strcasecmp(r->store + r->hdrs[i].name, name) == 0)
            return r->hdrs[i].value == NO_OFFSET ? "" : r->store + r->hdrs[i].value;
    }
    return NULL;
}

static int on_headers_complete(llhttp_t *p)
{
    struct creq *r = creq_of(p);
    r->head_done = true;
    if (r->store_len > 0)
        r->store[r->store_len++] = '\0'; /* store_put kept room for it */
    /* llhttp drops whitespace before a value, not after it (RFC 9112 §5: OWS both sides) */
    for (unsigned i = 0; i < r->nhdrs; i++) {
        if (r->hdrs[i].value == NO_OFFSET)
            continue;
        char *v = r->store + r->hdrs[i].value;
        size_t n = strlen(v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            v[--n] = '\0';
    }
    if (p->method != HTTP_GET && p->method != HTTP_POST)
        return creq_fail(r, 405, "MethodNotAllowed",
                         "method %s not allowed: the control API takes GET and POST",
                         llhttp_method_name((llhttp_method_t)p->method));
    bool has_body = (p->flags & F_CHUNKED) || p->content_length > 0;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > BTH_CONTROL_HTTP_MAX_BODY_BYTES)
        return creq_fail(r, 413, "RequestEntityTooLarge", "request body larger than %d bytes",
                         BTH_CONTROL_HTTP_MAX_BODY_BYTES);
    const char *expect = creq_header(r, "Expect");
    r->expect_continue = has_body && expect != NULL && strcasecmp(expect, "100-continue") == 0;
    r->pause = PAUSED_HEAD;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct creq *r = creq_of(p);
    if (evbuffer_get_length(r->body) + len > BTH_CONTROL_HTTP_MAX_BODY_BYTES)
        return creq_fail(r, 413, "RequestEntityTooLarge", "request body larger than %d bytes",
                         BTH_CONTROL_HTTP_MAX_BODY_BYTES);
    if (evbuffer_add(r->body, at, len) != 0)
        return creq_fail(r, 500, "InternalFailure", "out of memory");
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct creq *r = creq_of(p);
    r->complete = true;
    /* An upgrade is never granted, so the connection cannot go on after it. */
    r->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
    r->pause = PAUSED_MESSAGE;
    return HPE_PAUSED;
}

static const llhttp_settings_t creq_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Returns 0, or -1 when out of memory. */
static int creq_init(struct creq *r)
{
    memset(r, 0, sizeof(*r));
    llhttp_init(&r->parser, HTTP_REQUEST, &creq_settings);
    r->parser.data = r;
    r->url = NO_OFFSET;
    r->body = evbuffer_new();
    return r->body != NULL ? 0 : -1;
}

static void creq_fini(struct creq *r)
{
    bth_free(r->store);
    if (r->body != NULL)
        evbuffer_free(r->body);
    r->store = NULL;
    r->body = NULL;
}

/* After FEED_HEAD: lets llhttp go on into the body. */
static void creq_resume(struct creq *r)
{
    r->pause = PAUSED_NOT;
    llhttp_resume(&r->parser);
}

/* After an answer to a complete request: the next request on the connection starts. */
static void creq_next(struct creq *r)
{
    r->store_len = 0;
    r->url = NO_OFFSET;
    r->nhdrs = 0;
    r->last = P_NONE;
    r->head_bytes = 0;
    r->head_done = r->complete = r->keep_alive = r->expect_continue = false;
    evbuffer_drain(r->body, evbuffer_get_length(r->body));
    r->status = 0;
    if (r->pause != PAUSED_NOT)
        creq_resume(r);
}

/* Feeds up to <len> bytes at <data>; <len> may be 0 (llhttp then finishes a bodiless request
 * after FEED_HEAD). <*used> is the count taken. Before the head is complete, no more than
 * BTH_CONTROL_HTTP_MAX_HEAD_BYTES are ever fed, so parsing is bounded whatever arrives. */
static enum feed_result creq_feed(struct creq *r, const char *data, size_t len, size_t *used)
{
    bool in_head = !r->head_done;
    size_t n = len;
    if (in_head && n > BTH_CONTROL_HTTP_MAX_HEAD_BYTES - r->head_bytes)
        n = BTH_CONTROL_HTTP_MAX_HEAD_BYTES - r->head_bytes;
    llhttp_errno_t e = llhttp_execute(&r->parser, n > 0 ? data : "", n);
    size_t taken = n;
    if (e != HPE_OK && llhttp_get_error_pos(&r->parser) != NULL && n > 0)
        taken = (size_t)(llhttp_get_error_pos(&r->parser) - data);
    *used = taken;
    if (in_head)
        r->head_bytes += taken;
    switch (e) {
    case HPE_OK:
        if (!r->head_done && r->head_bytes >= BTH_CONTROL_HTTP_MAX_HEAD_BYTES) {
            creq_fail(r, 431, "RequestHeaderFieldsTooLarge", "request head larger than %d bytes",
                      BTH_CONTROL_HTTP_MAX_HEAD_BYTES);
            return FEED_ERROR;
        }
        return FEED_MORE;
    case HPE_PAUSED:
        return r->pause == PAUSED_HEAD ? FEED_HEAD : FEED_DONE;
    default:
        if (r->status != 0)
            return FEED_ERROR;
        if (e == HPE_INVALID_METHOD)
            creq_fail(r, 405, "MethodNotAllowed",
                      "unknown method: the control API takes GET and POST");
        else
            creq_fail(r, 400, "BadRequest", "malformed request: %s",
                      llhttp_get_error_reason(&r->parser));
        return FEED_ERROR;
    }
}

/* ---- connections ---------------------------------------------------------------------- */

enum conn_state {
    ST_HEAD = 0, /* reading a request head; the request deadline runs */
    ST_BODY,     /* reading its body; the same deadline still runs */
    ST_HANDLER,  /* with the request callback, for long with "Wait"; no reading, no deadline */
    ST_WRITING,  /* an answer is being written; the write deadline runs */
    ST_IDLE,     /* keep-alive: nothing of the next request yet; the idle deadline runs */
    ST_LINGER,   /* error answered and our side shut: reading and dropping until EOF */
};

static const char *const state_names[] = {"head", "body", "handler", "writing", "idle", "linger"};

/* The moves set_state() allows, as bit masks of the target state. */
static const unsigned legal_moves[] = {
    [ST_HEAD] = 1u << ST_BODY | 1u << ST_WRITING,
    [ST_BODY] = 1u << ST_HANDLER | 1u << ST_WRITING,
    [ST_HANDLER] = 1u << ST_WRITING,
    [ST_WRITING] = 1u << ST_IDLE | 1u << ST_HEAD | 1u << ST_LINGER,
    [ST_IDLE] = 1u << ST_HEAD,
    [ST_LINGER] = 0,
};

struct bth_control_req {
    struct creq r;
    bth_control_gone_cb gone; /* NULL unless a handler keeps the request */
    void *gone_arg;
    char extra[384]; /* "Name: value\r\n" fields for the answer */
    size_t extra_len;
};

struct conn {
    struct bth_control_req req;   /* the request being read or answered */
    struct bth_control_http *srv; /* borrowed: freed only after its last connection */
    struct bufferevent *bev;      /* owned: closes the socket */
    struct event *timer;          /* owned: the deadline of the current state */
    struct conn *prev, *next;     /* in srv->conns */
    unsigned long long id;        /* for log lines */
    enum conn_state state;
    bool peer_eof;    /* the client shut its side; answers still go out */
    bool close_after; /* close once the answer is written */
    bool linger;      /* ... after reading what the client still sends */
    bool broken;      /* the answer could not be queued: close */
    bool in_callback; /* a head or request callback runs for this connection */
};

struct bth_control_http {
    struct event_base *base;    /* borrowed */
    struct evconnlistener *lev; /* owned: closes the socket; NULL once destroyed */
    struct event *resume;       /* owned: accepts again after EMFILE */
    char *name;                 /* owned */
    unsigned max_conns, nconns;
    struct conn *conns; /* owned list */
    bth_control_head_cb on_head;
    bth_control_req_cb on_request;
    void *arg;
    bool destroyed;  /* waiting for connections in a callback to finish */
    bool destroying; /* inside bth_control_http_destroy(): it frees */
    char busy[320];  /* the 503 answer past max_conns */
    size_t busy_len;
    unsigned long long refused; /* since the last log line about it */
    uint64_t refusal_logged_ms;
    bool refusal_logged;
    uint64_t request_timeout_ms; /* control.request_timeout */
    uint64_t idle_timeout_ms;    /* control.idle_timeout */
};

static unsigned long long next_conn_id = 1;

static struct conn *conn_of(struct bth_control_req *req)
{
    return (struct conn *)((char *)req - offsetof(struct conn, req));
}

static void server_free(struct bth_control_http *h)
{
    if (h->lev != NULL)
        evconnlistener_free(h->lev);
    if (h->resume != NULL)
        event_free(h->resume);
    bth_free(h->name);
    bth_free(h);
}

static void arm(struct conn *c, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(c->timer, &tv);
}

static void set_state(struct conn *c, enum conn_state st)
{
    if (!(legal_moves[c->state] & (1u << st))) {
        bth_log(BTH_LOG_ERR, "control#%llu: illegal move %s -> %s", c->id, state_names[c->state],
                state_names[st]);
        bth_debug_assert(!"illegal state move");
    }
    bth_log(BTH_LOG_DEBUG, "control#%llu %s -> %s", c->id, state_names[c->state], state_names[st]);
    c->state = st;
    switch (st) {
    case ST_HEAD:
        arm(c, c->srv->request_timeout_ms);
        break;
    case ST_BODY:
        break; /* the request deadline set in ST_HEAD still runs */
    case ST_HANDLER:
        event_del(c->timer);
        break;
    case ST_WRITING:
        arm(c, BTH_CONTROL_HTTP_WRITE_TIMEOUT_MS);
        break;
    case ST_IDLE:
        arm(c, c->srv->idle_timeout_ms);
        break;
    case ST_LINGER:
        arm(c, BTH_CONTROL_HTTP_LINGER_MS);
        break;
    }
}

/* Frees <c>, closing its socket; a request kept by a handler is reported gone first. The
 * last connection of a destroyed server frees the server. Callers: process() (end of input,
 * EOF), answer_done(), dispatch() (server destroyed meanwhile), on_event(), on_timer(),
 * on_write() (broken answer) and bth_control_http_destroy(); each returns at once after. */
static void conn_close(struct conn *c)
{
    struct bth_control_http *h = c->srv;
    assert(!c->in_callback);
    if (c->req.gone != NULL) {
        bth_control_gone_cb cb = c->req.gone;
        c->req.gone = NULL;
        cb(c->req.gone_arg);
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    h->nconns--;
    bufferevent_free(c->bev);
    event_free(c->timer);
    creq_fini(&c->req.r);
    bth_free(c);
    if (h->destroyed && !h->destroying && h->nconns == 0)
        server_free(h);
}

static void reply_error(struct conn *c, int status, const char *code, const char *msg)
{
    bth_log(BTH_LOG_DEBUG, "control#%llu %s: answered %d %s: %s", c->id, c->srv->name, status, code,
            msg);
    if (status == 405)
        bth_control_req_add_header(&c->req, "Allow", "GET, POST");
    bth_control_req_reply_error(&c->req, status, code, msg);
}

/* The client shut its side with no complete request left to answer. */
static void at_eof(struct conn *c)
{
    if (c->state == ST_HEAD && c->req.r.head_bytes == 0) {
        conn_close(c);
        return;
    }
    reply_error(c, 400, "BadRequest", "the client closed its side before the request ended");
}

static void dispatch(struct conn *c);
static int head_ready(struct conn *c);

/* Parses what the input holds while a request is being read. */
static void process(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct creq *r = &c->req.r;
    while (c->state == ST_HEAD || c->state == ST_BODY) {
        struct evbuffer_iovec v = {NULL, 0};
        size_t used;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            v.iov_len = 0;
        enum feed_result fr = creq_feed(r, v.iov_base, v.iov_len, &used);
        evbuffer_drain(in, used);
        switch (fr) {
        case FEED_MORE:
            if (evbuffer_get_length(in) > 0)
                continue;
            if (c->peer_eof)
                at_eof(c);
            return;
        case FEED_HEAD:
            if (head_ready(c) != 0)
                return;
            continue;
        case FEED_DONE:
            dispatch(c);
            return;
        case FEED_ERROR:
            reply_error(c, r->status, r->code, r->msg);
            return;
        }
    }
}

/* The head is in and acceptable to the parser. Returns 0 to read the body, -1 when the
 * request was answered (or <c> closed). */
static int head_ready(struct conn *c)
{
    struct bth_control_http *h = c->srv;
    if (h->on_head != NULL) {
        c->in_callback = true;
        int rc = h->on_head(&c->req, h->arg);
        c->in_callback = false;
        if (rc != 0) {
            if (c->state != ST_WRITING)
                reply_error(c, 500, "InternalFailure", "request refused without an answer");
            return -1;
        }
    }
    if (c->req.r.expect_continue) /* RFC 9110 §10.1.1: the client waits for this */
        bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    set_state(c, ST_BODY);
    creq_resume(&c->req.r);
    return 0;
}

static void dispatch(struct conn *c)
{
    struct bth_control_http *h = c->srv;
    set_state(c, ST_HANDLER);
    bufferevent_disable(c->bev, EV_READ); /* pipelined requests wait in the socket */
    c->in_callback = true;
    h->on_request(&c->req, h->arg);
    c->in_callback = false;
    if (h->destroyed) {
        /* The server went away from inside the callback (a reload moved control.listen):
         * the answer, if any, still goes out, and nothing more is read. */
        if (c->state == ST_HANDLER) {
            conn_close(c);
            return;
        }
        c->close_after = true;
        c->linger = false;
    }
}

/* The answer is written. */
static void answer_done(struct conn *c)
{
    if (c->close_after && c->linger) {
        /* The client may still be sending what berth refused: shut our side so it sees the
         * end of the answer, and drop its bytes until it closes, so that no reset (sent
         * when unread data meets close()) destroys the answer in its receive buffer. */
        shutdown(bufferevent_getfd(c->bev), SHUT_WR);
        set_state(c, ST_LINGER);
        struct evbuffer *in = bufferevent_get_input(c->bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        if (c->peer_eof) {
            conn_close(c);
            return;
        }
        bufferevent_set_max_single_read(c->bev, 256 * 1024);
        bufferevent_enable(c->bev, EV_READ);
        return;
    }
    if (c->close_after) {
        conn_close(c);
        return;
    }
    creq_next(&c->req.r);
    c->req.extra_len = 0;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (evbuffer_get_length(in) > 0 || c->peer_eof) {
        set_state(c, ST_HEAD);
        if (!c->peer_eof)
            bufferevent_enable(c->bev, EV_READ);
        process(c); /* a pipelined request, or the end of a half-closed connection */
        return;
    }
    set_state(c, ST_IDLE);
    bufferevent_enable(c->bev, EV_READ);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    switch (c->state) {
    case ST_LINGER: {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    case ST_IDLE:
        set_state(c, ST_HEAD);
        process(c);
        return;
    case ST_HEAD:
    case ST_BODY:
        process(c);
        return;
    case ST_HANDLER:
    case ST_WRITING:
        return; /* reading is off; what came before stays in the input */
    }
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->state != ST_WRITING)
        return; /* "100 Continue" went out */
    if (c->broken) {
        conn_close(c);
        return;
    }
    answer_done(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_ERROR) {
        bth_log(BTH_LOG_DEBUG, "control#%llu %s: connection error in state %s: %s", c->id,
                c->srv->name, state_names[c->state],
                evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        conn_close(c);
        return;
    }
    if (!(what & BEV_EVENT_EOF))
        return;
    c->peer_eof = true;
    switch (c->state) {
    case ST_HEAD:
    case ST_BODY:
        process(c); /* answers a complete request still in the input, else ends */
        return;
    case ST_IDLE:
    case ST_LINGER:
        conn_close(c);
        return;
    case ST_HANDLER:
    case ST_WRITING:
        return; /* the answer still goes out (a half-closed client reads it) */
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    switch (c->state) {
    case ST_HEAD:
        if (c->req.r.head_bytes == 0) {
            conn_close(c); /* nothing asked: nothing to answer */
            return;
        }
        /* fall through */
    case ST_BODY: {
        char msg[96];
        snprintf(msg, sizeof(msg), "the request did not arrive within %llu ms",
                 (unsigned long long)c->srv->request_timeout_ms);
        reply_error(c, 408, "RequestTimeout", msg);
        return;
    }
    case ST_HANDLER:
        return; /* no deadline; not armed */
    case ST_WRITING:
    case ST_IDLE:
    case ST_LINGER:
        bth_log(BTH_LOG_DEBUG, "control#%llu %s: %s timeout", c->id, c->srv->name,
                state_names[c->state]);
        conn_close(c);
        return;
    }
}

/* Past max_conns: one best-effort 503 without reading anything, then close. */
static void refuse(struct bth_control_http *h, evutil_socket_t fd)
{
    ssize_t w = send(fd, h->busy, h->busy_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    evutil_closesocket(fd);
    h->refused++;
    uint64_t now = bth_clock_mono_ms();
    if (!h->refusal_logged || now - h->refusal_logged_ms >= BTH_CONTROL_HTTP_REFUSAL_LOG_MS) {
        bth_log(BTH_LOG_WARN,
                "%s: %u connections open, the limit: refusing new ones (%llu refused since "
                "the last such line)",
                h->name, h->max_conns, h->refused);
        h->refused = 0;
        h->refusal_logged = true;
        h->refusal_logged_ms = now;
    }
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct bth_control_http *h = arg;
    if (h->nconns >= h->max_conns) {
        refuse(h, fd);
        return;
    }
    struct conn *c = bth_calloc(1, sizeof(*c));
    if (c == NULL || creq_init(&c->req.r) != 0)
        goto fail;
    c->srv = h;
    c->id = next_conn_id++;
    c->bev = bufferevent_socket_new(h->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL)
        goto fail;
    c->timer = evtimer_new(h->base, on_timer, c);
    if (c->timer == NULL)
        goto fail;
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->next = h->conns;
    if (h->conns != NULL)
        h->conns->prev = c;
    h->conns = c;
    h->nconns++;
    arm(c, c->srv->request_timeout_ms); /* ST_HEAD from the start */
    return;
fail:
    bth_log(BTH_LOG_WARN, "%s: out of memory for a new connection", h->name);
    if (c != NULL) {
        if (c->bev != NULL)
            bufferevent_free(c->bev); /* closes fd */
        else
            evutil_closesocket(fd);
        creq_fini(&c->req.r);
        bth_free(c);
    } else {
        evutil_closesocket(fd);
    }
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct bth_control_http *h = arg;
    if (h->lev != NULL)
        evconnlistener_enable(h->lev);
}

/* accept() failed. Out of descriptors, the listener would fire again at once for ever:
 * pause it for a second instead. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    struct bth_control_http *h = arg;
    int e = EVUTIL_SOCKET_ERROR();
    bool starved = e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
    uint64_t now = bth_clock_mono_ms();
    if (!h->refusal_logged || now - h->refusal_logged_ms >= BTH_CONTROL_HTTP_REFUSAL_LOG_MS) {
        bth_log(BTH_LOG_WARN, "%s: accept() failed: %s%s", h->name, strerror(e),
                starved ? "; not accepting for 1 s" : "");
        h->refusal_logged = true;
        h->refusal_logged_ms = now;
    }
    if (starved) {
        evconnlistener_disable(lev);
        struct timeval tv = {1, 0};
        event_add(h->resume, &tv);
    }
}

struct bth_control_http *bth_control_http_create(struct event_base *base, int fd, const char *name,
                                                 unsigned max_conns, bth_control_head_cb on_head,
                                                 bth_control_req_cb on_request, void *arg)
{
    struct bth_control_http *h = bth_calloc(1, sizeof(*h));
    if (h == NULL) {
        close(fd);
        return NULL;
    }
    h->base = base;
    h->max_conns = max_conns;
    h->request_timeout_ms = BTH_CONTROL_HTTP_REQUEST_TIMEOUT_MS;
    h->idle_timeout_ms = BTH_CONTROL_HTTP_IDLE_TIMEOUT_MS;
    h->on_head = on_head;
    h->on_request = on_request;
    h->arg = arg;
    h->name = bth_strdup(name);
    h->resume = evtimer_new(base, on_resume, h);
    h->lev = evconnlistener_new(base, on_accept, h,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_DISABLED,
                                0 /* already listening */, fd);
    if (h->lev == NULL)
        close(fd);
    if (h->name == NULL || h->resume == NULL || h->lev == NULL) {
        server_free(h);
        return NULL;
    }
    evconnlistener_set_error_cb(h->lev, on_accept_error);
    char body[160];
    int blen = snprintf(body, sizeof(body),
                        "{\"Error\":{\"Code\":\"TooManyConnections\",\"Message\":\"more than %u "
                        "control connections open; try again later\"}}\n",
                        max_conns);
    int n = snprintf(h->busy, sizeof(h->busy),
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\nConnection: close\r\nRetry-After: 1\r\n\r\n%s",
                     blen, body);
    h->busy_len = n > 0 && (size_t)n < sizeof(h->busy) ? (size_t)n : 0;
    return h;
}

void bth_control_http_start(struct bth_control_http *h)
{
    evconnlistener_enable(h->lev);
}

void bth_control_http_destroy(struct bth_control_http *h)
{
    if (h == NULL)
        return;
    h->destroyed = true;
    h->destroying = true;
    if (h->lev != NULL) {
        evconnlistener_free(h->lev); /* closes the socket: the address is free at once */
        h->lev = NULL;
    }
    event_del(h->resume);
    for (struct conn *c = h->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (!c->in_callback)
            conn_close(c);
    }
    h->destroying = false;
    if (h->nconns == 0)
        server_free(h);
}

/* ---- requests --------------------------------------------------------------------------- */

enum bth_control_method bth_control_req_method(const struct bth_control_req *req)
{
    return req->r.parser.method == HTTP_POST ? BTH_CONTROL_POST : BTH_CONTROL_GET;
}

const char *bth_control_req_uri(const struct bth_control_req *req)
{
    return req->r.url == NO_OFFSET ? "" : req->r.store + req->r.url;
}

const char *bth_control_req_header(const struct bth_control_req *req, const char *name)
{
    return creq_header(&req->r, name);
}

struct evbuffer *bth_control_req_body(struct bth_control_req *req)
{
    return req->r.body;
}

int bth_control_req_add_header(struct bth_control_req *req, const char *name, const char *value)
{
    size_t room = sizeof(req->extra) - req->extra_len;
    int n = snprintf(req->extra + req->extra_len, room, "%s: %s\r\n", name, value);
    if (n < 0 || (size_t)n >= room) {
        req->extra[req->extra_len] = '\0';
        return -1;
    }
    req->extra_len += (size_t)n;
    return 0;
}

void bth_control_req_on_gone(struct bth_control_req *req, bth_control_gone_cb cb, void *arg)
{
    req->gone = cb;
    req->gone_arg = arg;
}

/* Queues the answer (<body> moved, or <len> bytes at <data>). Never writes or closes here:
 * on_write() takes over once the bytes are out. */
static void reply(struct bth_control_req *req, int status, const char *ctype, const void *data,
                  size_t len, struct evbuffer *body)
{
    struct conn *c = conn_of(req);
    struct creq *r = &req->r;
    if (c->state != ST_HEAD && c->state != ST_BODY && c->state != ST_HANDLER) {
        bth_log(BTH_LOG_ERR, "control#%llu: answer in state %s ignored", c->id,
                state_names[c->state]);
        return;
    }
    /* A request not read to its end leaves the stream unsynchronised: close after it. */
    c->close_after = c->close_after || !r->complete || !r->keep_alive || c->srv->destroyed;
    c->linger = !r->complete && !c->peer_eof;
    req->gone = NULL;
    char date[64];
    time_t now = (time_t)bth_clock_unix_s();
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    bufferevent_disable(c->bev, EV_READ); /* no more input until the answer is out */
    size_t blen = body != NULL ? evbuffer_get_length(body) : len;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    int rc = evbuffer_add_printf(out,
                                 "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\n"
                                 "Content-Length: %zu\r\n%s%.*s\r\n",
                                 status, bth_http_reason(status), date, ctype, blen,
                                 c->close_after ? "Connection: close\r\n" : "", (int)req->extra_len,
                                 req->extra);
    if (rc >= 0)
        rc = body != NULL ? evbuffer_add_buffer(out, body) : evbuffer_add(out, data, len);
    set_state(c, ST_WRITING);
    if (rc < 0) {
        /* Out of memory: the connection ends, from on_write and not from here. */
        c->broken = true;
        bufferevent_trigger(c->bev, EV_WRITE,
                            BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    }
}

void bth_control_req_reply(struct bth_control_req *req, int status, const char *ctype,
                           const void *data, size_t len)
{
    reply(req, status, ctype, data, len, NULL);
}

void bth_control_req_reply_buffer(struct bth_control_req *req, int status, const char *ctype,
                                  struct evbuffer *body)
{
    reply(req, status, ctype, NULL, 0, body);
}

void bth_control_req_reply_error(struct bth_control_req *req, int status, const char *code,
                                 const char *message)
{
    static const char oom[] = "{\"Error\":{\"Code\":\"InternalFailure\",\"Message\":\"out of "
                              "memory\"}}\n";
    json_t *j = json_pack("{s:{s:s,s:s}}", "Error", "Code", code, "Message", message);
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    size_t n = text != NULL ? strlen(text) : 0;
    char *body = text != NULL ? bth_malloc(n + 1) : NULL;
    if (body != NULL) {
        memcpy(body, text, n);
        body[n] = '\n';
        reply(req, status, "application/json", body, n + 1, NULL);
    } else {
        reply(req, status, "application/json", oom, sizeof(oom) - 1, NULL);
    }
    bth_free(body);
    free(text); /* jansson's allocator: plain malloc */
}

void bth_control_http_set_timeouts(struct bth_control_http *h, uint64_t request_ms,
                                   uint64_t idle_ms)
{
    if (h == NULL)
        return;
    h->request_timeout_ms = request_ms;
    h->idle_timeout_ms = idle_ms;
}
