/* SPDX-License-Identifier: MIT */
/* Health checking on the main event loop.
 *
 * Active checks: each target has a timer; a check opens a fresh non-blocking connection
 * (bufferevent, with OpenSSL for HTTPS), sends one GET with Connection: close, reads the
 * status line and closes. The ELB state machine then moves the target: initial -> healthy
 * after one pass, healthy -> unhealthy after unhealthy_threshold failures in a row,
 * unhealthy -> healthy after healthy_threshold passes in a row.
 *
 * Passive checks: workers count failures in a row on each target (bth_target_note_result);
 * a periodic sweep ejects a target whose count reaches the group's consecutive_errors, for
 * base_ejection_time times its number of ejections, never more than max_ejection_percent of
 * the group; a target back from ejection is on probation and one more failure ejects it
 * again. */
#include "health.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "balancer.h"
#include "clock.h"
#include "config.h"
#include "health_h2.h"
#include "list.h"
#include "log.h"
#include "rand.h"
#include "mem.h"
#include "registry.h"
#include "stats.h"
#include "target.h"
#include "worker.h"

#define MAX_RANGES            16
#define MAX_STATUS_LINE       8192
#define OUTLIER_TICK_MS       200
#define FIRST_CHECK_SPREAD_MS 1000

enum hc_reason {
    R_NONE = 0,
    R_INITIAL,
    R_CODE_MISMATCH,
    R_TIMEOUT,
    R_FAILED,
    R_DISABLED,
    R_DRAINING,
};

static const char *const reason_codes[] = {
    NULL,
    "Elb.InitialHealthChecking",
    "Target.ResponseCodeMismatch",
    "Target.Timeout",
    "Target.FailedHealthChecks",
    "Target.HealthCheckDisabled",
    "Target.DeregistrationInProgress",
};

struct status_range {
    int lo, hi;
};

/* One target's checking state. Owned by the health module; the target points back. */
struct bth_hc {
    struct bth_health *h;
    struct bth_target *t;    /* one reference held */
    struct bth_stats *stats; /* one reference: the group's counters */
    char *group;             /* owned: the group's name, for logs */
    /* parameters, refreshed from the group's config on every sync */
    bool enabled;
    enum bth_proto proto;
    int port;   /* 0: traffic port */
    char *path; /* owned */
    uint64_t interval_ms, timeout_ms;
    unsigned healthy_threshold, unhealthy_threshold;
    struct status_range ranges[MAX_RANGES];
    unsigned nranges;
    bool tls_verify;
    enum bth_proto_version version; /* HTTP2, GRPC: the check speaks HTTP/2 */
    struct bth_cfg_outlier od;
    /* active check */
    struct event *timer;     /* next check, or the deadline of the running one */
    struct bufferevent *bev; /* the running check, NULL between checks */
    struct bth_h2_check *h2; /* its HTTP/2 request, for HTTP2 and GRPC groups */
    uint64_t started_ms;
    unsigned passes, fails;
    enum hc_reason reason;
    char desc[160];
    /* passive check */
    unsigned ejections;
    uint64_t ejected_until_ms;
    uint64_t probation_until_ms;
    uint64_t last_eject_end_ms;
    bool mark;            /* sync: still in the registry */
    struct bth_list link; /* on the checker's list of all checks */
};

struct bth_health {
    struct event_base *base;
    struct bth_registry *reg;
    unsigned row; /* stats row of the main thread */
    bth_health_changed_cb cb;
    void *cb_arg;
    struct event *changed_ev;
    bool changed_pending;
    struct event *outlier_timer;
    SSL_CTX *ssl_noverify, *ssl_verify;
    struct bth_list all;  /* every check, struct bth_hc.link */
    struct bth_rand rand; /* check jitter */
};

/* ELB fails open: a group none of whose targets passes its checks, but some of which are
 * merely unhealthy, takes traffic on all of them. The balancer decides that per request on
 * its own; here, on the main thread after every change of target states (on_changed) or of
 * the registry (bth_health_sync), each group's entry into and exit from that state is
 * logged once, so an operator learns that unhealthy targets are being used. */
