/* SPDX-License-Identifier: MIT */
/* ALB-mode client sessions. One exchange (request + response) at a time per connection;
 * pipelined requests wait in the input buffer. Bodies are forwarded as raw bytes (chunked
 * framing included) after llhttp has validated the framing, so there is no decode/encode
 * copy; only HTTP/1.0 clients of chunked responses get a decoded body.
 *
 * Lifetime: every entry point (socket event, upstream event, timer) is a libevent callback
 * at the top of the stack. Work inside may mark the session closing; the entry point frees
 * it as its last step, so nothing is freed while a caller still holds it. */
#include "http_session.h"
#include "http_session_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <llhttp.h>

#include "accesslog.h"
#include "balancer.h"
#include "clock.h"
#include "conn.h"
#include "debug.h"
#include "desync.h"
#include "http_head.h"
#include "http_status.h"
#include "http_tolerate.h"
#include "grpc.h"
#include "h2_upstream.h"
#include "http_upstream.h"
#include "log.h"
#include "mem.h"
#include "router.h"
#include "snapshot.h"
#include "stats.h"
#include "sticky.h"
#include "target.h"
#include "tls.h"
#include "uri.h"
#include "worker.h"

static void on_client_io(evutil_socket_t fd, short what, void *arg);
static void session_stop(struct bth_worker_conn *c);
static void session_abort(struct bth_worker_conn *c);
static void session_sweep(struct bth_worker_conn *c, uint64_t now_ms);
static const struct bth_conn_ops session_conn_ops = {
    .stop = session_stop, .abort = session_abort, .sweep = session_sweep};
static void on_session_timer(evutil_socket_t fd, short what, void *arg);
static void on_upstream_event(struct bth_upstream *up, short what, void *arg);
static void process_client(struct bth_http_session *s);
static void process_response(struct bth_http_session *s);
static void start_exchange_on_target(struct bth_http_session *s);
static void xm_release(struct bth_http_session *s);
static struct bth_span host_value(const struct bth_http_head *h);
struct route_info;
static void forward_request(struct bth_http_session *s, const struct bth_snap_action *act,
                            const struct route_info *ri, size_t head_len);

/* ---- small helpers ---------------------------------------------------------------- */

static const char *state_name(enum session_state st)
{
    static const char *const names[] = {"idle",   "head",    "connecting", "proxying",
                                        "tunnel", "closing", "discard"};
    return names[st];
}

/* Which states each state may move to (bit per target state). Any state may end its
 * exchange (IDLE) or close with an answer (CLOSING), except that nothing leaves CLOSING and a
 * tunnel only closes; only a forwarded exchange becomes a tunnel. */
#define ST(x) (1u << (x))
static const unsigned legal_moves[] __attribute__((unused)) = {
    [SS_IDLE] = ST(SS_IDLE) | ST(SS_HEAD) | ST(SS_CLOSING) | ST(SS_DISCARD),
    [SS_HEAD] = ST(SS_IDLE) | ST(SS_HEAD) | ST(SS_CONNECTING) | ST(SS_CLOSING) | ST(SS_DISCARD),
    [SS_CONNECTING] =
        ST(SS_IDLE) | ST(SS_CONNECTING) | ST(SS_PROXYING) | ST(SS_CLOSING) | ST(SS_DISCARD),
    [SS_PROXYING] = ST(SS_IDLE) | ST(SS_CONNECTING) | ST(SS_PROXYING) | ST(SS_TUNNEL) |
                    ST(SS_CLOSING) | ST(SS_DISCARD),
    [SS_TUNNEL] = ST(SS_CLOSING),
    [SS_CLOSING] = ST(SS_CLOSING),
    [SS_DISCARD] = ST(SS_IDLE) | ST(SS_CLOSING) | ST(SS_DISCARD),
};
#undef ST

void h1_set_state(struct bth_http_session *s, enum session_state st)
{
    bth_debug_assert(legal_moves[s->state] & (1u << st));
    bth_log(BTH_LOG_DEBUG, "#%llu %s -> %s", (unsigned long long)s->id, state_name(s->state),
            state_name(st));
    s->state = st;
}

/* The response side only moves forward: a response once started is never retried. */
static void set_resp(struct bth_http_session *s, enum resp_state st)
{
    bth_debug_assert(st > s->ex.resp);
    s->ex.resp = st;
}

void h1_arm_timer(struct bth_http_session *s, uint64_t ms)
{
    event_add(&s->timer, bth_worker_timeout(s->w, ms));
    s->timer_body = false;
}

/* ---- request body deadline (min_body_rate) -------------------------------------------- */

/* A request body is still arriving and the listener asks for a minimum rate. Cheap: bodiless
 * requests stop at req_done, so they pay no clock reads. */
static bool body_rate_applies(const struct bth_http_session *s)
{
    return !s->ex.req_done && s->ex.req_has_body && s->listener->cfg->min_body_rate > 0;
}

/* Milliseconds until the request body must be whole, 0 once that has passed. As Apache
 * mod_reqtimeout's MinRate: body_timeout after the head, plus one second per min_body_rate
 * bytes received. The clock stands still while berth itself holds the client back. */
static uint64_t body_ms_left(const struct bth_http_session *s)
{
    const struct bth_cfg_listener *lc = s->listener->cfg;
    uint64_t t = s->xm->body_held_ms != 0 ? s->xm->body_held_ms : bth_clock_mono_ms();
    uint64_t allowed =
        lc->body_timeout_ms + (s->xm->rx_bytes - s->xm->body_rx0) * 1000 / lc->min_body_rate;
    uint64_t spent = t > s->xm->body_t0_ms ? t - s->xm->body_t0_ms : 0;
    return spent >= allowed ? 0 : allowed - spent;
}

/* Arms the timer of an exchange in progress: the idle timeout, or the request body's deadline
 * when that comes first. The deadline is a plain (heap) timeout, not a common one: its
 * values differ per request and would crowd the worker's few fixed durations out. */
/* The wait allowed for the target: the idle timeout, or less when a gRPC call's deadline
 * comes first. */
static uint64_t target_wait_ms(const struct bth_http_session *s)
{
    uint64_t idle_ms = s->listener->cfg->idle_timeout_ms;
    if (s->ex.deadline_ms == 0)
        return idle_ms;
    uint64_t now = bth_clock_mono_ms();
    uint64_t left = s->ex.deadline_ms > now ? s->ex.deadline_ms - now : 0;
    return left < idle_ms ? left : idle_ms;
}

static void arm_exchange_timer(struct bth_http_session *s)
{
    uint64_t idle_ms = target_wait_ms(s);
    if (body_rate_applies(s) && s->xm->body_held_ms == 0) {
        uint64_t left = body_ms_left(s);
        if (left < idle_ms) {
            struct timeval tv = {(time_t)(left / 1000), (suseconds_t)((left % 1000) * 1000)};
            event_add(&s->timer, &tv);
            s->timer_body = true;
            return;
        }
    }
    h1_arm_timer(s, idle_ms);
}

/* Stops the body's clock while berth does not read the client because the target side is
 * full (<held>), and starts it again after: a slow target must not time its client out. */
static void note_body_hold(struct bth_http_session *s, bool held)
{
    if (!body_rate_applies(s) || held == (s->xm->body_held_ms != 0))
        return;
    uint64_t t = bth_clock_mono_ms();
    if (held) {
        s->xm->body_held_ms = t != 0 ? t : 1;
    } else {
        s->xm->body_t0_ms += t - s->xm->body_held_ms;
        s->xm->body_held_ms = 0;
        if (s->state == SS_PROXYING)
            arm_exchange_timer(s); /* the deadline counts again, even if no byte comes */
    }
}

/* -1 when either end was never reached (ELB logs -1 for a phase that did not happen). */
static double seconds_between(const struct timespec *a, const struct timespec *b)
{
    if (a->tv_sec == 0 || b->tv_sec == 0)
        return -1;
    return bth_clock_seconds_between(a, b);
}

/* ---- teardown ----------------------------------------------------------------------- */

void h1_release_target(struct bth_http_session *s)
{
    if (s->target != NULL) {
        atomic_fetch_sub_explicit(&s->target->outstanding, 1, memory_order_relaxed);
        bth_target_unref(s->target);
        s->target = NULL;
    }
}

void h1_drop_upstream(struct bth_http_session *s, bool reusable)
{
    if (s->up != NULL) {
        if (s->up->grpc_status >= 0)
            s->ex.grpc_status = s->up->grpc_status;
        bth_upstream_release(s->up, reusable);
        s->up = NULL;
    }
}

/* Marks the session for closing; the entry point frees it. Idempotent. Callers: every
 * path that gives up on the client (EOF, errors, timeouts, the end of a closing answer). */
void h1_session_close(struct bth_http_session *s)
{
    if (s->closing)
        return;
    s->closing = true;
    h1_drop_upstream(s, false);
    h1_release_target(s);
}

static void session_free(struct bth_http_session *s)
{
    if (s->front != NULL) {
        s->front->gone(s); /* a stream: its connection is counted and tracked, not it */
    } else if (s->wc.ops != NULL) {
        bth_worker_conn_closed(s->listener->stats);
        bth_worker_untrack(s->w, &s->wc);
    }
    event_del(&s->timer);
    bth_conn_fini(&s->conn);
    xm_release(s);
    bth_snapshot_unref(s->snap);
    bth_free(s);
}

/* Runs at the end of every entry point. */
static void session_settle(struct bth_http_session *s)
{
    if (s->closing)
        session_free(s);
}

/* ---- client output -------------------------------------------------------------------- */

/* Writes what the client can take; on a write error the session closes. */
void h1_flush_client(struct bth_http_session *s)
{
    int rc = s->front != NULL ? s->front->write(s) : bth_conn_flush(&s->conn);
    if (rc != 0) {
        h1_session_close(s);
        return;
    }
    if (s->state == SS_CLOSING && evbuffer_get_length(s->conn.out) == 0)
        h1_session_close(s);
}

static void flush_upstream(struct bth_http_session *s)
{
    if (s->up != NULL && s->up->state == BTH_UP_ST_ACTIVE)
        bth_upstream_flush(s->up); /* errors surface as EV_READ/EOF on the upstream */
}

/* ---- access log and metrics ----------------------------------------------------------- */

static void scratch_copy(struct bth_http_session *s)
{
    const struct bth_http_head *h = &s->xm->req;
    const char *method = llhttp_method_name((llhttp_method_t)s->xm->req_parser.method);
    struct bth_span host = {0, 0}, ua = {0, 0};
    if (h->idx[BTH_HDR_HOST] >= 0)
        host = h->hdrs[h->idx[BTH_HDR_HOST]].value;
    if (h->idx[BTH_HDR_USER_AGENT] >= 0)
        ua = h->hdrs[h->idx[BTH_HDR_USER_AGENT]].value;
    s->xm->m_len = strlen(method);
    s->xm->u_len = h->url.len;
    s->xm->h_len = host.len;
    s->xm->ua_len = ua.len;
    size_t need = s->xm->m_len + s->xm->u_len + s->xm->h_len + s->xm->ua_len + 4;
    if (need > s->xm->scratch_cap) {
        char *p = bth_realloc(s->xm->scratch, need);
        if (p == NULL) {
            s->xm->m_len = s->xm->u_len = s->xm->h_len = s->xm->ua_len = 0;
            return;
        }
        s->xm->scratch = p;
        s->xm->scratch_cap = need;
    }
    char *p = s->xm->scratch;
    memcpy(p, method, s->xm->m_len);
    p[s->xm->m_len] = '\0';
    p += s->xm->m_len + 1;
    memcpy(p, bth_span_ptr(h, h->url), s->xm->u_len);
    p += s->xm->u_len + 1;
    memcpy(p, bth_span_ptr(h, host), s->xm->h_len);
    p[s->xm->h_len] = '\0';
    p += s->xm->h_len + 1;
    memcpy(p, bth_span_ptr(h, ua), s->xm->ua_len);
}

