/* SPDX-License-Identifier: MIT */
/* Control API handlers. Every change goes registry first, then one snapshot publication,
 * so a call that fails validation changes nothing. */
#include "control.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "app.h"
#include "balancer.h"
#include "clock.h"
#include "config.h"
#include "discovery.h"
#include "health.h"
#include "config_json.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "registry.h"
#include "snapshot.h"
#include "target.h"
#include "worker.h"

#define MAX_BODY_BYTES  (4 * 1024 * 1024)
#define ACCEPT_PAUSE_MS 100
#define ACCEPT_WARN_MS  10000

struct bth_control {
    struct bth_app *app;     /* borrowed */
    struct evhttp *http;     /* owned: the Unix socket */
    struct evhttp *tcp_http; /* owned: control.listen, NULL when not configured */
    char *token;             /* owned: Bearer token for tcp_http */
    size_t token_len;
    char *path;     /* owned */
    dev_t sock_dev; /* the socket file berth created: only that one is unlinked on exit */
    ino_t sock_ino;
    struct evconnlistener *accepts[2]; /* borrowed from http and tcp_http */
    struct event *accept_timer;        /* owned: ends a pause of accepting */
    uint64_t accept_warn_ms;           /* when the last accept() failure was logged */
};

/* accept() on a control socket failed. libevent's listener would retry at once, and log,
 * for as long as the error lasts (EMFILE: the process is out of descriptors), spinning the
 * main thread: the control sockets pause for ACCEPT_PAUSE_MS instead, as the workers'
 * listeners do, with one warning per ACCEPT_WARN_MS. libevent hands the callback the
 * evhttp, not the server, hence this one static: there is one control server per process,
 * and only the main thread touches it. */
static struct bth_control *accepting_control;

static void set_accepting(struct bth_control *c, bool on)
{
    for (size_t i = 0; i < 2; i++) {
        if (c->accepts[i] != NULL && on)
            evconnlistener_enable(c->accepts[i]);
        else if (c->accepts[i] != NULL)
            evconnlistener_disable(c->accepts[i]);
    }
}

static void on_accept_timer(evutil_socket_t fd, short what, void *arg)
{
    set_accepting(arg, true);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct bth_control *c = accepting_control;
    int e = EVUTIL_SOCKET_ERROR();
    if (c == NULL)
        return;
    uint64_t now = bth_clock_mono_ms();
    if (c->accept_warn_ms == 0 || now - c->accept_warn_ms >= ACCEPT_WARN_MS) {
        c->accept_warn_ms = now;
        bth_log(BTH_LOG_WARN, "control: accept() failed: %s; not accepting for %dms at a time",
                strerror(e), ACCEPT_PAUSE_MS);
    }
    set_accepting(c, false);
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    evtimer_add(c->accept_timer, &tv);
}

/* Serves <fd> with <http>; its listener pauses on accept() failures. 0 or -1. */
static int accept_on(struct bth_control *c, struct evhttp *http, int fd, size_t slot)
{
    struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(http, fd);
    if (bound == NULL)
        return -1;
    c->accepts[slot] = evhttp_bound_socket_get_listener(bound);
    evconnlistener_set_error_cb(c->accepts[slot], on_accept_error);
    return 0;
}

static const char *reason_phrase(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 414:
        return "URI Too Long";
    case 500:
        return "Internal Server Error";
    default:
        return code < 400 ? "OK" : "Error";
    }
}

static void reply_json(struct evhttp_request *req, int code, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    struct evbuffer *out = evbuffer_new();
    if (text != NULL && out != NULL) {
        evbuffer_add(out, text, strlen(text));
        evbuffer_add(out, "\n", 1);
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, reason_phrase(code), out);
    if (out)
        evbuffer_free(out);
    free(text);
    json_decref(body);
}