static void note_fail_open(struct bth_health *h)
{
    for (size_t i = 0; i < h->reg->ngroups; i++) {
        struct bth_reg_group *g = &h->reg->groups[i];
        bool open = bth_lb_targets_failing_open(g->targets, g->ntargets);
        if (open == g->failing_open)
            continue;
        g->failing_open = open;
        unsigned healthy = 0, unhealthy = 0, routed = 0;
        for (size_t j = 0; j < g->ntargets; j++) {
            int st = atomic_load(&g->targets[j]->state);
            healthy += bth_target_takes_traffic(g->targets[j]);
            unhealthy += st == BTH_TARGET_UNHEALTHY;
            routed += st != BTH_TARGET_DRAINING && st != BTH_TARGET_UNUSED;
        }
        if (open && unhealthy == 1 && routed == 1)
            bth_log(BTH_LOG_WARN,
                    "target group %s: its one target is unhealthy; failing open (routing to it)",
                    g->name);
        else if (open && unhealthy == routed)
            bth_log(BTH_LOG_WARN,
                    "target group %s: all %u targets unhealthy; failing open (routing to all)",
                    g->name, unhealthy);
        else if (open)
            bth_log(BTH_LOG_WARN,
                    "target group %s: no target healthy, %u of %u unhealthy; failing open "
                    "(routing to all %u)",
                    g->name, unhealthy, routed, routed);
        else
            bth_log(BTH_LOG_NOTICE,
                    "target group %s: no longer failing open (%u of %u targets healthy)", g->name,
                    healthy, routed);
    }
}

static void on_changed(evutil_socket_t fd, short what, void *arg)
{
    struct bth_health *h = arg;
    h->changed_pending = false;
    note_fail_open(h);
    h->cb(h->cb_arg);
}

/* Coalesces many transitions in one loop iteration into one snapshot publication. */
static void notify_changed(struct bth_health *h)
{
    if (!h->changed_pending) {
        h->changed_pending = true;
        event_active(h->changed_ev, EV_TIMEOUT, 1);
    }
}

/* ---- matcher -------------------------------------------------------------------------- */

/* "200", "200-399", "200,302" (validated by the config parser). */
static unsigned parse_ranges(const char *m, struct status_range *out)
{
    unsigned n = 0;
    while (*m != '\0' && n < MAX_RANGES) {
        char *end;
        long lo = strtol(m, &end, 10), hi = lo;
        if (*end == '-')
            hi = strtol(end + 1, &end, 10);
        out[n].lo = (int)lo;
        out[n].hi = (int)hi;
        n++;
        m = *end == ',' ? end + 1 : end;
        if (end == m && *m != '\0' && *m != ',')
            break;
    }
    return n;
}

static bool status_matches(const struct bth_hc *hc, int code)
{
    for (unsigned i = 0; i < hc->nranges; i++) {
        if (code >= hc->ranges[i].lo && code <= hc->ranges[i].hi)
            return true;
    }
    return false;
}

/* ---- state machine -------------------------------------------------------------------- */

static void set_target_state(struct bth_hc *hc, enum bth_target_state st, enum hc_reason r)
{
    enum bth_target_state old = (enum bth_target_state)atomic_load(&hc->t->state);
    hc->reason = r;
    if (old == st)
        return;
    bth_target_set_state(hc->t, st);
    if (st == BTH_TARGET_HEALTHY || st == BTH_TARGET_UNHEALTHY) {
        if (r != R_NONE)
            bth_log(BTH_LOG_NOTICE, "target %s in group %s is now %s: %s (%s)", hc->t->addr.text,
                    hc->group, bth_target_state_name(st), reason_codes[r], hc->desc);
        else
            bth_log(BTH_LOG_NOTICE, "target %s in group %s is now %s", hc->t->addr.text, hc->group,
                    bth_target_state_name(st));
        bth_stats_add(hc->stats, hc->h->row,
                      st == BTH_TARGET_HEALTHY ? BTH_ST_HC_TO_HEALTHY : BTH_ST_HC_TO_UNHEALTHY, 1);
    }
    notify_changed(hc->h);
}