/* Counts the exchange for its listener and group (ELB's per-load-balancer and per-target-
 * group metrics). */
/* The grpc-status a gRPC call ended with, as its client read it: the target's, or the one
 * berth answered with (its own answers, DEADLINE_EXCEEDED at the deadline, UNAVAILABLE for
 * an answer that broke off); -1 for other requests, or when no status came (an HTTP/1
 * target). */
static int grpc_status_of(const struct bth_http_session *s)
{
    if (!s->ex.grpc)
        return -1;
    if (s->up != NULL && s->up->grpc_status >= 0)
        return s->up->grpc_status;
    if (s->ex.grpc_status >= 0)
        return s->ex.grpc_status;
    if (s->ex.deadline_hit)
        return BTH_GRPC_DEADLINE_EXCEEDED;
    if (s->ex.target_status < 0 && s->ex.status >= 300)
        return (int)bth_grpc_code_of_http(s->ex.status);
    if (s->xm->error_reason != NULL && s->ex.resp >= RESP_HEAD_SENT)
        return BTH_GRPC_UNAVAILABLE;
    return -1;
}

static void count_exchange(struct bth_http_session *s, int grpc)
{
    unsigned row = s->w->id;
    struct bth_stats *ls = s->listener->stats;
    if (grpc >= 0 && grpc < BTH_GRPC_CODES && s->ex.group != NULL)
        bth_stats_add(s->ex.group->stats, row, (enum bth_stat)(BTH_ST_GRPC_STATUS0 + grpc), 1);
    bth_stats_add(ls, row, BTH_ST_REQUESTS, 1);
    bth_stats_add(ls, row, BTH_ST_PROCESSED_BYTES, s->xm->rx_bytes + s->xm->tx_bytes);
    int cls = s->ex.status / 100;
    if (s->ex.target_status < 0) {
        if (cls >= 3 && cls <= 5)
            bth_stats_add(ls, row, (enum bth_stat)(BTH_ST_ELB_3XX + cls - 3), 1);
        return;
    }
    if (s->ex.group == NULL)
        return;
    struct bth_stats *gs = s->ex.group->stats;
    bth_stats_add(gs, row, BTH_ST_REQUESTS, 1);
    if (cls >= 1 && cls <= 5)
        bth_stats_add(gs, row, (enum bth_stat)(BTH_ST_TARGET_1XX + cls - 1), 1);
    if (s->xm->t_sent.tv_sec != 0 && s->xm->t_resp.tv_sec != 0) {
        double rt = seconds_between(&s->xm->t_sent, &s->xm->t_resp);
        bth_stats_observe_rt(gs, row, (uint64_t)(rt * 1e6));
    }
}

/* A failed connect, reset or broken answer: counted for the group and, for passive health
 * checking, against the target. */
static void count_connection_error(struct bth_http_session *s)
{
    if (s->target != NULL)
        bth_target_note_result(s->target, true);
    if (s->ex.group != NULL)
        bth_stats_add(s->ex.group->stats, s->w->id, BTH_ST_TARGET_CONN_ERRORS, 1);
}

void h1_log_exchange(struct bth_http_session *s)
{
    struct bth_worker *w = s->w;
    int grpc = grpc_status_of(s);
    count_exchange(s, grpc);
    struct timespec t_end;
    bth_clock_mono(&t_end);
    if (w->alog.sink == NULL || w->alog.sink->fd < 0)
        return;
    const char *tgt = s->target != NULL ? s->target->addr.text : NULL;
    const char *sc = s->xm->scratch;
    bool have = sc != NULL && s->xm->m_len > 0;
    char rule_name[16] = "default";
    if (s->ex.rule >= 0)
        snprintf(rule_name, sizeof(rule_name), "%u", s->listener->cfg->rules[s->ex.rule].priority);
    struct timeval tv;
    bth_clock_wall(&tv);
    struct bth_accesslog_entry e = {
        .type = "http",
        .time_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec,
        .client = s->client_text,
        .target = tgt,
        .request_processing_time = seconds_between(&s->xm->t_start, &s->xm->t_sent),
        .target_processing_time = seconds_between(&s->xm->t_sent, &s->xm->t_resp),
        .response_processing_time = seconds_between(&s->xm->t_resp, &t_end),
        .elb_status_code = s->ex.status,
        .target_status_code = s->ex.target_status,
        .received_bytes = s->xm->rx_bytes,
        .sent_bytes = s->xm->tx_bytes,
        .method = have ? sc : NULL,
        .scheme = s->https ? "https" : "http",
        .host = have && s->xm->h_len ? sc + s->xm->m_len + 1 + s->xm->u_len + 1 : NULL,
        .port = s->listen_port,
        .uri = have ? sc + s->xm->m_len + 1 : NULL,
        .uri_len = s->xm->u_len,
        .version = s->http2           ? "HTTP/2.0"
                   : s->client_http10 ? "HTTP/1.0"
                                      : "HTTP/1.1",
        .user_agent =
            have && s->xm->ua_len ? sc + s->xm->m_len + s->xm->u_len + s->xm->h_len + 3 : NULL,
        .user_agent_len = s->xm->ua_len,
        .target_group = s->ex.group ? s->ex.group->cfg->name : NULL,
        .request_id = s->xm->request_id[0] ? s->xm->request_id : NULL,
        .matched_rule = s->xm->m_len == 0 ? NULL : rule_name,
        .error_reason = s->xm->error_reason,
        .grpc_status = grpc,
    };
    bth_accesslog_append(&w->alog, &e);
}

/* ---- pipelining ------------------------------------------------------------------------ */

/* The exchange ended and the client's next request (pipelined) may already be buffered: it
 * is taken up from the event loop, not from here, so a run of pipelined requests berth
 * answers itself never nests calls (a stack that grew with the input) and other
 * connections get their turn in between. */
void h1_resume_client(struct bth_http_session *s)
{
    if (s->closing || evbuffer_get_length(s->conn.in) == 0)
        return;
    s->resume = true;
    event_active(&s->conn.ev, 0, 0);
}

/* Reads past the body of a request berth answered itself, then goes on with the next. */
/* ---- exchange lifecycle -------------------------------------------------------------- */

static void init_request_parser(struct bth_http_session *s)
{
    llhttp_init(&s->xm->req_parser, HTTP_REQUEST, &bth_http_head_settings);
    /* Transfer-Encoding with Content-Length: the TE frames the body (RFC 9112 6.3) and the
     * Content-Length is not forwarded (see start_request); the desync check classifies it. */
    llhttp_set_lenient_chunked_length(&s->xm->req_parser, 1);
    s->xm->req_parser.data = &s->xm->req;
}

/* Readies the exchange memory for a new request: both heads empty, both parsers fresh. */
static void xm_reset(struct bth_http_session *s)
{
    struct exchange_mem *xm = s->xm;
    bth_http_head_reset(&xm->req);
    bth_http_head_reset(&xm->resp);
    evbuffer_drain(xm->pending, evbuffer_get_length(xm->pending));
    evbuffer_drain(xm->retry_copy, evbuffer_get_length(xm->retry_copy));
    init_request_parser(s);
    llhttp_init(&xm->resp_parser, HTTP_RESPONSE, &bth_http_head_settings);
    xm->resp_parser.data = &xm->resp;
    bth_free(xm->req_view);
    xm->req_view = NULL;
    xm->request_id[0] = '\0';
    xm->body_held_ms = 0;
    xm->t_start.tv_sec = xm->t_sent.tv_sec = xm->t_resp.tv_sec = 0;
    xm->rx_bytes = xm->tx_bytes = 0;
    xm->m_len = xm->u_len = xm->h_len = xm->ua_len = 0;
    xm->error_reason = NULL;
}

/* Gives an exchange its memory, if it has none yet. Returns 0, or -1 when out of memory.
 * malloc, not calloc: the heads' arrays are written before they are read. */
static int xm_take(struct bth_http_session *s)
{
    if (s->xm != NULL)
        return 0;
    struct exchange_mem *xm = bth_malloc(sizeof(*xm));
    if (xm == NULL)
        return -1;
    xm->pending = evbuffer_new();
    xm->retry_copy = evbuffer_new();
    xm->scratch = NULL;
    xm->scratch_cap = 0;
    xm->req_view = NULL;
    if (xm->pending == NULL || xm->retry_copy == NULL) {
        if (xm->pending != NULL)
            evbuffer_free(xm->pending);
        if (xm->retry_copy != NULL)
            evbuffer_free(xm->retry_copy);
        bth_free(xm);
        return -1;
    }
    s->xm = xm;
    xm_reset(s);
    return 0;
}

/* Frees what only an exchange in progress needs; the connection goes idle or away. */
static void xm_release(struct bth_http_session *s)
{
    if (s->xm != NULL) {
        evbuffer_free(s->xm->pending);
        evbuffer_free(s->xm->retry_copy);
        bth_free(s->xm->scratch);
        bth_free(s->xm->req_view);
        bth_free(s->xm);
        s->xm = NULL;
    }
}

/* Ends an exchange: the next request (already buffered when pipelined) starts afresh, and a
 * connection with nothing buffered gives its exchange memory back while idle. */
void h1_reset_exchange(struct bth_http_session *s)
{
    s->ex = (struct exchange){.rule = -1, .target_status = -1, .grpc_status = -1};
    if (s->xm != NULL && evbuffer_get_length(s->conn.in) > 0) {
        xm_reset(s);
    } else {
        xm_release(s);
    }
    h1_set_state(s, SS_IDLE);
    h1_arm_timer(s, s->listener->cfg->idle_timeout_ms);
}

/* Both directions finished: log, return the connection to the pool, and go on with the
 * next request (possibly already buffered: pipelining). */
static void finish_exchange(struct bth_http_session *s)
{
    bool reusable = s->ex.resp_body != BODY_EOF && s->ex.req_done && s->ex.status != 101 &&
                    llhttp_should_keep_alive(&s->xm->resp_parser) && !s->ex.desync_close;
    if (s->ex.desync_close)
        s->close_after = true;
    h1_log_exchange(s);
    h1_drop_upstream(s, reusable);
    h1_release_target(s);
    if (s->close_after || !s->client_keepalive) {
        h1_set_state(s, SS_CLOSING);
        event_del(&s->timer);
        h1_flush_client(s);
        return;
    }
    h1_reset_exchange(s);
    h1_flush_client(s);
    h1_resume_client(s);
}

/* ---- forwarding bodies ----------------------------------------------------------------- */

/* Moves one message body's bytes from <src> to <dst> according to <mode>. Returns 1 when the
 * body ended, 0 when more is expected, -1 on a framing error. */