static void reply_error(struct evhttp_request *req, int code, const char *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void reply_error(struct evhttp_request *req, int code, const char *err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply_json(req, code, json_pack("{s:{s:s,s:s}}", "Error", "Code", err, "Message", msg));
}

static void reply_text(struct evhttp_request *req, int code, const char *ctype,
                       struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evhttp_send_reply(req, code, "OK", body);
}

static unsigned count_healthy(const struct bth_reg_group *g)
{
    unsigned n = 0;
    for (size_t i = 0; i < g->ntargets; i++)
        n += bth_target_takes_traffic(g->targets[i]);
    return n;
}

static void handle_groups(struct bth_control *c, struct evhttp_request *req)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < c->app->registry.ngroups; i++) {
        const struct bth_reg_group *g = &c->app->registry.groups[i];
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:I,s:I}", "TargetGroupName", g->name,
                                             "Protocol", bth_proto_name(g->cfg->protocol),
                                             "Algorithm", bth_algorithm_name(g->cfg->algorithm),
                                             "Targets", (json_int_t)g->ntargets, "HealthyTargets",
                                             (json_int_t)count_healthy(g)));
    }
    reply_json(req, 200, json_pack("{s:o}", "TargetGroups", arr));
}

static void handle_health(struct bth_control *c, struct evhttp_request *req,
                          struct bth_reg_group *g)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < g->ntargets; i++) {
        const struct bth_target *t = g->targets[i];
        char id[64], hc_port[16] = "traffic-port";
        unsigned port;
        bth_addr_split(&t->addr, id, sizeof(id), &port);
        if (g->cfg->health_check.port != 0)
            snprintf(hc_port, sizeof(hc_port), "%d", g->cfg->health_check.port);
        enum bth_target_state st = atomic_load(&t->state);
        json_t *th = json_pack("{s:s}", "State", bth_target_state_name(st));
        const char *reason, *desc;
        bth_health_describe(t, &reason, &desc);
        if (reason != NULL) {
            json_object_set_new(th, "Reason", json_string(reason));
            json_object_set_new(th, "Description", json_string(desc));
        }
        json_array_append_new(arr, json_pack("{s:{s:s,s:i},s:s,s:o,s:s}", "Target", "Id", id,
                                             "Port", (int)port, "HealthCheckPort", hc_port,
                                             "TargetHealth", th, "Source",
                                             t->discovered ? "dns"
                                             : t->dynamic  ? "api"
                                                           : "config"));
    }
    json_t *body = json_pack("{s:o,s:b}", "TargetHealthDescriptions", arr, "FailOpen",
                             bth_lb_targets_failing_open(g->targets, g->ntargets));
    struct bth_discovery_status ds;
    if (bth_discovery_status(c->app->discovery, g->name, &ds)) {
        json_t *dj =
            json_pack("{s:s,s:s,s:s,s:I,s:I}", "Name", ds.name, "Type", ds.type, "State",
                      ds.failing              ? "failing"
                      : ds.last_ok_age_ms < 0 ? "pending"
                                              : "ok",
                      "Targets", (json_int_t)ds.targets, "Failures", (json_int_t)ds.failures);
        if (ds.last_error[0] != '\0')
            json_object_set_new(dj, "LastError", json_string(ds.last_error));
        if (ds.last_ok_age_ms >= 0)
            json_object_set_new(dj, "SecondsSinceLastAnswer",
                                json_real((double)ds.last_ok_age_ms / 1000.0));
        json_object_set_new(body, "Discovery", dj);
    }
    reply_json(req, 200, body);
}

/* Parses {"Targets":[{"Id":..,"Port":..,"Weight":..}]} into <addrs>. Returns the count or -1
 * after replying with the error. */