/* Applies one check result to the ELB state machine. */
static void record(struct bth_hc *hc, bool ok, enum hc_reason why)
{
    enum bth_target_state st = (enum bth_target_state)atomic_load(&hc->t->state);
    if (st == BTH_TARGET_DRAINING)
        return; /* ELB stops checking a draining target */
    if (ok) {
        hc->fails = 0;
        hc->passes++;
        if (st == BTH_TARGET_INITIAL ||
            (st == BTH_TARGET_UNHEALTHY && hc->passes >= hc->healthy_threshold)) {
            hc->desc[0] = '\0';
            set_target_state(hc, BTH_TARGET_HEALTHY, R_NONE);
        }
        return;
    }
    hc->passes = 0;
    hc->fails++;
    if (st == BTH_TARGET_UNHEALTHY) {
        hc->reason = why; /* stays unhealthy; the view shows the latest failure */
        return;
    }
    if (hc->fails >= hc->unhealthy_threshold)
        set_target_state(hc, BTH_TARGET_UNHEALTHY, why);
}

/* ---- one check ------------------------------------------------------------------------ */

static void schedule(struct bth_hc *hc, uint64_t delay_ms)
{
    struct timeval tv = {(time_t)(delay_ms / 1000), (suseconds_t)((delay_ms % 1000) * 1000)};
    evtimer_add(hc->timer, &tv);
}

/* The next check one interval after this one started, give or take 5%: targets registered
 * together drift apart instead of being probed in one burst forever. */
static void schedule_next(struct bth_hc *hc)
{
    uint64_t spent = bth_clock_mono_ms() - hc->started_ms;
    uint64_t jitter = hc->interval_ms / 20;
    uint64_t next =
        hc->interval_ms - jitter + (jitter ? bth_rand_next(&hc->h->rand) % (2 * jitter + 1) : 0);
    schedule(hc, spent < next ? next - spent : 0);
}

/* Ends the running check's connection: checks never reuse one. */
static void close_check(struct bth_hc *hc)
{
    bth_h2_check_free(hc->h2);
    hc->h2 = NULL;
    if (hc->bev != NULL) {
        bufferevent_free(hc->bev);
        hc->bev = NULL;
    }
}

static void finish(struct bth_hc *hc, bool ok, enum hc_reason why)
{
    close_check(hc);
    evtimer_del(hc->timer);
    record(hc, ok, why);
    schedule_next(hc);
}

static void fail(struct bth_hc *hc, enum hc_reason why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct bth_hc *hc, enum hc_reason why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(hc->desc, sizeof(hc->desc), fmt, ap);
    va_end(ap);
    finish(hc, false, why);
}

#define GRPC_HEALTH_PATH "/grpc.health.v1.Health/Check"

/* The answer to an HTTP/2 or gRPC check. A gRPC check matches grpc-status against the
 * matcher; the standard health protocol passes only a SERVING answer. */