int h1_forward_body(llhttp_t *p, enum body_mode mode, uint64_t *remaining, struct evbuffer *src,
                    struct evbuffer *dst, uint64_t *count)
{
    size_t avail = evbuffer_get_length(src);
    if (mode == BODY_NONE)
        return 1;
    if (mode == BODY_LENGTH || mode == BODY_EOF) {
        size_t n = avail;
        if (mode == BODY_LENGTH && n > *remaining)
            n = (size_t)*remaining;
        if (n > 0)
            evbuffer_remove_buffer(src, dst, n);
        *count += n;
        if (mode == BODY_LENGTH) {
            *remaining -= n;
            return *remaining == 0;
        }
        return 0;
    }
    /* chunked: let llhttp find the end of the message, segment by segment */
    struct evbuffer_iovec vec[16];
    size_t consumed = 0;
    int done = 0;
    while (consumed < avail && !done) {
        struct evbuffer_ptr pos;
        evbuffer_ptr_set(src, &pos, consumed, EVBUFFER_PTR_SET);
        int nvec = evbuffer_peek(src, (ev_ssize_t)(avail - consumed), &pos, vec, 16);
        if (nvec <= 0)
            break;
        if (nvec > 16)
            nvec = 16;
        for (int i = 0; i < nvec && !done; i++) {
            size_t len = vec[i].iov_len;
            if (consumed + len > avail)
                len = avail - consumed;
            llhttp_errno_t err = llhttp_execute(p, vec[i].iov_base, len);
            if (err == HPE_OK) {
                consumed += len;
            } else if (err == HPE_PAUSED) {
                consumed += (size_t)(llhttp_get_error_pos(p) - (const char *)vec[i].iov_base);
                done = 1;
            } else {
                return -1;
            }
        }
    }
    if (mode == BODY_DECHUNK)
        evbuffer_drain(src, consumed);
    else if (consumed > 0)
        evbuffer_remove_buffer(src, dst, consumed);
    *count += consumed;
    return done;
}

/* Where request bytes go: the attached connection, or the pending buffer until one is
 * ready. */
static struct evbuffer *request_sink(struct bth_http_session *s)
{
    if (s->up != NULL && s->up->state == BTH_UP_ST_ACTIVE &&
        evbuffer_get_length(s->xm->pending) == 0)
        return s->up->conn.out;
    return s->xm->pending;
}

static void forward_request_body(struct bth_http_session *s)
{
    if (s->ex.req_done)
        return;
    struct evbuffer *dst = request_sink(s);
    if (evbuffer_get_length(dst) >= s->out_high)
        return;
    uint64_t dummy = 0;
    int r = h1_forward_body(&s->xm->req_parser, s->ex.req_body, &s->ex.req_remaining, s->conn.in,
                            dst, &dummy);
    s->xm->rx_bytes += dummy;
    if (r < 0) {
        s->close_after = true;
        h1_send_error(s, 400, "invalid request body framing");
        return;
    }
    if (r == 1)
        s->ex.req_done = true;
    /* While connecting the timer is the wait for the target, not reset by client bytes; a
     * body deadline set then gives way to it once the body is whole. */
    if (s->state != SS_CONNECTING || (s->ex.req_done && s->timer_body))
        arm_exchange_timer(s);
    flush_upstream(s);
}

/* ---- request head ---------------------------------------------------------------------- */

static void make_request_id(struct bth_http_session *s)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = bth_rand_next(&s->w->rand), b = bth_rand_next(&s->w->rand);
    for (int i = 0; i < 16; i++) {
        s->xm->request_id[i] = hex[(a >> (i * 4)) & 15];
        s->xm->request_id[16 + i] = hex[(b >> (i * 4)) & 15];
    }
    s->xm->request_id[32] = '\0';
}

/* What routing learnt about the request; pointers go into the head or <buf>. */
/* Writes the request head as berth forwards it: HTTP/1.1, hop-by-hop headers removed,
 * X-Forwarded-* set (RFC 7239's de-facto predecessors, as ALB sends them). */
static void build_request_head(struct bth_http_session *s, const struct route_info *ri,
                               struct evbuffer *out)
{
    const struct bth_http_head *h = &s->xm->req;
    const char *method = llhttp_method_name((llhttp_method_t)s->xm->req_parser.method);
    char line[1024];
    size_t n = 0;
    /* One contiguous reservation keeps this to a handful of memcpy calls. */
    size_t need = h->url.len + ri->authority_len + 64 + 256 + 8;
    if (s->ex.te_reframe)
        need += bth_http_head_te_room(h) + 24;
    for (unsigned i = 0; i < h->nhdrs; i++)
        need += h->hdrs[i].name.len + h->hdrs[i].value.len + 4;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ev_ssize_t)need, &v, 1) != 1)
        return;
    char *p = v.iov_base, *start = p;
#define PUT(src, len) (memcpy(p, (src), (len)), p += (len))
#define PUTS(lit)     PUT(lit, sizeof(lit) - 1)
    PUT(method, strlen(method));
    *p++ = ' ';
    if (ri->rewrite_target) {
        PUT(ri->fwd_path, ri->fwd_path_len);
        if (ri->has_query) {
            *p++ = '?';
            PUT(ri->query, ri->query_len);
        }
    } else {
        PUT(bth_span_ptr(h, h->url), h->url.len);
    }
    PUTS(" HTTP/1.1\r\n");
    if (ri->authority != NULL) {
        PUTS("Host: "); /* HTTP/1.0 without a Host field: the URL's authority is the one */
        PUT(ri->authority, ri->authority_len);
        PUTS("\r\n");
    }
    const struct bth_http_hdr *xff = NULL;
    for (unsigned i = 0; i < h->nhdrs; i++) {
        const struct bth_http_hdr *hd = &h->hdrs[i];
        if (hd->drop)
            continue;
        switch (hd->kind) {
        case BTH_HDR_X_FORWARDED_FOR:
            if (xff == NULL)
                xff = hd;
            continue;
        case BTH_HDR_X_FORWARDED_PROTO:
        case BTH_HDR_X_FORWARDED_PORT:
            continue;
        default:
            break;
        }
        PUT(bth_span_ptr(h, hd->name), hd->name.len);
        PUTS(": ");
        PUT(bth_span_ptr(h, hd->value), hd->value.len);
        PUTS("\r\n");
    }
    if (s->ex.te_reframe) {
        PUTS("Transfer-Encoding: ");
        p += bth_http_head_te_reframe(h, p);
        PUTS("\r\n");
    }
    if (s->ex.is_upgrade) {
        const struct bth_http_hdr *u = &h->hdrs[h->idx[BTH_HDR_UPGRADE]];
        PUTS("Upgrade: ");
        PUT(bth_span_ptr(h, u->value), u->value.len);
        PUTS("\r\nConnection: upgrade\r\n");
    }
    PUTS("X-Forwarded-For: ");
    if (xff != NULL && xff->value.len > 0) {
        PUT(bth_span_ptr(h, xff->value), xff->value.len);
        PUTS(", ");
    }
    PUT(s->client_ip, strlen(s->client_ip));
    if (s->https)
        PUTS("\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: ");
    else
        PUTS("\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: ");
    n = 0;
    for (unsigned port = s->listen_port; n == 0 || port > 0; port /= 10)
        line[sizeof(line) - 1 - n++] = (char)('0' + port % 10);
    PUT(line + sizeof(line) - n, n);
    PUTS("\r\n");
    if (h->idx[BTH_HDR_X_REQUEST_ID] < 0) {
        PUTS("X-Request-Id: ");
        PUT(s->xm->request_id, 32);
        PUTS("\r\n");
    }
    PUTS("\r\n");
#undef PUT
#undef PUTS
    v.iov_len = (size_t)(p - start);
    evbuffer_commit_space(out, &v, 1);
}

static size_t count_commas(const char *p, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += p[i] == ',';
    return c;
}

/* Bytes of the request line: up to the first header name, or the whole head if none. */
static size_t request_line_len(const struct bth_http_session *s, size_t head_len)
{
    if (s->xm->req.nhdrs > 0)
        return s->xm->req.hdrs[0].name.off;
    return head_len; /* no fields: the head is the request line (and its empty line) */
}

/* The Host rules of RFC 9112 3.2: HTTP/1.1 needs exactly one, and any Host must be a
 * valid authority. Otherwise rules could route by one Host while the target reads another.
 * Returns NULL, or why the request gets 400. */
static const char *vet_host(struct bth_http_session *s)
{
    const struct bth_http_head *h = &s->xm->req;
    if (h->nhost > 1)
        return "more than one Host header";
    if (h->nhost == 0) {
        bool http11 = s->xm->req_parser.http_major == 1 && s->xm->req_parser.http_minor >= 1;
        return http11 ? "missing Host header" : NULL;
    }
    struct bth_span v = host_value(h);
    if (!bth_uri_authority_valid(bth_span_ptr(h, v), v.len))
        return "invalid Host header";
    return NULL;
}

/* Checks what llhttp accepts but berth refuses. Returns 0, or the status to answer with
 * (and sets *<reason>). */
static int vet_request(struct bth_http_session *s, size_t head_len, const char **reason)
{
    struct bth_http_head *h = &s->xm->req;
    if (h->too_many) {
        *reason = "too many headers";
        return 431;
    }
    if (s->client_http10 && h->idx[BTH_HDR_TRANSFER_ENCODING] >= 0) {
        /* HTTP/1.0 has no Transfer-Encoding: the framing is faulty (RFC 9112 6.1). */
        *reason = "transfer-encoding in an HTTP/1.0 request";
        return 400;
    }
    if ((*reason = vet_host(s)) != NULL)
        return 400;
    if (h->idx[BTH_HDR_TRANSFER_ENCODING] >= 0 && !bth_http_head_te_chunked(h)) {
        /* Only a final chunked coding frames a request body (RFC 9112 6.1, 6.3); berth
         * decodes no other coding. */
        *reason = "unsupported transfer-encoding";
        return 501;
    }
    if (s->xm->req_parser.method == HTTP_TRACE) {
        *reason = "method not allowed";
        return 405;
    }
    if (s->xm->req.url.len > s->listener->cfg->max_request_line_bytes) {
        *reason = "request line too long";
        return 414;
    }
    if (head_len - request_line_len(s, head_len) > s->listener->cfg->max_header_bytes) {
        *reason = "request headers too large";
        return 431;
    }
    unsigned forwarded = 0;
    for (unsigned i = 0; i < h->nhdrs; i++) {
        const struct bth_http_hdr *hd = &h->hdrs[i];
        if (hd->name.len + hd->value.len + 4 > s->listener->cfg->max_header_line_bytes) {
            *reason = "request header line too long";
            return 431;
        }
        if (hd->kind == BTH_HDR_X_FORWARDED_FOR)
            forwarded += 1 + (unsigned)count_commas(bth_span_ptr(h, hd->value), hd->value.len);
    }
    /* ALB answers 463 when X-Forwarded-For already lists more than 30 addresses. */
    if (forwarded > 30) {
        *reason = "too many X-Forwarded-For addresses";
        return 463;
    }
    return 0;
}

/* ---- routing and actions ------------------------------------------------------------- */

/* The Host header's value without trailing whitespace (llhttp keeps it in the span). */
static struct bth_span host_value(const struct bth_http_head *h)
{
    struct bth_span v = h->hdrs[h->idx[BTH_HDR_HOST]].value;
    const char *p = bth_span_ptr(h, v);
    while (v.len > 0 && (p[v.len - 1] == ' ' || p[v.len - 1] == '\t'))
        v.len--;
    return v;
}