static int parse_targets(struct evhttp_request *req, struct bth_addr **addrs, unsigned **weights,
                         int *wait)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &jerr);
    if (root == NULL) {
        reply_error(req, 400, "ValidationError", "invalid JSON: %s", jerr.text);
        return -1;
    }
    json_t *targets = json_object_get(root, "Targets");
    if (!json_is_array(targets) || json_array_size(targets) == 0) {
        reply_error(req, 400, "ValidationError", "\"Targets\" must be a non-empty array");
        json_decref(root);
        return -1;
    }
    json_t *w = json_object_get(root, "Wait");
    *wait = json_is_true(w);
    size_t n = json_array_size(targets);
    *addrs = bth_calloc(n, sizeof(**addrs));
    *weights = bth_calloc(n, sizeof(**weights));
    if (*addrs == NULL || *weights == NULL) {
        reply_error(req, 500, "InternalFailure", "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(targets, i);
        json_t *id = json_object_get(t, "Id"), *port = json_object_get(t, "Port");
        json_t *weight = json_object_get(t, "Weight");
        if (!json_is_string(id) || !json_is_integer(port)) {
            reply_error(req, 400, "ValidationError",
                        "Targets[%zu]: \"Id\" (string) and \"Port\" (integer) are required", i);
            goto fail;
        }
        json_int_t p = json_integer_value(port);
        if (p < 1 || p > 65535 ||
            bth_addr_from_ip_port(json_string_value(id), (unsigned)p, &(*addrs)[i]) != 0) {
            reply_error(req, 400, "InvalidTarget", "Targets[%zu]: invalid target %s:%lld", i,
                        json_string_value(id), (long long)p);
            goto fail;
        }
        json_int_t wv = 1;
        if (weight != NULL) {
            if (!json_is_integer(weight) || json_integer_value(weight) < 0 ||
                json_integer_value(weight) > 999) {
                reply_error(req, 400, "ValidationError", "Targets[%zu]: \"Weight\" must be 0..999",
                            i);
                goto fail;
            }
            wv = json_integer_value(weight);
        }
        (*weights)[i] = (unsigned)wv;
    }
    json_decref(root);
    return (int)n;
fail:
    bth_free(*addrs);
    bth_free(*weights);
    *addrs = NULL;
    *weights = NULL;
    json_decref(root);
    return -1;
}

/* A deregister call with "Wait": true, answered when its last target has drained. */
struct drain_wait {
    struct evhttp_request *req; /* NULL once the client went away */
    int pending;
};

static void on_wait_conn_close(struct evhttp_connection *evcon, void *arg)
{
    struct drain_wait *dw = arg;
    dw->req = NULL;
}

static void on_drain_done(void *arg)
{
    struct drain_wait *dw = arg;
    if (--dw->pending > 0)
        return;
    if (dw->req != NULL) {
        evhttp_connection_set_closecb(evhttp_request_get_connection(dw->req), NULL, NULL);
        reply_json(dw->req, 200, json_object());
    }
    bth_free(dw);
}

static void wait_for_drains(struct bth_control *c, struct evhttp_request *req,
                            struct bth_reg_group *g, const struct bth_addr *addrs, int n)
{
    struct drain_wait *dw = bth_calloc(1, sizeof(*dw));
    if (dw == NULL) {
        reply_error(req, 500, "InternalFailure", "out of memory");
        return;
    }
    dw->req = req;
    dw->pending = n + 1; /* the extra one keeps it alive until every waiter is registered */
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_wait_conn_close, dw);
    for (int i = 0; i < n; i++) {
        if (bth_registry_drain_wait(&c->app->registry, g, &addrs[i], on_drain_done, dw) != 0)
            on_drain_done(dw); /* out of memory: do not wait for this one */
    }
    on_drain_done(dw);
}

/* What a register or deregister call did to one target, so the call can be undone when its
 * result cannot be persisted. */
enum undo_op { UNDO_NOTHING, UNDO_REMOVE, UNDO_DRAIN, UNDO_CANCEL_DRAIN };

static enum undo_op undo_for(struct bth_registry *reg, struct bth_reg_group *g,
                             const struct bth_addr *addr, bool add)
{
    struct bth_target *t = bth_registry_find_target(g, addr);
    bool draining = t != NULL && bth_registry_find_drain(reg, t) != NULL;
    if (add)
        return t == NULL ? UNDO_REMOVE : draining ? UNDO_DRAIN : UNDO_NOTHING;
    return t != NULL && !draining ? UNDO_CANCEL_DRAIN : UNDO_NOTHING;
}

/* Puts the registry back as it was before the first <n> targets of the call. */
static void undo_changes(struct bth_registry *reg, struct bth_reg_group *g,
                         const struct bth_addr *addrs, const unsigned *weights,
                         const unsigned char *undo, int n, uint64_t now)
{
    for (int i = n - 1; i >= 0; i--) {
        switch ((enum undo_op)undo[i]) {
        case UNDO_REMOVE:
            bth_registry_deregister(reg, g, &addrs[i]);
            break;
        case UNDO_DRAIN:
            bth_registry_drain(reg, g, &addrs[i], now);
            break;
        case UNDO_CANCEL_DRAIN:
            bth_registry_register(reg, g, &addrs[i], weights[i]); /* cancels the drain */
            break;
        case UNDO_NOTHING:
            break;
        }
    }
}