static void judge_h2(struct bth_hc *hc, const struct bth_h2_check_result *r)
{
    if (hc->version != BTH_PV_GRPC) {
        if (r->status >= 0 && status_matches(hc, r->status))
            finish(hc, true, R_NONE);
        else
            fail(hc, R_CODE_MISMATCH, "Health checks failed with these codes: [%d]", r->status);
        return;
    }
    if (r->grpc_status < 0) {
        fail(hc, R_FAILED, "Health checks failed: no grpc-status in the answer (HTTP %d)",
             r->status);
        return;
    }
    if (strcmp(hc->path, GRPC_HEALTH_PATH) == 0 && r->grpc_status == 0) {
        static const char *const names[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
        if (r->serving == 1)
            finish(hc, true, R_NONE);
        else
            fail(hc, R_CODE_MISMATCH, "Health checks failed: grpc.health.v1 status %s",
                 r->serving >= 0 && r->serving <= 3 ? names[r->serving] : "unreadable");
        return;
    }
    if (status_matches(hc, r->grpc_status))
        finish(hc, true, R_NONE);
    else
        fail(hc, R_CODE_MISMATCH, "Health checks failed with these gRPC codes: [%d]",
             r->grpc_status);
}

static void on_check_read(struct bufferevent *bev, void *arg)
{
    struct bth_hc *hc = arg;
    if (hc->h2 != NULL) {
        struct bth_h2_check_result r;
        int rv = bth_h2_check_input(hc->h2, &r);
        if (rv < 0)
            fail(hc, R_FAILED, "Health checks failed: HTTP/2 protocol error");
        else if (rv > 0)
            judge_h2(hc, &r);
        return;
    }
    if (hc->version != BTH_PV_HTTP1)
        return; /* HTTP/2 bytes before the request could be sent: kept for it */
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t eol_len = 0;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
    if (eol.pos < 0) {
        if (evbuffer_get_length(in) > MAX_STATUS_LINE)
            fail(hc, R_FAILED, "Health checks failed: response line too long");
        return;
    }
    char line[64];
    size_t n = (size_t)eol.pos < sizeof(line) - 1 ? (size_t)eol.pos : sizeof(line) - 1;
    evbuffer_copyout(in, line, n);
    line[n] = '\0';
    int minor, code;
    if (sscanf(line, "HTTP/1.%d %3d", &minor, &code) != 2 || code < 100 || code > 999) {
        fail(hc, R_FAILED, "Health checks failed: malformed response");
        return;
    }
    if (status_matches(hc, code)) {
        finish(hc, true, R_NONE);
        return;
    }
    fail(hc, R_CODE_MISMATCH, "Health checks failed with these codes: [%d]", code);
}

/* An HTTP/2 check: the request goes out once the connection (and TLS, with h2 chosen) is
 * up. */
static void send_h2_check(struct bth_hc *hc, const char *host)
{
    bool tls = hc->proto == BTH_PROTO_HTTPS;
    if (tls) {
        const unsigned char *p = NULL;
        unsigned n = 0;
        SSL_get0_alpn_selected(bufferevent_openssl_get_ssl(hc->bev), &p, &n);
        if (n != 2 || memcmp(p, "h2", 2) != 0) {
            fail(hc, R_FAILED, "Health checks failed: the target did not choose h2 by ALPN");
            return;
        }
    }
    hc->h2 = bth_h2_check_start(hc->bev, host, hc->path, hc->version == BTH_PV_GRPC, tls);
    if (hc->h2 == NULL)
        fail(hc, R_FAILED, "Health checks failed: out of memory");
}

static void send_check_request(struct bth_hc *hc)
{
    char host[80];
    const char *text = hc->t->addr.text;
    const char *colon = strrchr(text, ':');
    snprintf(host, sizeof(host), "%.*s", (int)(colon ? colon - text : (long)strlen(text)), text);
    if (hc->version != BTH_PV_HTTP1) {
        send_h2_check(hc, host);
        return;
    }
    evbuffer_add_printf(bufferevent_get_output(hc->bev),
                        "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: berth-health-checker/1.0\r\n"
                        "Accept: */*\r\nConnection: close\r\n\r\n",
                        hc->path, host);
}

static void on_check_event(struct bufferevent *bev, short what, void *arg)
{
    struct bth_hc *hc = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (hc->proto == BTH_PROTO_TCP)
            finish(hc, true, R_NONE);
        else
            send_check_request(hc);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        int e = EVUTIL_SOCKET_ERROR();
        unsigned long ssl_err =
            hc->proto == BTH_PROTO_HTTPS ? bufferevent_get_openssl_error(bev) : 0;
        if (ssl_err != 0) {
            char buf[120];
            ERR_error_string_n(ssl_err, buf, sizeof(buf));
            fail(hc, R_FAILED, "Health checks failed: TLS: %s", buf);
        } else {
            fail(hc, R_FAILED, "Health checks failed: %s", e ? strerror(e) : "connection error");
        }
        return;
    }
    if (what & BEV_EVENT_EOF) {
        on_check_read(bev, hc); /* an answer may have arrived with the FIN */
        if (hc->bev != NULL)
            fail(hc, R_FAILED, "Health checks failed: connection closed without a response");
    }
}