/* Reads the request target: the host rules see (an absolute-form authority wins over Host,
 * RFC 9112 3.2.2), the normalised path that is forwarded, and its decoded form for rules.
 * Returns NULL, or why the target gets 400. */
static const char *read_target(struct bth_http_session *s, struct route_info *ri)
{
    const struct bth_http_head *h = &s->xm->req;
    struct bth_uri_target ut;
    if (bth_uri_split_target(bth_span_ptr(h, h->url), h->url.len, &ut) != 0)
        return "invalid request target";
    ri->query = ut.query;
    ri->query_len = ut.query_len;
    ri->has_query = ut.has_query;
    ri->authority = ut.authority;
    ri->authority_len = ut.authority_len;
    if (ut.authority != NULL) {
        if (ut.authority_len == 0 || !bth_uri_authority_valid(ut.authority, ut.authority_len))
            return "invalid authority in the request target";
        ri->host = ut.authority;
        bth_uri_host_without_port(ut.authority, ut.authority_len, &ri->host_len);
        if (h->nhost == 1) {
            /* The Host field now reads as the authority (it lies in the same head), so
             * header rules, the access log and the target all see the one host. */
            struct bth_http_hdr *hd = &s->xm->req.hdrs[h->idx[BTH_HDR_HOST]];
            hd->value.off = (uint32_t)(ut.authority - h->base);
            hd->value.len = (uint32_t)ut.authority_len;
            ri->authority = NULL;
        }
    } else if (h->idx[BTH_HDR_HOST] >= 0) {
        struct bth_span v = host_value(h);
        ri->host = bth_span_ptr(h, v);
        bth_uri_host_without_port(ri->host, v.len, &ri->host_len);
    } else {
        ri->host = "";
        ri->host_len = 0;
    }
    /* Absolute-form is forwarded in origin-form (an empty path there means "/"), and a
     * fragment, which no request target has (RFC 9112 3.2), is not forwarded: the target
     * must not act on bytes the rules never saw. */
    ri->rewrite_target =
        ut.authority != NULL || memchr(bth_span_ptr(h, h->url), '#', h->url.len) != NULL;
    ri->fwd_path = ut.path;
    ri->fwd_path_len = ut.path_len;
    if (ut.path_len == 0) {
        ri->fwd_path = "/";
        ri->fwd_path_len = 1;
    }
    char *decoded = ri->buf;
    enum bth_path_norm mode = (enum bth_path_norm)s->listener->cfg->path_norm;
    if (ri->fwd_path[0] == '/' &&
        bth_uri_path_needs_normalizing(ri->fwd_path, ri->fwd_path_len, mode)) {
        char *norm = ri->buf + ri->cap / 2;
        int r = bth_uri_normalize_path(ri->fwd_path, ri->fwd_path_len, mode, norm, ri->cap / 2,
                                       &ri->fwd_path_len);
        if (r == BTH_URI_ABOVE_ROOT)
            return "request path climbs above the root";
        if (r != BTH_URI_OK)
            return "invalid request target";
        ri->fwd_path = norm;
        ri->rewrite_target = true;
    }
    if (bth_uri_percent_decode(ri->fwd_path, ri->fwd_path_len, decoded, ri->cap / 2,
                               &ri->path_len) != 0)
        return "invalid request target";
    ri->path = decoded;
    /* Escaped slashes can decode into dot segments ("/x/..%2F..%2Fadmin"). A target that
     * decodes them acts on another path than one that does not, and rules can match only one
     * of the two: such a path is refused. */
    if (mode != BTH_PATH_NORM_OFF && decoded[0] == '/' &&
        memchr(ri->fwd_path, '%', ri->fwd_path_len) != NULL) {
        size_t n = ri->path_len;
        if (bth_uri_remove_dot_segments(decoded, &n) != BTH_URI_OK || n != ri->path_len)
            return "escaped dot segments in the request path";
    }
    return NULL;
}

/* Matches the listener's rules. Returns the rule index or -1 (default action). */
static int route(struct bth_http_session *s, const struct route_info *ri)
{
    if (s->listener->router == NULL)
        return -1;
    const char *method = llhttp_method_name((llhttp_method_t)s->xm->req_parser.method);
    struct bth_route_input in = {
        .host = ri->host,
        .host_len = ri->host_len,
        .path = ri->path,
        .path_len = ri->path_len,
        .query = ri->query,
        .query_len = ri->query_len,
        .method = method,
        .method_len = strlen(method),
        .head = &s->xm->req,
        .src = (const struct sockaddr *)&s->peer,
    };
    return bth_router_match(s->listener->router, &in);
}

/* Appends <tmpl> to <out> with the #{...} variables of ALB redirects substituted. */
/* The final coding is chunked with parameters ("chunked;x=1"), which llhttp does not
 * read as chunked, nor may a target. berth frames the body as chunked and forwards the
 * Transfer-Encoding rewritten with a bare final "chunked" (build_request_head), so the
 * target frames it the same way. The parser is primed for that with a bare chunked head of
 * the same method; the head callbacks record nothing once the head is complete. */
static void reframe_chunked(struct bth_http_session *s)
{
    char head[96];
    const char *m = llhttp_method_name((llhttp_method_t)s->xm->req_parser.method);
    int n =
        snprintf(head, sizeof(head), "%.40s / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", m);
    for (unsigned i = 0; i < s->xm->req.nhdrs; i++)
        s->xm->req.hdrs[i].drop |= s->xm->req.hdrs[i].kind == BTH_HDR_TRANSFER_ENCODING;
    s->ex.te_reframe = true;
    init_request_parser(s);
    llhttp_execute(&s->xm->req_parser, head, (size_t)n); /* pauses at the end of the head */
}

/* The Upgrade field names h2c (any of its protocols, case-insensitively). */
static bool upgrade_is_h2c(const struct bth_http_head *h)
{
    struct bth_span v = h->hdrs[h->idx[BTH_HDR_UPGRADE]].value;
    const char *p = bth_span_ptr(h, v), *end = p + v.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *tok = p;
        while (p < end && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if (p - tok == 3 && strncasecmp(tok, "h2c", 3) == 0)
            return true;
        while (p < end && *p != ',')
            p++;
    }
    return false;
}

/* A gRPC call: its content type, and the deadline its grpc-timeout sets (a malformed one
 * is ignored, as the target will judge it too). */
static void note_grpc(struct bth_http_session *s)
{
    const struct bth_http_head *h = &s->xm->req;
    int ct = h->idx[BTH_HDR_CONTENT_TYPE], to = h->idx[BTH_HDR_GRPC_TIMEOUT];
    s->ex.grpc =
        ct >= 0 && bth_grpc_content_type(bth_span_ptr(h, h->hdrs[ct].value), h->hdrs[ct].value.len);
    uint64_t ms;
    if (s->ex.grpc && to >= 0 &&
        bth_grpc_timeout_ms(bth_span_ptr(h, h->hdrs[to].value), h->hdrs[to].value.len, &ms) == 0)
        s->ex.deadline_ms = bth_clock_mono_ms() + ms;
}

/* The head is complete: classify it, route it and start forwarding. <head_len> bytes of
 * the input are the head as received; <parsed_len>, the head as parsed (the same, or the
 * length of the mended head in xm->req_view). */
static void start_request(struct bth_http_session *s, size_t head_len, size_t parsed_len)
{
    struct bth_http_head *h = &s->xm->req;
    bth_http_head_finish(h);
    bth_clock_mono(&s->xm->t_start);
    if (s->snap != s->w->snap && !s->wl->retired) {
        /* Each request routes on the newest snapshot; the connection's limits and
         * timeouts come from the listener it was accepted on, found at the same index. */
        bth_snapshot_ref(s->w->snap);
        bth_snapshot_unref(s->snap);
        s->snap = s->w->snap;
        s->listener = &s->snap->listeners[s->wl->index];
    }
    s->client_http10 = s->xm->req_parser.http_major == 1 && s->xm->req_parser.http_minor == 0;
    s->client_keepalive = llhttp_should_keep_alive(&s->xm->req_parser) != 0;
    s->ex.is_head_method = s->xm->req_parser.method == HTTP_HEAD;
    s->xm->rx_bytes = head_len;
    if (h->idx[BTH_HDR_X_REQUEST_ID] >= 0) {
        struct bth_span v = h->hdrs[h->idx[BTH_HDR_X_REQUEST_ID]].value;
        size_t n = v.len < 32 ? v.len : 32;
        memcpy(s->xm->request_id, bth_span_ptr(h, v), n);
        s->xm->request_id[n] = '\0';
    } else {
        make_request_id(s);
    }
    if (s->w->alog.sink != NULL && s->w->alog.sink->fd >= 0)
        scratch_copy(s); /* only the access log reads the copies */
    const char *reason = NULL;
    int status = vet_request(s, parsed_len, &reason);
    if (status != 0) {
        evbuffer_drain(s->conn.in, head_len);
        h1_send_error(s, status, reason);
        return;
    }
    note_grpc(s);
    s->ex.is_upgrade = s->xm->req_parser.upgrade && h->conn_upgrade && h->idx[BTH_HDR_UPGRADE] >= 0;
    if (s->ex.is_upgrade && upgrade_is_h2c(h)) {
        /* berth does not offer the h2c upgrade (nor does ALB), and must not pass it on: a
         * target switched to h2c behind berth would take requests no rule ever saw (h2c
         * smuggling). The request goes on as plain HTTP/1.1 without its hop-by-hop Upgrade. */
        s->ex.is_upgrade = false;
        h->hdrs[h->idx[BTH_HDR_UPGRADE]].drop = true;
    }
    if (h->idx[BTH_HDR_TRANSFER_ENCODING] >= 0) { /* final coding chunked: vet_request */
        /* A sender MUST remove a received Content-Length when Transfer-Encoding is present
         * (RFC 9112 6.3): the target must frame the body the way berth did. */
        for (unsigned i = 0; i < h->nhdrs; i++) {
            if (h->hdrs[i].kind == BTH_HDR_CONTENT_LENGTH)
                h->hdrs[i].drop = true;
        }
        if (!(s->xm->req_parser.flags & F_CHUNKED))
            reframe_chunked(s);
        s->ex.req_body = BODY_CHUNKED;
        s->ex.req_has_body = true;
        llhttp_resume(&s->xm->req_parser); /* it finds the end of the chunked body */
    } else if ((s->xm->req_parser.flags & F_CONTENT_LENGTH) &&
               s->xm->req_parser.content_length > 0) {
        s->ex.req_body = BODY_LENGTH;
        s->ex.req_remaining = s->xm->req_parser.content_length;
        s->ex.req_has_body = true;
    } else {
        s->ex.req_body = BODY_NONE;
        s->ex.req_done = true;
    }
    if (s->ex.req_has_body) {
        /* The body's clock starts with the head (t_start, same monotonic clock). */
        s->xm->body_t0_ms =
            (uint64_t)s->xm->t_start.tv_sec * 1000 + (uint64_t)s->xm->t_start.tv_nsec / 1000000;
        s->xm->body_rx0 = s->xm->rx_bytes;
    }

    char pathbuf[2048];
    struct route_info ri;
    ri.cap = 2 * ((size_t)h->url.len + 2);
    ri.buf = ri.cap > sizeof(pathbuf) ? bth_malloc(ri.cap) : pathbuf;
    if (ri.buf == NULL) {
        h1_session_close(s); /* out of memory: only this connection pays */
        return;
    }
    const char *bad_target = read_target(s, &ri);
    if (bad_target == NULL && h->nhost == 1 && bth_span_ptr(h, h->url)[0] != '/' &&
        s->w->alog.sink != NULL && s->w->alog.sink->fd >= 0)
        scratch_copy(s); /* absolute-form: the log's host is the authority now */
    if (bad_target != NULL) {
        if (ri.buf != pathbuf)
            bth_free(ri.buf);
        evbuffer_drain(s->conn.in, head_len);
        s->close_after = true;
        h1_send_error(s, 400, bad_target);
        return;
    }
    int rule = route(s, &ri);
    s->ex.rule = rule;
    const struct bth_snap_action *act =
        rule >= 0 ? &s->listener->rule_actions[rule] : &s->listener->default_action;
    const struct bth_cfg_action *ac = act->cfg;
    if (ac->type == BTH_ACTION_REDIRECT) {
        h1_send_redirect(s, ac, &ri, head_len);
    } else if (ac->type == BTH_ACTION_FIXED_RESPONSE) {
        evbuffer_drain(s->conn.in, head_len);
        const char *body = ac->fixed_body ? ac->fixed_body : "";
        h1_send_answer(s, ac->fixed_status,
                       ac->fixed_content_type ? ac->fixed_content_type : "text/plain", body,
                       strlen(body), NULL, NULL);
    } else {
        forward_request(s, act, &ri, head_len);
    }
    if (ri.buf != pathbuf)
        bth_free(ri.buf);
}