/* Register or deregister: the change is made in the registry, persisted, and only then
 * published and acknowledged. When the state file cannot be written the change is undone
 * and the caller gets an error: an acknowledged change is never lost by a restart. */
static void handle_register(struct bth_control *c, struct evhttp_request *req,
                            struct bth_reg_group *g, bool add)
{
    struct bth_addr *addrs;
    unsigned *weights;
    int wait;
    int n = parse_targets(req, &addrs, &weights, &wait);
    if (n < 0)
        return;
    struct bth_registry *reg = &c->app->registry;
    unsigned char *undo = bth_malloc((size_t)n);
    uint64_t now = bth_clock_mono_ms();
    if (undo == NULL) {
        reply_error(req, 500, "InternalFailure", "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        undo[i] = (unsigned char)undo_for(reg, g, &addrs[i], add);
        int rc = add ? bth_registry_register(reg, g, &addrs[i], weights[i])
                     : bth_registry_drain(reg, g, &addrs[i], now);
        if (rc < 0) {
            undo_changes(reg, g, addrs, weights, undo, i, now);
            reply_error(req, 500, "InternalFailure", "out of memory; nothing changed");
            goto out;
        }
    }
    int saved = bth_app_save_state(c->app);
    if (saved != 0) {
        undo_changes(reg, g, addrs, weights, undo, n, now);
        reply_error(req, 500, "StateFileWriteFailed",
                    "state file %s could not be written (%s); nothing changed",
                    reg->config->cfg->state_file, strerror(-saved));
        goto out;
    }
    /* A drain with nothing in flight (or a zero delay) ends at once. */
    if (!add)
        bth_registry_drain_tick(reg, now);
    if (bth_app_apply(c->app) != 0) {
        reply_error(req, 500, "InternalFailure", "out of memory");
        goto out;
    }
    bth_log(BTH_LOG_NOTICE, "%s %d target(s) %s group %s", add ? "registered" : "deregistering", n,
            add ? "in" : "from", g->name);
    if (!add && wait)
        wait_for_drains(c, req, g, addrs, n);
    else
        reply_json(req, 200, json_object());
out:
    bth_free(undo);
    bth_free(addrs);
    bth_free(weights);
}

static void handle_reload(struct bth_control *c, struct evhttp_request *req)
{
    struct bth_err err;
    bth_err_init(&err);
    if (bth_app_reload(c->app, &err) == 0) {
        reply_json(req, 200, json_pack("{s:s}", "Result", "reloaded"));
    } else {
        json_t *lines = json_array();
        struct evbuffer *msg = evbuffer_new();
        for (size_t i = 0; i < err.n; i++) {
            json_array_append_new(lines, json_string(err.msgs[i]));
            evbuffer_add_printf(msg, "%s%s", i ? "; " : "", err.msgs[i]);
            bth_log(BTH_LOG_ERR, "%s", err.msgs[i]);
        }
        evbuffer_add(msg, "", 1);
        reply_json(req, 400,
                   json_pack("{s:{s:s,s:s,s:o}}", "Error", "Code", "ConfigInvalid", "Message",
                             (const char *)evbuffer_pullup(msg, -1), "Errors", lines));
        evbuffer_free(msg);
    }
    bth_err_fini(&err);
}

static void handle_metrics(struct bth_control *c, struct evhttp_request *req)
{
    struct evbuffer *out = evbuffer_new();
    bth_metrics_render(out, c->app->workers, c->app->nworkers, &c->app->registry);
    bth_discovery_metrics(c->app->discovery, out);
    reply_text(req, 200, "text/plain; version=0.0.4", out);
    evbuffer_free(out);
}

/* Routes /v1/target-groups/{name}/{verb}. */
static void handle_group_path(struct bth_control *c, struct evhttp_request *req, const char *rest,
                              enum evhttp_cmd_type method)
{
    char name[256];
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (n == 0 || n >= sizeof(name)) {
        reply_error(req, 404, "NotFound", "no such resource");
        return;
    }
    memcpy(name, rest, n);
    name[n] = '\0';
    const char *verb = slash ? slash + 1 : "";
    struct bth_reg_group *g = bth_registry_find_group(&c->app->registry, name);
    if (g == NULL) {
        reply_error(req, 404, "TargetGroupNotFound", "target group \"%s\" not found", name);
        return;
    }
    if (strcmp(verb, "health") == 0 && method == EVHTTP_REQ_GET)
        handle_health(c, req, g);
    else if (strcmp(verb, "register") == 0 && method == EVHTTP_REQ_POST)
        handle_register(c, req, g, true);
    else if (strcmp(verb, "deregister") == 0 && method == EVHTTP_REQ_POST)
        handle_register(c, req, g, false);
    else
        reply_error(req, 404, "NotFound", "no such resource");
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct bth_control *c = arg;
    const char *uri = evhttp_request_get_uri(req);
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    char path[1024];
    size_t plen = strcspn(uri, "?");
    if (plen >= sizeof(path)) {
        reply_error(req, 414, "ValidationError", "path too long");
        return;
    }
    memcpy(path, uri, plen);
    path[plen] = '\0';
    static const char groups_prefix[] = "/v1/target-groups/";
    if (strcmp(path, "/healthz") == 0) {
        struct evbuffer *out = evbuffer_new();
        evbuffer_add(out, "ok\n", 3);
        reply_text(req, 200, "text/plain", out);
        evbuffer_free(out);
    } else if (strcmp(path, "/v1/reload") == 0 && method == EVHTTP_REQ_POST) {
        handle_reload(c, req);
    } else if (strcmp(path, "/metrics") == 0) {
        handle_metrics(c, req);
    } else if (strcmp(path, "/v1/target-groups") == 0 && method == EVHTTP_REQ_GET) {
        handle_groups(c, req);
    } else if (strcmp(path, "/v1/config") == 0 && method == EVHTTP_REQ_GET) {
        reply_json(req, 200, bth_config_to_json(c->app->registry.config->cfg));
    } else if (strncmp(path, groups_prefix, sizeof(groups_prefix) - 1) == 0) {
        handle_group_path(c, req, path + sizeof(groups_prefix) - 1, method);
    } else {
        reply_error(req, 404, "NotFound", "no such resource: %s", path);
    }
}

/* The TCP control listener: every request needs "Authorization: Bearer <token>". */
static void on_tcp_request(struct evhttp_request *req, void *arg)
{
    struct bth_control *c = arg;
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    static const char bearer[] = "Bearer ";
    bool ok = false;
    if (auth != NULL && strncmp(auth, bearer, sizeof(bearer) - 1) == 0) {
        const char *given = auth + sizeof(bearer) - 1;
        size_t glen = strlen(given);
        /* Constant time over the token length; the length itself is not secret. */
        ok = glen == c->token_len && CRYPTO_memcmp(given, c->token, glen) == 0;
    }
    if (!ok) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Bearer realm=\"berth\"");
        reply_error(req, 401, "Unauthorized", "a valid Authorization: Bearer token is required");
        return;
    }
    on_request(req, c);
}