static struct bufferevent *new_check_bev(struct bth_hc *hc)
{
    struct event_base *base = hc->h->base;
    if (hc->proto != BTH_PROTO_HTTPS)
        return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    SSL *ssl = SSL_new(hc->tls_verify ? hc->h->ssl_verify : hc->h->ssl_noverify);
    if (ssl == NULL)
        return NULL;
    static const unsigned char h2[] = {2, 'h', '2'};
    if (hc->version != BTH_PV_HTTP1)
        SSL_set_alpn_protos(ssl, h2, sizeof(h2));
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        SSL_free(ssl);
    else
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static void start_check(struct bth_hc *hc)
{
    hc->started_ms = bth_clock_mono_ms();
    if (atomic_load(&hc->t->state) == BTH_TARGET_DRAINING) {
        schedule(hc, hc->interval_ms);
        return;
    }
    struct sockaddr_storage ss = hc->t->addr.ss;
    if (hc->port != 0) {
        /* sin_port and sin6_port sit at the same offset */
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)hc->port);
    }
    hc->bev = new_check_bev(hc);
    if (hc->bev == NULL) {
        fail(hc, R_FAILED, "Health checks failed: out of memory");
        return;
    }
    bufferevent_setcb(hc->bev, on_check_read, NULL, on_check_event, hc);
    bufferevent_enable(hc->bev, EV_READ | EV_WRITE);
    schedule(hc, hc->timeout_ms); /* the timer is the deadline while a check runs */
    if (bufferevent_socket_connect(hc->bev, (struct sockaddr *)&ss, hc->t->addr.len) != 0 &&
        hc->bev != NULL) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* berth's own shortage, not the target's fault: try again later, count nothing */
            bth_log(BTH_LOG_WARN, "health check of %s postponed: %s", hc->t->addr.text,
                    strerror(errno));
            close_check(hc);
            evtimer_del(hc->timer);
            schedule_next(hc);
            return;
        }
        fail(hc, R_FAILED, "Health checks failed: connect() failed: %s", strerror(errno));
    }
}

static void on_check_timer(evutil_socket_t fd, short what, void *arg)
{
    struct bth_hc *hc = arg;
    if (hc->bev != NULL) {
        fail(hc, R_TIMEOUT, "Request timed out");
        return;
    }
    start_check(hc);
}

/* ---- passive checks --------------------------------------------------------------------- */

static void outlier_group(struct bth_health *h, struct bth_reg_group *g, uint64_t now)
{
    unsigned n = 0, ejected = 0;
    for (size_t i = 0; i < g->ntargets; i++) {
        n++;
        ejected += atomic_load(&g->targets[i]->ejected);
    }
    for (size_t i = 0; i < g->ntargets; i++) {
        struct bth_target *t = g->targets[i];
        struct bth_hc *hc = t->hc;
        if (hc == NULL)
            continue;
        if (atomic_load(&t->ejected)) {
            if (now < hc->ejected_until_ms)
                continue;
            atomic_store(&t->ejected, false);
            atomic_store(&t->consecutive_errors, 0);
            ejected--;
            hc->probation_until_ms = now + hc->od.base_ejection_ms;
            hc->last_eject_end_ms = now;
            bth_log(BTH_LOG_NOTICE, "target %s in group %s returns from ejection", t->addr.text,
                    hc->group);
            notify_changed(h);
            continue;
        }
        if (!hc->od.enabled)
            continue;
        /* Good behaviour for a while earns back one step of the ejection multiplier. */
        if (hc->ejections > 0 && now - hc->last_eject_end_ms > hc->od.base_ejection_ms * 4) {
            hc->ejections--;
            hc->last_eject_end_ms = now;
        }
        int errs = atomic_load(&t->consecutive_errors);
        unsigned limit = now < hc->probation_until_ms ? 1 : hc->od.consecutive_errors;
        if (errs < (int)limit)
            continue;
        if (ejected + 1 > n * hc->od.max_ejection_percent / 100)
            continue; /* ejecting one more would take too much of the group away */
        hc->ejections++;
        hc->ejected_until_ms = now + hc->od.base_ejection_ms * hc->ejections;
        atomic_store(&t->ejected, true);
        ejected++;
        bth_stats_add(hc->stats, h->row, BTH_ST_EJECTIONS, 1);
        bth_log(BTH_LOG_NOTICE,
                "target %s in group %s ejected for %llums after %d failures in "
                "a row (ejection %u)",
                t->addr.text, hc->group,
                (unsigned long long)(hc->od.base_ejection_ms * hc->ejections), errs, hc->ejections);
        notify_changed(h);
    }
}