/* Sends the request of a forward action on: picks the group and a target and writes the
 * head as berth re-frames it; the body follows as it arrives. */
static void forward_request(struct bth_http_session *s, const struct bth_snap_action *act,
                            const struct route_info *ri, size_t head_len)
{
    s->ex.group = h1_pick_group(s, act);
    if (s->ex.group == NULL) {
        evbuffer_drain(s->conn.in, head_len);
        h1_send_error(s, 503, "no target group");
        return;
    }
    if (s->ex.group->cfg->protocol_version == BTH_PV_GRPC &&
        (!s->ex.grpc || s->xm->req_parser.method != HTTP_POST)) {
        /* as ELB: a GRPC group takes gRPC calls only */
        evbuffer_drain(s->conn.in, head_len);
        h1_send_error(s, 464, "not a gRPC request");
        return;
    }
    /* Cookies are read from the head, so before it is drained. */
    if (s->ex.group->cfg->stickiness == BTH_STICKY_LB_COOKIE ||
        s->ex.group->cfg->stickiness == BTH_STICKY_APP_COOKIE)
        s->ex.sticky_pick = h1_sticky_target(s);
    build_request_head(s, ri, s->xm->pending);
    evbuffer_drain(s->conn.in, head_len);
    h1_set_state(s, SS_CONNECTING);
    h1_arm_timer(s, target_wait_ms(s));
    start_exchange_on_target(s);
    /* Unless it answered already (503, 502): then the exchange is over, or closing. */
    if (!s->closing && !s->ex.req_done && (s->state == SS_CONNECTING || s->state == SS_PROXYING)) {
        forward_request_body(s);
        /* Still connecting with the body under way: its deadline may come first. */
        if (!s->closing && s->state == SS_CONNECTING && body_rate_applies(s))
            arm_exchange_timer(s);
    }
}

/* A connection to <t> for the exchange (<fresh>: not a pooled one): a stream on an HTTP/2
 * connection for HTTP2 and GRPC groups, else an HTTP/1.1 connection. */
static struct bth_upstream *acquire_upstream(struct bth_http_session *s, struct bth_target *t,
                                             bool fresh)
{
    if (s->ex.group->cfg->protocol_version != BTH_PV_HTTP1)
        return bth_h2_upstream_acquire(s->w, t, fresh, s->ex.group->tls, on_upstream_event, s);
    return bth_upstream_acquire(s->w, t, fresh, s->ex.group->tls, on_upstream_event, s);
}

/* Picks a target not tried yet and attaches a connection; answers 502/503 when none is
 * left. */
static void start_exchange_on_target(struct bth_http_session *s)
{
    struct bth_target *sticky = s->ex.ntried == 0 ? s->ex.sticky_pick : NULL;
    s->ex.sticky_pick = NULL;
    for (;;) {
        struct bth_target *t = sticky;
        sticky = NULL;
        if (t == NULL)
            t = bth_lb_pick_target(s->w->id, &s->w->rand, s->ex.group, s->xm->tried, s->ex.ntried);
        if (t == NULL) {
            if (s->ex.ntried == 0)
                h1_send_error(s, 503, "no healthy target");
            else
                h1_send_error(s, 502, "target connection failed");
            return;
        }
        if (s->ex.ntried < MAX_TRIES)
            s->xm->tried[s->ex.ntried++] = t;
        bth_target_ref(t);
        s->target = t;
        atomic_fetch_add_explicit(&t->outstanding, 1, memory_order_relaxed);
        s->up = acquire_upstream(s, t, false);
        if (s->up != NULL)
            break;
        int err = errno;
        bth_log(BTH_LOG_INFO, "#%llu connect() to %s failed: %s", (unsigned long long)s->id,
                t->addr.text, strerror(err));
        if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
            /* berth is short of descriptors or memory: no target is to blame (passive
             * health must not eject it) and another target would fail the same way. */
            h1_release_target(s);
            h1_send_error(s, 503, "out of descriptors or memory");
            return;
        }
        count_connection_error(s);
        h1_release_target(s);
        if (s->ex.ntried >= MAX_TRIES) {
            h1_send_error(s, 502, "target connection failed");
            return;
        }
    }
    s->ex.up_reused = s->up->state == BTH_UP_ST_ACTIVE;
    if (s->ex.up_reused) {
        /* A pooled connection may turn out closed by the target: keep the head of a
         * bodiless request to replay it on a fresh connection. */
        if (!s->ex.req_has_body) {
            size_t n = evbuffer_get_length(s->xm->pending);
            evbuffer_add(s->xm->retry_copy, evbuffer_pullup(s->xm->pending, (ev_ssize_t)n), n);
        }
        evbuffer_add_buffer(s->up->conn.out, s->xm->pending);
        bth_clock_mono(&s->xm->t_sent);
        h1_set_state(s, SS_PROXYING);
        flush_upstream(s);
    }
}

static void count_tier(struct bth_http_session *s, enum bth_desync_tier tier)
{
    if (tier != BTH_DESYNC_COMPLIANT)
        bth_stats_add(s->listener->stats, s->w->id,
                      (enum bth_stat)(BTH_ST_DESYNC_ACCEPTABLE + tier - BTH_DESYNC_ACCEPTABLE), 1);
}

/* A head llhttp refused is blocked whatever the mode; it is still classified (when whole)
 * so the per-class metrics count what clients sent. */
static void count_refused(struct bth_http_session *s, const char *buf, size_t len)
{
    size_t head = bth_desync_head_length(buf, len);
    if (head > 0) {
        struct bth_desync_verdict v;
        bth_desync_classify(buf, head, &v);
        count_tier(s, v.tier);
    }
    bth_stats_add(s->listener->stats, s->w->id, BTH_ST_DESYNC_BLOCKED, 1);
}

/* Why berth cannot forward this head as it reads it, or NULL. Loose llhttp ends a head at
 * "\r\n\r" and any byte; the bytes after it would become a second request. Such heads get
 * 400 in every mode, monitor included: forwarding them would forward something else. */
static const char *unframeable(const char *head, size_t len)
{
    if (len < 2 || head[len - 1] != '\n')
        return "request head does not end with an empty line";
    return NULL;
}

/* ELB's desync mitigation: classifies the raw head and applies the listener's mode.
 * Returns 0 to go on, -1 when the request was refused (400, connection closed). An ambiguous
 * request in defensive mode goes through, but neither connection is reused afterwards. */
static int desync_check(struct bth_http_session *s, const char *head, size_t len)
{
    struct bth_desync_verdict v;
    bth_desync_classify(head, len, &v);
    const char *why = unframeable(head, len);
    if (v.tier == BTH_DESYNC_COMPLIANT && why == NULL)
        return 0;
    count_tier(s, v.tier);
    int mode = s->listener->cfg->desync_mode;
    bool refuse = why != NULL || (mode == BTH_DESYNC_MODE_STRICTEST) ||
                  (mode == BTH_DESYNC_MODE_DEFENSIVE && v.tier == BTH_DESYNC_SEVERE);
    if (refuse) {
        bth_log(BTH_LOG_INFO, "#%llu request from %s refused: desync %s (%s)",
                (unsigned long long)s->id, s->client_text, bth_desync_tier_name(v.tier),
                why != NULL ? why : v.reason);
        bth_stats_add(s->listener->stats, s->w->id, BTH_ST_DESYNC_BLOCKED, 1);
        s->ex.req_done = false;
        s->close_after = true;
        evbuffer_drain(s->conn.in, len);
        h1_send_error(s, 400, v.reason);
        return -1;
    }
    if (mode == BTH_DESYNC_MODE_DEFENSIVE && v.tier == BTH_DESYNC_AMBIGUOUS) {
        s->ex.desync_close = true; /* the target connection is not reused either */
        s->close_after = true;     /* and the client is told so in the response */
    }
    return 0;
}

/* Whether <buf> (<n> bytes) starts like a request line: an upper-case method, then a space
 * (or nothing yet). Only such bytes are worth waiting on once llhttp has refused them. */
static bool looks_like_request(const char *buf, size_t n)
{
    size_t i = 0;
    while (i < n && ((buf[i] >= 'A' && buf[i] <= 'Z') || buf[i] == '-' || buf[i] == '_'))
        i++;
    return i > 0 && (i == n || buf[i] == ' ');
}

/* llhttp refused the head at the start of <buf> (<avail> bytes). Where ELB forwards it (the
 * classifier says Compliant or Acceptable, the mode is not strictest) and http_tolerate can
 * mend it, berth parses and forwards the mended head instead (README, "Desync mitigation").
 * Returns 1 when the request was handled, 0 to wait for the rest of the head, -1 to refuse
 * it. */
static int tolerate_head(struct bth_http_session *s, const char *buf, size_t avail)
{
    const struct bth_cfg_listener *lc = s->listener->cfg;
    size_t head_len = bth_desync_head_length(buf, avail);
    if (head_len == 0) {
        bool within = avail <= lc->max_request_line_bytes + lc->max_header_bytes + 4;
        return within && looks_like_request(buf, avail) ? 0 : -1;
    }
    struct bth_desync_verdict v;
    bth_desync_classify(buf, head_len, &v);
    bool strictest = lc->desync_mode == BTH_DESYNC_MODE_STRICTEST;
    if (v.tier > (strictest ? BTH_DESYNC_COMPLIANT : BTH_DESYNC_ACCEPTABLE))
        return -1;
    char *view = bth_malloc(BTH_HTTP_TOLERATE_ROOM(head_len));
    size_t vlen = view != NULL ? bth_http_tolerate_head(buf, head_len, view) : 0;
    if (vlen == 0) {
        bth_free(view);
        return -1;
    }
    bth_http_head_reset(&s->xm->req);
    init_request_parser(s);
    s->xm->req.base = view;
    s->xm->req_view = view;
    llhttp_errno_t err = llhttp_execute(&s->xm->req_parser, view, vlen);
    if (err != HPE_PAUSED || llhttp_get_error_pos(&s->xm->req_parser) != view + vlen)
        return -1; /* the view is freed with the exchange */
    s->ex.is_head_method = llhttp_get_method(&s->xm->req_parser) == HTTP_HEAD;
    bth_log(BTH_LOG_DEBUG, "#%llu request from %s mended (desync %s: %s)",
            (unsigned long long)s->id, s->client_text, bth_desync_tier_name(v.tier), v.reason);
    if (desync_check(s, buf, head_len) == 0)
        start_request(s, head_len, vlen);
    return 1;
}