/* Reads the token file; refuses a missing, empty or world-readable file. */
static int read_token(struct bth_control *c, const char *file)
{
    struct stat st;
    if (stat(file, &st) != 0) {
        bth_log(BTH_LOG_ERR, "control token_file %s: %s", file, strerror(errno));
        return -1;
    }
    if (st.st_mode & S_IROTH) {
        bth_log(BTH_LOG_ERR,
                "control token_file %s is world-readable; refusing to start "
                "(chmod o-r)",
                file);
        return -1;
    }
    FILE *f = fopen(file, "r");
    char buf[1024];
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    if (n == 0) {
        bth_log(BTH_LOG_ERR, "control token_file %s is empty or unreadable", file);
        return -1;
    }
    c->token = bth_strndup(buf, n);
    c->token_len = n;
    OPENSSL_cleanse(buf, sizeof(buf));
    return c->token ? 0 : -1;
}

static int start_tcp(struct bth_control *c, const char *listen_addr)
{
    struct bth_addr a;
    if (bth_parse_addr(listen_addr, &a) != 0)
        return -1;
    c->tcp_http = evhttp_new(c->app->base);
    if (c->tcp_http == NULL)
        return -1;
    int fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd != -1)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd == -1 || bind(fd, (struct sockaddr *)&a.ss, a.len) == -1 || listen(fd, 128) == -1 ||
        accept_on(c, c->tcp_http, fd, 1) != 0) {
        bth_log(BTH_LOG_ERR, "control listen %s: bind() failed: %s", listen_addr, strerror(errno));
        if (fd != -1)
            close(fd);
        return -1;
    }
    evhttp_set_max_body_size(c->tcp_http, MAX_BODY_BYTES);
    evhttp_set_allowed_methods(c->tcp_http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_gencb(c->tcp_http, on_tcp_request, c);
    bth_log(BTH_LOG_NOTICE, "control listening on %s (token required)", listen_addr);
    return 0;
}