static void on_outlier_tick(evutil_socket_t fd, short what, void *arg)
{
    struct bth_health *h = arg;
    uint64_t now = bth_clock_mono_ms();
    for (size_t i = 0; i < h->reg->ngroups; i++)
        outlier_group(h, &h->reg->groups[i], now);
}

/* ---- sync with the registry -------------------------------------------------------------- */

static void hc_free(struct bth_hc *hc)
{
    close_check(hc);
    event_free(hc->timer);
    bth_list_remove(&hc->link);
    hc->t->hc = NULL;
    atomic_store(&hc->t->ejected, false);
    bth_target_unref(hc->t);
    bth_stats_unref(hc->stats);
    bth_free(hc->path);
    bth_free(hc->group);
    bth_free(hc);
}

static struct bth_hc *hc_create(struct bth_health *h, struct bth_target *t)
{
    struct bth_hc *hc = bth_calloc(1, sizeof(*hc));
    if (hc == NULL)
        return NULL;
    hc->timer = evtimer_new(h->base, on_check_timer, hc);
    if (hc->timer == NULL) {
        bth_free(hc);
        return NULL;
    }
    hc->h = h;
    bth_target_ref(t);
    hc->t = t;
    t->hc = hc;
    bth_list_push(&h->all, &hc->link);
    return hc;
}

/* Copies the group's settings; returns true when checking was just switched on. */
static bool refresh(struct bth_hc *hc, const struct bth_reg_group *g)
{
    const struct bth_cfg_health_check *c = &g->cfg->health_check;
    bool was = hc->enabled;
    if (hc->stats != g->stats) {
        bth_stats_ref(g->stats);
        bth_stats_unref(hc->stats);
        hc->stats = g->stats;
    }
    if (hc->group == NULL || strcmp(hc->group, g->name) != 0) {
        bth_free(hc->group);
        hc->group = bth_strdup(g->name);
    }
    if (hc->path == NULL || strcmp(hc->path, c->path) != 0) {
        bth_free(hc->path);
        hc->path = bth_strdup(c->path);
    }
    hc->enabled = c->enabled && hc->path != NULL && hc->group != NULL;
    hc->proto = c->protocol;
    hc->port = c->port;
    hc->interval_ms = c->interval_ms;
    hc->timeout_ms = c->timeout_ms;
    hc->healthy_threshold = c->healthy_threshold;
    hc->unhealthy_threshold = c->unhealthy_threshold;
    hc->tls_verify = c->tls_verify;
    /* an HTTP check of an HTTP2/GRPC group speaks HTTP/2; a TCP check stays TCP */
    hc->version = c->protocol == BTH_PROTO_TCP ? BTH_PV_HTTP1 : g->cfg->protocol_version;
    hc->nranges = parse_ranges(c->matcher, hc->ranges);
    hc->od = g->cfg->outlier_detection;
    return hc->enabled && !was;
}