/* Reads and handles the request head; returns once it is incomplete or handled. */
static void parse_request_head(struct bth_http_session *s)
{
    size_t len = evbuffer_get_length(s->conn.in);
    if (len == 0 || len == s->ex.req_parsed)
        return;
    if (s->state == SS_IDLE) {
        if (xm_take(s) != 0) {
            h1_session_close(s); /* out of memory: only this connection pays */
            return;
        }
        h1_set_state(s, SS_HEAD);
        h1_arm_timer(s, s->listener->cfg->header_timeout_ms);
    }
    const struct bth_cfg_listener *lc = s->listener->cfg;
    size_t limit = lc->max_request_line_bytes + lc->max_header_bytes + 4;
    size_t feed = len > limit + 1 ? limit + 1 : len;
    const char *base = (const char *)evbuffer_pullup(s->conn.in, (ev_ssize_t)feed);
    if (base == NULL) {
        h1_session_close(s);
        return;
    }
    s->xm->req.base = base;
    llhttp_errno_t err =
        llhttp_execute(&s->xm->req_parser, base + s->ex.req_parsed, feed - s->ex.req_parsed);
    if (err == HPE_PAUSED) {
        size_t head_len = (size_t)(llhttp_get_error_pos(&s->xm->req_parser) - base);
        s->ex.is_head_method = llhttp_get_method(&s->xm->req_parser) == HTTP_HEAD; /* for a 400 */
        /* An HTTP/2 stream's head is berth's own HTTP/1.1, written from fields nghttp2 has
         * validated, with the body framed by berth: there is no framing to be ambiguous. */
        if (s->front == NULL && desync_check(s, base, head_len) != 0)
            return;
        start_request(s, head_len, head_len);
        return;
    }
    if (err != HPE_OK) {
        int t = tolerate_head(s, base, feed);
        if (t > 0)
            return;
        if (t == 0) {
            s->ex.req_parsed = feed; /* wait for the rest of the head */
            return;
        }
        bth_log(BTH_LOG_INFO, "#%llu bad request from %s: %s", (unsigned long long)s->id,
                s->client_text, llhttp_get_error_reason(&s->xm->req_parser));
        count_refused(s, base, feed);
        s->ex.req_done = false;
        /* No body on the 400 when the method read in this head is HEAD. */
        s->ex.is_head_method =
            s->xm->req.url.len > 0 && llhttp_get_method(&s->xm->req_parser) == HTTP_HEAD;
        h1_send_error(s, 400, "malformed request");
        return;
    }
    s->ex.req_parsed = feed;
    /* Incomplete: enforce the limits on what is buffered so far. */
    bool line_done = s->xm->req.nhdrs > 0;
    if (s->xm->req.url.len > lc->max_request_line_bytes ||
        (s->xm->req.nhdrs == 0 && feed > lc->max_request_line_bytes + 16)) {
        h1_send_error(s, 414, "request line too long");
        return;
    }
    if (feed > limit || (line_done && feed - request_line_len(s, feed) > lc->max_header_bytes)) {
        h1_send_error(s, line_done ? 431 : 414, "request head too large");
        return;
    }
}

/* ---- client side --------------------------------------------------------------------- */

static void process_client(struct bth_http_session *s)
{
    switch (s->state) {
    case SS_IDLE:
    case SS_HEAD:
        parse_request_head(s);
        break;
    case SS_CONNECTING:
    case SS_PROXYING:
        forward_request_body(s);
        break;
    case SS_TUNNEL:
        if (s->up != NULL) {
            s->xm->rx_bytes += evbuffer_get_length(s->conn.in);
            evbuffer_add_buffer(s->up->conn.out, s->conn.in);
            flush_upstream(s);
        }
        break;
    case SS_CLOSING:
        evbuffer_drain(s->conn.in, evbuffer_get_length(s->conn.in));
        break;
    case SS_DISCARD:
        h1_discard_body(s);
        break;
    }
}

/* How much the client side may buffer before we stop reading it. */
static size_t client_read_limit(struct bth_http_session *s)
{
    if (s->state == SS_IDLE || s->state == SS_HEAD) {
        const struct bth_cfg_listener *lc = s->listener->cfg;
        return lc->max_request_line_bytes + lc->max_header_bytes + 8;
    }
    if (s->state == SS_CLOSING || s->state == SS_DISCARD)
        return READ_BUDGET;
    struct evbuffer *dst = request_sink(s);
    if (evbuffer_get_length(dst) >= s->out_high)
        return 0;
    return READ_BUDGET;
}

/* Reads the client and moves its bytes on, until the socket is drained or the target side
 * is full (backpressure: read_pending stays set and the target's drained-write event resumes
 * us). A busy connection yields after a few rounds so one client cannot starve others. */
static void client_readable(struct bth_http_session *s)
{
    for (int round = 0; round < 16; round++) {
        size_t limit = client_read_limit(s);
        note_body_hold(s, limit == 0);
        if (limit == 0 || evbuffer_get_length(s->conn.in) >= limit) {
            s->conn.read_pending = true;
            size_t before = evbuffer_get_length(s->conn.in);
            process_client(s); /* move what is buffered; it may make room */
            if (s->closing || evbuffer_get_length(s->conn.in) == before)
                return;
            continue;
        }
        if (s->front != NULL)
            s->front->read(s, limit);
        else
            bth_conn_read(&s->conn, limit);
        if (s->conn.error != 0) {
            h1_session_close(s);
            return;
        }
        if (evbuffer_get_length(s->conn.in) > 0)
            process_client(s);
        if (s->closing)
            return;
        if (s->conn.eof) {
            /* The client half-closed. Without a request in progress there is nothing to
             * do; a request still arriving was cut short; after a whole request we answer
             * first. */
            if (s->state == SS_IDLE || s->state == SS_HEAD || s->state == SS_CLOSING ||
                s->state == SS_TUNNEL || s->state == SS_DISCARD || !s->ex.req_done)
                h1_session_close(s);
            else
                s->close_after = true;
            return;
        }
        if (!s->conn.read_pending)
            return; /* drained: the next edge brings more */
    }
    event_active(&s->conn.ev, EV_READ, 1);
}

static void on_client_io(evutil_socket_t fd, short what, void *arg)
{
    struct bth_http_session *s = arg;
    if (s->resume) {
        s->resume = false; /* resume_client: a request is waiting in the input buffer */
        if (!s->closing && s->state == SS_IDLE)
            process_client(s);
    }
    bth_conn_note_event(&s->conn, what);
    if (s->conn.ssl != NULL)
        what |= EV_READ | EV_WRITE; /* TLS reads may need the socket writable and back */
    if (what & EV_CLOSED)
        what |= EV_READ;
    if (what & EV_WRITE) {
        h1_flush_client(s);
        /* The client drained: resume reading the target if we had stopped. */
        if (!s->closing && s->up != NULL && s->up->conn.read_pending &&
            evbuffer_get_length(s->conn.out) < s->out_high)
            process_response(s);
    }
    if ((what & EV_READ) && !s->closing)
        client_readable(s);
    session_settle(s);
}

/* The request body fell behind min_body_rate. The client gets 408 unless the target's answer
 * has started; both connections close either way, and the target, which saw a truncated
 * body, sees its client go away (its connection is not pooled). */
static void body_timed_out(struct bth_http_session *s)
{
    const struct bth_cfg_listener *lc = s->listener->cfg;
    bth_stats_add(s->listener->stats, s->w->id, BTH_ST_BODY_TIMEOUTS, 1);
    bth_log(BTH_LOG_INFO,
            "#%llu request body from %s too slow: %llu bytes in %llums (body_timeout %llums, "
            "min_body_rate %u)",
            (unsigned long long)s->id, s->client_text,
            (unsigned long long)(s->xm->rx_bytes - s->xm->body_rx0),
            (unsigned long long)(bth_clock_mono_ms() - s->xm->body_t0_ms),
            (unsigned long long)lc->body_timeout_ms, lc->min_body_rate);
    s->close_after = true;
    h1_send_error(s, 408, "request body timeout");
}

/* The timer set for the body's deadline fired. Bytes since may have moved the deadline out
 * (and libevent's coarse clock may fire a little early): then it is set again. */
static void on_body_deadline(struct bth_http_session *s)
{
    if (body_rate_applies(s) && s->xm->body_held_ms == 0 && body_ms_left(s) == 0)
        body_timed_out(s);
    else
        arm_exchange_timer(s);
}

/* libevent may fire a timer a little early (its cached clock): a deadline this close has
 * come. */
#define DEADLINE_SLACK_MS 20

/* A gRPC call's grpc-timeout ran out: the target's stream is cancelled (the upstream is
 * dropped), and the client, if its answer has not started, reads DEADLINE_EXCEEDED. */
static void grpc_deadline(struct bth_http_session *s)
{
    bth_log(BTH_LOG_DEBUG, "#%llu gRPC deadline passed", (unsigned long long)s->id);
    if (s->ex.resp != RESP_WAITING) {
        h1_session_close(s);
        return;
    }
    s->ex.deadline_hit = true;
    static const char extra[] = "Grpc-Status: 4\r\nGrpc-Message: berth: deadline exceeded\r\n";
    static const char body[] = "504 Gateway Timeout: gRPC deadline exceeded\n";
    h1_send_answer(s, 504, "text/plain", body, sizeof(body) - 1, extra, "grpc deadline exceeded");
}

/* The target's deregistration delay ended with this exchange still on it: as ELB, it ends
 * (a 502 when no answer has started, else the connection closes; a tunnel closes). */
static void end_expired_exchange(struct bth_http_session *s)
{
    bth_log(BTH_LOG_INFO, "#%llu target %s: deregistration delay ended, exchange cut",
            (unsigned long long)s->id, s->target->addr.text);
    if (s->state == SS_TUNNEL || s->ex.resp != RESP_WAITING) {
        if (s->state != SS_TUNNEL)
            s->xm->error_reason = "deregistration delay ended";
        h1_session_close(s);
        return;
    }
    s->close_after = true;
    h1_send_error(s, 502, "deregistration delay ended");
}

/* The exchange in progress runs on a target whose deregistration delay ended. */
static bool on_expired_target(const struct bth_http_session *s)
{
    return s->target != NULL && atomic_load_explicit(&s->target->expired, memory_order_relaxed) &&
           (s->state == SS_CONNECTING || s->state == SS_PROXYING || s->state == SS_TUNNEL);
}

bool h1_exchange_expired(struct bth_http_session *s)
{
    if (!on_expired_target(s))
        return false;
    /* ended from the session's own timer callback, never from the caller's stack */
    s->expire = true;
    event_active(&s->timer, EV_TIMEOUT, 1);
    return true;
}