int bth_control_check_socket(const char *path)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        bth_log(BTH_LOG_ERR, "control socket %s: path too long", path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        bth_log(BTH_LOG_ERR, "control socket %s exists and is not a socket; refusing to replace it",
                path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return 0;
    int rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    close(fd);
    if (rc == 0) {
        bth_log(BTH_LOG_ERR,
                "control socket %s answers: another berth runs on it; refusing to start "
                "(give each berth its own control.socket)",
                path);
        return -1;
    }
    return 0; /* ECONNREFUSED: a stale socket left by a crash, replaced at bind */
}

static int bind_unix(const char *path)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path); /* stale socket from an earlier run */
    mode_t old = umask(0117);
    int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (rc == -1 || chmod(path, 0660) == -1 || listen(fd, 128) == -1) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

struct bth_control *bth_control_start(struct bth_app *app, const char *path)
{
    struct bth_control *c = bth_calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->app = app;
    c->path = bth_strdup(path);
    c->accept_timer = evtimer_new(app->base, on_accept_timer, c);
    if (c->accept_timer == NULL)
        goto fail;
    const struct bth_config *cfg = app->registry.config->cfg;
    /* The token is checked before anything is bound, so a refused start leaves no socket. */
    if (cfg->control_listen != NULL && read_token(c, cfg->control_token_file) != 0)
        goto fail;
    c->http = evhttp_new(app->base);
    int fd = bind_unix(path);
    if (fd == -1) {
        bth_log(BTH_LOG_ERR, "control socket %s: bind() failed: %s", path, strerror(errno));
        goto fail;
    }
    if (c->http == NULL || accept_on(c, c->http, fd, 0) != 0) {
        close(fd);
        goto fail;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        c->sock_dev = st.st_dev;
        c->sock_ino = st.st_ino;
    }
    evhttp_set_max_body_size(c->http, MAX_BODY_BYTES);
    evhttp_set_allowed_methods(c->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_gencb(c->http, on_request, c);
    if (cfg->control_listen != NULL && start_tcp(c, cfg->control_listen) != 0) {
        unlink(path);
        goto fail;
    }
    accepting_control = c;
    return c;
fail:
    if (c->tcp_http)
        evhttp_free(c->tcp_http);
    if (c->token) {
        OPENSSL_cleanse(c->token, c->token_len);
        bth_free(c->token);
    }
    if (c->http)
        evhttp_free(c->http);
    if (c->accept_timer)
        event_free(c->accept_timer);
    bth_free(c->path);
    bth_free(c);
    return NULL;
}

void bth_control_stop(struct bth_control *c)
{
    if (c == NULL)
        return;
    if (accepting_control == c)
        accepting_control = NULL;
    event_free(c->accept_timer);
    evhttp_free(c->http);
    if (c->tcp_http)
        evhttp_free(c->tcp_http);
    if (c->token) {
        OPENSSL_cleanse(c->token, c->token_len);
        bth_free(c->token);
    }
    /* Another process may have replaced the file since (a second berth, an operator):
     * only the socket this berth bound is removed. */
    struct stat st;
    if (lstat(c->path, &st) == 0 && st.st_dev == c->sock_dev && st.st_ino == c->sock_ino)
        unlink(c->path);
    bth_free(c->path);
    bth_free(c);
}