void bth_health_sync(struct bth_health *h)
{
    struct bth_list *it, *tmp;
    bth_list_foreach_safe(it, tmp, &h->all)
    {
        bth_list_entry(it, struct bth_hc, link)->mark = false;
    }
    for (size_t i = 0; i < h->reg->ngroups; i++) {
        struct bth_reg_group *g = &h->reg->groups[i];
        for (size_t j = 0; j < g->ntargets; j++) {
            struct bth_target *t = g->targets[j];
            struct bth_hc *hc = t->hc ? t->hc : hc_create(h, t);
            if (hc == NULL)
                continue; /* out of memory: the target keeps its state unchecked */
            hc->mark = true;
            bool switched_on = refresh(hc, g);
            bool draining = atomic_load(&t->state) == BTH_TARGET_DRAINING;
            if (!hc->enabled) {
                close_check(hc);
                evtimer_del(hc->timer);
                if (!draining)
                    set_target_state(hc, BTH_TARGET_UNAVAILABLE, R_DISABLED);
                continue;
            }
            if (switched_on) {
                /* A new target is checked at once; a little jitter keeps a thousand new
                 * targets from being probed in the same millisecond. */
                hc->passes = hc->fails = 0;
                if (!draining)
                    set_target_state(hc, BTH_TARGET_INITIAL, R_INITIAL);
                uint64_t spread = hc->interval_ms < FIRST_CHECK_SPREAD_MS ? hc->interval_ms
                                                                          : FIRST_CHECK_SPREAD_MS;
                schedule(hc, bth_rand_next(&h->rand) % (spread / 10 + 1));
            }
        }
    }
    bth_list_foreach_safe(it, tmp, &h->all)
    {
        struct bth_hc *hc = bth_list_entry(it, struct bth_hc, link);
        if (!hc->mark)
            hc_free(hc);
    }
    note_fail_open(h);
}

void bth_health_describe(const struct bth_target *t, const char **reason, const char **desc)
{
    enum bth_target_state st = (enum bth_target_state)atomic_load(&t->state);
    const struct bth_hc *hc = t->hc;
    *reason = NULL;
    *desc = NULL;
    switch (st) {
    case BTH_TARGET_HEALTHY:
        if (atomic_load(&t->ejected)) {
            *reason = "Target.FailedHealthChecks";
            *desc = "Ejected by passive health checks (outlier detection)";
        }
        return;
    case BTH_TARGET_INITIAL:
        *reason = reason_codes[R_INITIAL];
        *desc = "Initial health checks in progress";
        return;
    case BTH_TARGET_UNHEALTHY:
        *reason =
            hc != NULL && hc->reason != R_NONE ? reason_codes[hc->reason] : reason_codes[R_FAILED];
        *desc = hc != NULL && hc->desc[0] ? hc->desc : "Health checks failed";
        return;
    case BTH_TARGET_DRAINING:
        *reason = reason_codes[R_DRAINING];
        *desc = "Target deregistration is in progress";
        return;
    case BTH_TARGET_UNAVAILABLE:
        *reason = reason_codes[R_DISABLED];
        *desc = atomic_load(&t->ejected) ? "Health checks are disabled; ejected by passive "
                                           "health checks"
                                         : "Health checks are disabled";
        return;
    default:
        return;
    }
}

static SSL_CTX *client_ctx(bool verify)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (verify) {
        SSL_CTX_set_default_verify_paths(ctx);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

struct bth_health *bth_health_create(struct event_base *base, struct bth_registry *reg,
                                     unsigned stats_row, bth_health_changed_cb cb, void *arg)
{
    struct bth_health *h = bth_calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->base = base;
    bth_list_init(&h->all);
    h->reg = reg;
    h->row = stats_row;
    h->cb = cb;
    h->cb_arg = arg;
    bth_rand_seed(&h->rand, (uint64_t)(uintptr_t)h);
    h->changed_ev = event_new(base, -1, 0, on_changed, h);
    h->outlier_timer = event_new(base, -1, EV_PERSIST, on_outlier_tick, h);
    h->ssl_noverify = client_ctx(false);
    h->ssl_verify = client_ctx(true);
    if (h->changed_ev == NULL || h->outlier_timer == NULL || h->ssl_noverify == NULL ||
        h->ssl_verify == NULL) {
        bth_health_destroy(h);
        return NULL;
    }
    struct timeval tv = {0, OUTLIER_TICK_MS * 1000};
    event_add(h->outlier_timer, &tv);
    return h;
}

void bth_health_destroy(struct bth_health *h)
{
    if (h == NULL)
        return;
    while (!bth_list_empty(&h->all))
        hc_free(bth_list_entry(h->all.next, struct bth_hc, link));
    if (h->changed_ev)
        event_free(h->changed_ev);
    if (h->outlier_timer)
        event_free(h->outlier_timer);
    SSL_CTX_free(h->ssl_noverify);
    SSL_CTX_free(h->ssl_verify);
    bth_free(h);
}