static void session_sweep(struct bth_worker_conn *c, uint64_t now_ms)
{
    (void)now_ms;
    h1_exchange_expired(bth_list_entry(c, struct bth_http_session, wc));
}

static void on_session_timer(evutil_socket_t fd, short what, void *arg)
{
    struct bth_http_session *s = arg;
    if (s->expire) {
        /* activated by h1_exchange_expired: the exchange may have ended meanwhile */
        s->expire = false;
        if (on_expired_target(s))
            end_expired_exchange(s);
        session_settle(s);
        return;
    }
    switch (s->state) {
    case SS_IDLE:
        h1_session_close(s);
        break;
    case SS_HEAD:
        bth_stats_add(s->listener->stats, s->w->id, BTH_ST_HEADER_TIMEOUTS, 1);
        bth_log(BTH_LOG_DEBUG, "#%llu request head from %s not whole after header_timeout",
                (unsigned long long)s->id, s->client_text);
        s->ex.req_done = false;
        h1_send_error(s, 408, "request header timeout");
        break;
    case SS_CONNECTING:
    case SS_PROXYING:
        if (s->timer_body) {
            on_body_deadline(s);
        } else if (s->ex.deadline_ms != 0 &&
                   bth_clock_mono_ms() + DEADLINE_SLACK_MS >= s->ex.deadline_ms) {
            grpc_deadline(s);
        } else if (s->ex.resp == RESP_WAITING) {
            bth_log(BTH_LOG_INFO, "#%llu target %s did not answer in time",
                    (unsigned long long)s->id, s->target ? s->target->addr.text : "-");
            h1_send_error(s, 504, "target timeout");
        } else {
            h1_session_close(s);
        }
        break;
    case SS_TUNNEL:
    case SS_CLOSING:
    case SS_DISCARD:
        h1_session_close(s);
        break;
    }
    session_settle(s);
}

/* ---- upstream side ------------------------------------------------------------------- */

/* The target connection broke before any response byte: retry where that is safe. */
static void upstream_failed_early(struct bth_http_session *s, const char *why)
{
    bool safe_retry = s->ex.up_reused && !s->ex.req_has_body && !s->ex.retried_fresh &&
                      evbuffer_get_length(s->xm->retry_copy) > 0;
    h1_drop_upstream(s, false);
    if (safe_retry) {
        /* A pooled connection the target had already closed: replay on a fresh one. */
        s->ex.retried_fresh = true;
        evbuffer_drain(s->xm->pending, evbuffer_get_length(s->xm->pending));
        evbuffer_add_buffer(s->xm->pending, s->xm->retry_copy);
        s->up = acquire_upstream(s, s->target, true);
        if (s->up != NULL) {
            s->ex.up_reused = false;
            h1_set_state(s, SS_CONNECTING);
            return;
        }
    }
    count_connection_error(s);
    bth_log(BTH_LOG_INFO, "#%llu target %s: %s", (unsigned long long)s->id,
            s->target ? s->target->addr.text : "-", why);
    h1_send_error(s, 502, why);
}

static void upstream_connect_done(struct bth_http_session *s)
{
    int rc = bth_upstream_connected(s->up);
    if (rc != 0) {
        bth_log(BTH_LOG_INFO, "#%llu connect() to %s failed: %s", (unsigned long long)s->id,
                s->target->addr.text, strerror(-rc));
        count_connection_error(s);
        h1_drop_upstream(s, false);
        h1_release_target(s);
        /* Nothing was sent: another target may take the request (the pending buffer
         * still holds it). */
        start_exchange_on_target(s);
        return;
    }
    evbuffer_add_buffer(s->up->conn.out, s->xm->pending);
    bth_clock_mono(&s->xm->t_sent);
    h1_set_state(s, SS_PROXYING);
    flush_upstream(s);
    if (!s->ex.req_done) {
        forward_request_body(s);
        if (!s->closing && s->conn.read_pending)
            client_readable(s);
    }
}

/* With app_cookie stickiness: notes whether the target set the application's cookie. */
static void note_app_cookie(struct bth_http_session *s)
{
    const struct bth_http_head *h = &s->xm->resp;
    const struct bth_cfg_target_group *gc = s->ex.group ? s->ex.group->cfg : NULL;
    if (gc == NULL || gc->stickiness != BTH_STICKY_APP_COOKIE)
        return;
    size_t cl = strlen(gc->stickiness_cookie);
    for (unsigned i = 0; i < h->nhdrs; i++) {
        const struct bth_http_hdr *hd = &h->hdrs[i];
        const char *val = bth_span_ptr(h, hd->value);
        if (hd->kind == BTH_HDR_SET_COOKIE && hd->value.len > cl && val[cl] == '=' &&
            memcmp(val, gc->stickiness_cookie, cl) == 0)
            s->ex.resp_sets_app_cookie = true;
    }
}

/* Hands the answer head to a front that takes it as it is (HTTP/2), with berth's
 * stickiness cookies as extra field lines. Returns 0, or -1 when the client is gone. */
static int give_front_head(struct bth_http_session *s)
{
    note_app_cookie(s);
    struct evbuffer *extra = NULL;
    if (s->ex.set_tg_cookie || s->ex.set_target_cookie || s->ex.resp_sets_app_cookie) {
        if ((extra = evbuffer_new()) == NULL)
            return -1;
        h1_add_sticky_cookies(s, extra);
    }
    ssize_t n =
        s->front->head(s, s->ex.status, &s->xm->resp, extra, s->ex.resp_body, s->ex.resp_remaining);
    if (extra != NULL)
        evbuffer_free(extra);
    if (n < 0)
        return -1;
    s->xm->tx_bytes += (uint64_t)n;
    return 0;
}

/* Builds the client's response head from the target's: the status line and the target's
 * fields in one reservation (a few memcpy, as build_request_head), then what berth adds. */
static void build_response_head(struct bth_http_session *s, struct evbuffer *out)
{
    const struct bth_http_head *h = &s->xm->resp;
    size_t need = 13 + h->reason.len + 2 + 2;
    for (unsigned i = 0; i < h->nhdrs; i++)
        need += h->hdrs[i].name.len + h->hdrs[i].value.len + 4;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ev_ssize_t)need, &v, 1) != 1)
        return;
    char *p = v.iov_base, *start = p;
    memcpy(p, "HTTP/1.1 000 ", 13);
    p[9] = (char)('0' + s->ex.status / 100 % 10);
    p[10] = (char)('0' + s->ex.status / 10 % 10);
    p[11] = (char)('0' + s->ex.status % 10);
    p += 13;
    memcpy(p, bth_span_ptr(h, h->reason), h->reason.len);
    p += h->reason.len;
    *p++ = '\r';
    *p++ = '\n';
    for (unsigned i = 0; i < h->nhdrs; i++) {
        const struct bth_http_hdr *hd = &h->hdrs[i];
        if (hd->drop && !(s->ex.status == 101 && hd->kind == BTH_HDR_UPGRADE))
            continue;
        if (hd->kind == BTH_HDR_TRANSFER_ENCODING && s->ex.resp_body == BODY_DECHUNK)
            continue;
        memcpy(p, bth_span_ptr(h, hd->name), hd->name.len);
        p += hd->name.len;
        *p++ = ':';
        *p++ = ' ';
        memcpy(p, bth_span_ptr(h, hd->value), hd->value.len);
        p += hd->value.len;
        *p++ = '\r';
        *p++ = '\n';
    }
    v.iov_len = (size_t)(p - start);
    evbuffer_commit_space(out, &v, 1);
    note_app_cookie(s);
    h1_add_sticky_cookies(s, out);
    if (s->ex.status == 101)
        evbuffer_add(out, "Connection: upgrade\r\n\r\n", 23);
    else if (s->close_after || !s->client_keepalive)
        evbuffer_add(out, "Connection: close\r\n\r\n", 21);
    else if (s->client_http10)
        evbuffer_add(out, "Connection: keep-alive\r\n\r\n", 26);
    else
        evbuffer_add(out, "\r\n", 2);
}

/* Parses the target's head. Returns 1 when a final head was handled, 0 when more bytes are
 * needed, -1 when the session was answered or closed. */
static int parse_response_head(struct bth_http_session *s)
{
    struct evbuffer *in = s->up->conn.in;
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == s->ex.resp_parsed)
            return 0;
        const char *base = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
        s->xm->resp.base = base;
        llhttp_errno_t err =
            llhttp_execute(&s->xm->resp_parser, base + s->ex.resp_parsed, len - s->ex.resp_parsed);
        if (err == HPE_OK) {
            s->ex.resp_parsed = len;
            if (len > s->listener->cfg->max_response_header_bytes) {
                s->ex.up_reused = false; /* the target did answer: no replay */
                upstream_failed_early(s, "response head too large");
                return -1;
            }
            return 0;
        }
        if (err != HPE_PAUSED) {
            bth_log(BTH_LOG_INFO, "#%llu malformed response from %s: %s", (unsigned long long)s->id,
                    s->target->addr.text, llhttp_get_error_reason(&s->xm->resp_parser));
            s->ex.up_reused = false; /* no retry: the target did answer */
            upstream_failed_early(s, "malformed response");
            return -1;
        }
        size_t head_len = (size_t)(llhttp_get_error_pos(&s->xm->resp_parser) - base);
        int code = s->xm->resp_parser.status_code;
        if (head_len > s->listener->cfg->max_response_header_bytes) {
            s->ex.up_reused = false;
            upstream_failed_early(s, "response head too large");
            return -1;
        }
        if (code >= 100 && code < 200 && code != 101) {
            /* Interim response (100 Continue, 103): pass it on, then expect the final one. A
             * client that waited for 100 Continue starts its body now: so does its clock. */
            if (code == 100 && body_rate_applies(s) && s->xm->rx_bytes == s->xm->body_rx0)
                s->xm->body_t0_ms = bth_clock_mono_ms();
            evbuffer_add_printf(s->conn.out, "HTTP/1.1 %d ", code);
            evbuffer_add(s->conn.out, base + s->xm->resp.reason.off, s->xm->resp.reason.len);
            evbuffer_add(s->conn.out, "\r\n\r\n", 4);
            evbuffer_drain(in, head_len);
            bth_http_head_reset(&s->xm->resp);
            s->ex.resp_parsed = 0;
            llhttp_init(&s->xm->resp_parser, HTTP_RESPONSE, &bth_http_head_settings);
            s->xm->resp_parser.data = &s->xm->resp;
            continue;
        }
        bth_http_head_finish(&s->xm->resp);
        bth_clock_mono(&s->xm->t_resp);
        s->ex.status = s->ex.target_status = code;
        bth_target_note_result(s->target, code >= 500); /* passive health checking */
        uint8_t flags = s->xm->resp_parser.flags;
        if (code == 101) {
            s->ex.resp_body = BODY_NONE;
        } else if (s->ex.is_head_method || code == 204 || code == 304) {
            s->ex.resp_body = BODY_NONE;
        } else if (flags & F_CHUNKED) {
            s->ex.resp_body = s->client_http10 ? BODY_DECHUNK : BODY_CHUNKED;
            if (s->client_http10)
                s->close_after = true;
        } else if (flags & F_CONTENT_LENGTH) {
            s->ex.resp_body = BODY_LENGTH;
            s->ex.resp_remaining = s->xm->resp_parser.content_length;
        } else {
            s->ex.resp_body = BODY_EOF;
            s->close_after = true;
        }
        if (s->ex.resp_body == BODY_NONE || s->ex.resp_body == BODY_LENGTH ||
            s->ex.resp_body == BODY_EOF)
            ; /* llhttp is not used for the body */
        else
            llhttp_resume(&s->xm->resp_parser);
        s->xm->resp.decode_to = s->ex.resp_body == BODY_DECHUNK ? s->conn.out : NULL;
        if (s->front != NULL && s->front->head != NULL && code != 101) {
            if (give_front_head(s) != 0) {
                h1_session_close(s);
                return -1;
            }
        } else {
            size_t before = evbuffer_get_length(s->conn.out);
            build_response_head(s, s->conn.out);
            s->xm->tx_bytes += evbuffer_get_length(s->conn.out) - before;
        }
        evbuffer_drain(in, head_len);
        set_resp(s, RESP_HEAD_SENT);
        return 1;
    }
}

static void enter_tunnel(struct bth_http_session *s)
{
    h1_log_exchange(s);
    h1_set_state(s, SS_TUNNEL);
    h1_arm_timer(s, s->listener->cfg->idle_timeout_ms);
    /* Whatever either side sent after its head belongs to the new protocol. */
    evbuffer_add_buffer(s->conn.out, s->up->conn.in);
    evbuffer_add_buffer(s->up->conn.out, s->conn.in);
    flush_upstream(s);
}

/* One read from the target and what follows from it. Returns true when the target socket may
 * hold more and reading should go on. */
static bool response_step(struct bth_http_session *s)
{
    struct bth_upstream *up = s->up;
    if (s->state == SS_TUNNEL) {
        if (evbuffer_get_length(s->conn.out) >= s->out_high) {
            up->conn.read_pending = true;
            return false;
        }
        bth_upstream_read(up, READ_BUDGET);
        s->xm->tx_bytes += evbuffer_get_length(up->conn.in);
        evbuffer_add_buffer(s->conn.out, up->conn.in);
        if (up->conn.eof || up->conn.error) {
            /* The target ended the tunnel: deliver what it sent, then close. */
            h1_drop_upstream(s, false);
            h1_set_state(s, SS_CLOSING);
            h1_flush_client(s);
            return false;
        }
        h1_flush_client(s);
        if (s->closing)
            return false; /* the client went away: <up> went with it */
        h1_arm_timer(s, s->listener->cfg->idle_timeout_ms);
        return up->conn.read_pending;
    }
    if (evbuffer_get_length(s->conn.out) >= s->out_high) {
        up->conn.read_pending = true;
        return false;
    }
    bth_upstream_read(up, READ_BUDGET);
    bool ended = up->conn.eof || up->conn.error != 0;
    if (s->ex.resp == RESP_WAITING) {
        int r = parse_response_head(s);
        if (r < 0)
            return false;
        if (r == 0) {
            if (ended)
                upstream_failed_early(s, up->conn.error ? "target reset the connection"
                                                        : "target closed the connection");
            return false;
        }
        if (s->ex.status == 101) {
            if (s->ex.is_upgrade) {
                enter_tunnel(s);
                h1_flush_client(s);
                return false;
            }
            s->close_after = true;
        }
    }
    uint64_t moved = 0;
    int r = h1_forward_body(&s->xm->resp_parser, s->ex.resp_body, &s->ex.resp_remaining,
                            up->conn.in, s->conn.out, &moved);
    s->xm->tx_bytes += moved;
    if (r < 0) {
        s->ex.up_reused = false;
        h1_send_error(s, 502, "malformed response body");
        return false;
    }
    if (r == 0 && ended) {
        if (s->ex.resp_body == BODY_EOF) {
            r = 1;
        } else {
            h1_send_error(s, 502, "target closed mid-response");
            return false;
        }
    }
    if (r == 1) {
        set_resp(s, RESP_DONE);
        if (!s->ex.req_done) {
            /* The target answered before reading the whole request (e.g. 413): the rest of
             * the body cannot be skipped reliably, so the client connection ends here. */
            s->close_after = true;
        }
        h1_flush_client(s);
        if (!s->closing)
            finish_exchange(s);
        return false;
    }
    arm_exchange_timer(s);
    h1_flush_client(s);
    return !s->closing && up->conn.read_pending;
}

/* Reads the target and streams to the client until the target socket is drained or the
 * client is full (its drained-write event resumes us); yields after a few rounds. */
static void process_response(struct bth_http_session *s)
{
    for (int round = 0; round < 16; round++) {
        if (!response_step(s) || s->closing || s->up == NULL)
            return;
    }
    event_active(&s->up->conn.ev, EV_READ, 1);
}

static void on_upstream_event(struct bth_upstream *up, short what, void *arg)
{
    struct bth_http_session *s = arg;
    if (what & EV_CLOSED)
        what |= EV_READ;
    if (up->conn.ssl != NULL && up->state == BTH_UP_ST_ACTIVE && !(what & EV_TIMEOUT))
        what |= EV_READ | EV_WRITE; /* TLS: the handshake needs both directions */
    if (s->state == SS_CONNECTING && up->state == BTH_UP_ST_CONNECTING) {
        if (what & EV_TIMEOUT) {
            bth_log(BTH_LOG_INFO, "#%llu connect() to %s timed out", (unsigned long long)s->id,
                    up->target->addr.text);
            count_connection_error(s);
            h1_send_error(s, 504, "target connect timeout");
        } else {
            upstream_connect_done(s);
        }
        session_settle(s);
        return;
    }
    if (what & EV_WRITE) {
        flush_upstream(s);
        /* The target drained: resume reading the client if we had stopped. */
        if (s->conn.read_pending && !s->closing &&
            evbuffer_get_length(request_sink(s)) < s->out_high)
            client_readable(s);
    }
    if ((what & EV_READ) && !s->closing && s->up == up)
        process_response(s);
    session_settle(s);
}

/* ---- start and stop --------------------------------------------------------------------- */

void h1_describe_peer(const struct sockaddr_storage *ss, char ip[INET6_ADDRSTRLEN],
                      char text[INET6_ADDRSTRLEN + 8])
{
    unsigned port = 0;
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, INET6_ADDRSTRLEN);
        port = ntohs(a->sin6_port);
        snprintf(text, INET6_ADDRSTRLEN + 8, "[%s]:%u", ip, port);
    } else {
        const struct sockaddr_in *a = (const void *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, INET6_ADDRSTRLEN);
        port = ntohs(a->sin_port);
        snprintf(text, INET6_ADDRSTRLEN + 8, "%s:%u", ip, port);
    }
}

/* What every session starts with, socket or stream. */
static void session_init(struct bth_http_session *s, struct bth_worker *w,
                         struct bth_worker_listener *wl, struct bth_snapshot *snap,
                         const struct sockaddr_storage *peer)
{
    s->w = w;
    s->wl = wl;
    s->id = ++w->next_conn_id;
    bth_snapshot_ref(snap);
    s->snap = snap;
    s->listener = &snap->listeners[wl->index];
    s->listen_port = ntohs(((const struct sockaddr_in *)&s->listener->cfg->bind.ss)->sin_port);
    s->client_keepalive = true;
    s->out_high = HIGH_WATERMARK;
    memcpy(&s->peer, peer,
           peer->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    evtimer_assign(&s->timer, w->base, on_session_timer, s);
}

/* A session on its client socket is on its way: go. */
static void session_begin(struct bth_http_session *s, const struct sockaddr_storage *peer)
{
    s->https = s->conn.ssl != NULL;
    h1_describe_peer(peer, s->client_ip, s->client_text);
    bth_worker_track(s->w, &s->wc, &session_conn_ops, true);
    h1_reset_exchange(s);
    /* The connection may already carry the request (accept after data arrived, or bytes
     * read while the protocol was chosen). */
    if (evbuffer_get_length(s->conn.in) > 0)
        process_client(s);
    if (!s->closing)
        client_readable(s);
    session_settle(s);
}

void bth_h1_session_accept(struct bth_worker *w, struct bth_worker_listener *wl, int fd,
                           const struct sockaddr_storage *peer)
{
    struct bth_http_session *s = bth_calloc(1, sizeof(*s));
    if (s == NULL || bth_conn_init(&s->conn, w->base, fd, on_client_io, s) != 0) {
        close(fd);
        bth_free(s);
        bth_worker_conn_closed(w->snap->listeners[wl->index].stats);
        return;
    }
    session_init(s, w, wl, w->snap, peer);
    session_begin(s, peer);
}

void bth_h1_session_start(struct bth_worker *w, struct bth_worker_listener *wl, struct bth_conn *c,
                          const struct sockaddr_storage *peer)
{
    struct bth_http_session *s = bth_calloc(1, sizeof(*s));
    if (s == NULL || bth_conn_move(&s->conn, c, on_client_io, s) != 0) {
        if (s != NULL)
            bth_conn_fini(&s->conn);
        bth_conn_fini(c);
        bth_free(s);
        bth_worker_conn_closed(w->snap->listeners[wl->index].stats);
        return;
    }
    session_init(s, w, wl, w->snap, peer);
    session_begin(s, peer);
}

struct bth_http_session *h1_front_session_new(struct bth_worker *w, struct bth_worker_listener *wl,
                                              struct bth_snapshot *snap,
                                              const struct sockaddr_storage *peer, const char *ip,
                                              const char *text, bool https,
                                              const struct h1_front_ops *front, void *arg)
{
    struct bth_http_session *s = bth_calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    if (bth_conn_init_local(&s->conn, w->base, on_client_io, s) != 0) {
        bth_free(s);
        return NULL;
    }
    session_init(s, w, wl, snap, peer);
    s->front = front;
    s->front_arg = arg;
    s->https = https;
    s->http2 = true;
    s->client_keepalive = false; /* one request: the stream ends with it */
    /* A stream's answer waits under HTTP/2 flow control: less per stream than per
     * connection, as one connection carries many streams. */
    s->out_high = 32 * 1024;
    memcpy(s->client_ip, ip, strnlen(ip, sizeof(s->client_ip) - 1) + 1);
    memcpy(s->client_text, text, strnlen(text, sizeof(s->client_text) - 1) + 1);
    h1_reset_exchange(s);
    return s;
}

void h1_front_input(struct bth_http_session *s)
{
    event_active(&s->conn.ev, EV_READ, 1);
}

void h1_front_drained(struct bth_http_session *s)
{
    event_active(&s->conn.ev, EV_WRITE, 1);
}

void h1_front_abort(struct bth_http_session *s)
{
    s->front = NULL; /* the stream is gone: no calls back (and no socket's accounting) */
    h1_session_close(s);
    session_free(s);
}

/* A graceful stop: an idle keep-alive connection closes now, a busy one after its answer. */
static void session_stop(struct bth_worker_conn *c)
{
    struct bth_http_session *s = bth_list_entry(c, struct bth_http_session, wc);
    s->close_after = true;
    if (s->state == SS_IDLE && evbuffer_get_length(s->conn.in) == 0) {
        h1_session_close(s);
        session_free(s);
    }
}

static void session_abort(struct bth_worker_conn *c)
{
    struct bth_http_session *s = bth_list_entry(c, struct bth_http_session, wc);
    h1_session_close(s);
    session_free(s);
}
