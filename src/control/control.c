/* SPDX-License-Identifier: MIT */
/* Control API handlers. Every change goes registry first, then one snapshot publication,
 * so a call that fails validation changes nothing. HTTP itself is control_http.c's. */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
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
#include <jansson.h>
#include <openssl/crypto.h>

#include "balancer.h"
#include "clock.h"
#include "config.h"
#include "control_http.h"
#include "discovery.h"
#include "health.h"
#include "config_json.h"
#include "log.h"
#include "mem.h"
#include "registry.h"
#include "snapshot.h"
#include "target.h"

/* A register or deregister call names at most this many targets (ELB's limit per call is
 * of the same order); larger calls are refused whole. */
#define MAX_TARGETS_PER_CALL 1000
/* The token file is read whole; a longer one is refused, never cut. */
#define MAX_TOKEN_FILE_BYTES 4096

/* Open connections per listener; past them new ones get 503 and are closed. The Unix socket
 * (mode 0660) allows more: every container stop hook waiting on a drain holds one. */
#define TCP_MAX_CONNS  256
#define UNIX_MAX_CONNS 1024

struct bth_control {
    struct bth_control_deps deps;      /* borrowed pointers: the process's */
    struct bth_control_http *http;     /* owned: the Unix socket */
    struct bth_control_http *tcp_http; /* owned: control.listen, NULL when not configured */
    char *tcp_listen;                  /* owned: the address tcp_http is bound to */
    char *token;                       /* owned: Bearer token for tcp_http */
    size_t token_len;
    char *path;                                   /* owned */
    uint64_t request_timeout_ms, idle_timeout_ms; /* in force on both servers */
    dev_t sock_dev; /* the socket file berth created: only that one is unlinked on exit */
    ino_t sock_ino;
};

/* A prepared change of control.listen and the token (bth_control_reconfigure). */
struct bth_control_plan {
    char *token; /* owned: the token after the change; NULL without control.listen */
    size_t token_len;
    char *listen;                      /* owned: control.listen after the change, or NULL */
    struct bth_control_http *tcp_http; /* owned: bound, not yet accepting; NULL when none */
    bool replace_tcp;                  /* the running TCP server goes */
    uint64_t request_timeout_ms, idle_timeout_ms; /* control.request_timeout, idle_timeout */
};

/* Puts the control timeouts in force on both servers (their connections' next deadlines). */
static void set_timeouts(struct bth_control *c, uint64_t request_ms, uint64_t idle_ms)
{
    c->request_timeout_ms = request_ms;
    c->idle_timeout_ms = idle_ms;
    bth_control_http_set_timeouts(c->http, request_ms, idle_ms);
    bth_control_http_set_timeouts(c->tcp_http, request_ms, idle_ms);
}

static void reply_json(struct bth_control_req *req, int code, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    struct evbuffer *out = evbuffer_new();
    if (text != NULL && out != NULL) {
        evbuffer_add(out, text, strlen(text));
        evbuffer_add(out, "\n", 1);
    }
    if (text != NULL && out != NULL)
        bth_control_req_reply_buffer(req, code, "application/json", out);
    else
        bth_control_req_reply_error(req, 500, "InternalFailure", "out of memory");
    if (out)
        evbuffer_free(out);
    free(text);
    json_decref(body);
}

static void reply_error(struct bth_control_req *req, int code, const char *err, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

static void reply_error(struct bth_control_req *req, int code, const char *err, const char *fmt,
                        ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    bth_control_req_reply_error(req, code, err, msg);
}

static void reply_text(struct bth_control_req *req, int code, const char *ctype,
                       struct evbuffer *body)
{
    bth_control_req_reply_buffer(req, code, ctype, body);
}

static unsigned count_healthy(const struct bth_reg_group *g)
{
    unsigned n = 0;
    for (size_t i = 0; i < g->ntargets; i++)
        n += bth_target_takes_traffic(g->targets[i]);
    return n;
}

static void handle_groups(struct bth_control *c, struct bth_control_req *req)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < c->deps.registry->ngroups; i++) {
        const struct bth_reg_group *g = &c->deps.registry->groups[i];
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:I,s:I}", "TargetGroupName", g->name,
                                             "Protocol", bth_proto_name(g->cfg->protocol),
                                             "Algorithm", bth_algorithm_name(g->cfg->algorithm),
                                             "Targets", (json_int_t)g->ntargets, "HealthyTargets",
                                             (json_int_t)count_healthy(g)));
    }
    reply_json(req, 200, json_pack("{s:o}", "TargetGroups", arr));
}

static void handle_health(struct bth_control *c, struct bth_control_req *req,
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
    if (c->deps.ops->discovery(c->deps.arg, g->name, &ds)) {
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

/* Parses {"Targets":[{"Id":..,"Port":..,"Weight":..}]}, at most MAX_TARGETS_PER_CALL of them,
 * into <addrs>. Returns the count or -1 after replying with the error. */
static int parse_targets(struct bth_control_req *req, struct bth_addr **addrs, unsigned **weights,
                         int *wait)
{
    struct evbuffer *in = bth_control_req_body(req);
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
    if (n > MAX_TARGETS_PER_CALL) {
        reply_error(req, 400, "ValidationError", "\"Targets\" has %zu entries; at most %d per call",
                    n, MAX_TARGETS_PER_CALL);
        json_decref(root);
        return -1;
    }
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
        const char *why;
        if (!bth_addr_usable(&(*addrs)[i], &why)) {
            reply_error(req, 400, "InvalidTarget", "Targets[%zu]: unusable target %s: %s", i,
                        json_string_value(id), why);
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
    struct bth_control_req *req; /* NULL once the client went away */
    int pending;
};

static void on_wait_gone(void *arg)
{
    struct drain_wait *dw = arg;
    dw->req = NULL;
}

static void on_drain_done(void *arg)
{
    struct drain_wait *dw = arg;
    if (--dw->pending > 0)
        return;
    if (dw->req != NULL)
        reply_json(dw->req, 200, json_object()); /* also forgets on_wait_gone */
    bth_free(dw);
}

static void wait_for_drains(struct bth_control *c, struct bth_control_req *req,
                            struct bth_reg_group *g, const struct bth_addr *addrs, int n)
{
    struct drain_wait *dw = bth_calloc(1, sizeof(*dw));
    if (dw == NULL) {
        reply_error(req, 500, "InternalFailure", "out of memory");
        return;
    }
    dw->req = req;
    dw->pending = n + 1; /* the extra one keeps it alive until every waiter is registered */
    bth_control_req_on_gone(req, on_wait_gone, dw);
    for (int i = 0; i < n; i++) {
        if (bth_registry_drain_wait(c->deps.registry, g, &addrs[i], on_drain_done, dw) != 0)
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
static void handle_register(struct bth_control *c, struct bth_control_req *req,
                            struct bth_reg_group *g, bool add)
{
    struct bth_addr *addrs;
    unsigned *weights;
    int wait;
    int n = parse_targets(req, &addrs, &weights, &wait);
    if (n < 0)
        return;
    struct bth_registry *reg = c->deps.registry;
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
    int saved = c->deps.ops->save_state(c->deps.arg);
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
    if (c->deps.ops->apply(c->deps.arg) != 0) {
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

static void handle_reload(struct bth_control *c, struct bth_control_req *req)
{
    struct bth_err err;
    bth_err_init(&err);
    if (c->deps.ops->reload(c->deps.arg, &err) == 0) {
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

static void handle_metrics(struct bth_control *c, struct bth_control_req *req)
{
    struct evbuffer *out = evbuffer_new();
    c->deps.ops->metrics(c->deps.arg, out);
    reply_text(req, 200, "text/plain; version=0.0.4", out);
    evbuffer_free(out);
}

/* Routes /v1/target-groups/{name}/{verb}. */
static void handle_group_path(struct bth_control *c, struct bth_control_req *req, const char *rest,
                              enum bth_control_method method)
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
    struct bth_reg_group *g = bth_registry_find_group(c->deps.registry, name);
    if (g == NULL) {
        reply_error(req, 404, "TargetGroupNotFound", "target group \"%s\" not found", name);
        return;
    }
    if (strcmp(verb, "health") == 0 && method == BTH_CONTROL_GET)
        handle_health(c, req, g);
    else if (strcmp(verb, "register") == 0 && method == BTH_CONTROL_POST)
        handle_register(c, req, g, true);
    else if (strcmp(verb, "deregister") == 0 && method == BTH_CONTROL_POST)
        handle_register(c, req, g, false);
    else
        reply_error(req, 404, "NotFound", "no such resource");
}

static void on_request(struct bth_control_req *req, void *arg)
{
    struct bth_control *c = arg;
    const char *uri = bth_control_req_uri(req);
    enum bth_control_method method = bth_control_req_method(req);
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
    } else if (strcmp(path, "/v1/reload") == 0 && method == BTH_CONTROL_POST) {
        handle_reload(c, req);
    } else if (strcmp(path, "/metrics") == 0) {
        handle_metrics(c, req);
    } else if (strcmp(path, "/v1/target-groups") == 0 && method == BTH_CONTROL_GET) {
        handle_groups(c, req);
    } else if (strcmp(path, "/v1/config") == 0 && method == BTH_CONTROL_GET) {
        reply_json(req, 200, bth_config_to_json(c->deps.registry->config->cfg));
    } else if (strncmp(path, groups_prefix, sizeof(groups_prefix) - 1) == 0) {
        handle_group_path(c, req, path + sizeof(groups_prefix) - 1, method);
    } else {
        reply_error(req, 404, "NotFound", "no such resource: %s", path);
    }
}

/* The TCP control listener: every request needs "Authorization: Bearer <token>", checked as
 * soon as the head is in, so no unauthenticated body is ever read. */
static int on_tcp_head(struct bth_control_req *req, void *arg)
{
    struct bth_control *c = arg;
    const char *auth = bth_control_req_header(req, "Authorization");
    static const char bearer[] = "Bearer ";
    bool ok = false;
    if (auth != NULL && strncmp(auth, bearer, sizeof(bearer) - 1) == 0) {
        const char *given = auth + sizeof(bearer) - 1;
        size_t glen = strlen(given);
        /* Constant time over the token length; the length itself is not secret. */
        ok = glen == c->token_len && CRYPTO_memcmp(given, c->token, glen) == 0;
    }
    if (!ok) {
        bth_control_req_add_header(req, "WWW-Authenticate", "Bearer realm=\"berth\"");
        reply_error(req, 401, "Unauthorized", "a valid Authorization: Bearer token is required");
        return -1;
    }
    return 0;
}

int bth_control_read_token(const char *file, char **token, size_t *token_len, char *why,
                           size_t whysz)
{
    char buf[MAX_TOKEN_FILE_BYTES + 1];
    size_t n = 0;
    int rc = -1;
    struct stat st;
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd == -1 || fstat(fd, &st) != 0) {
        snprintf(why, whysz, "control.token_file %s: %s", file, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, whysz, "control.token_file %s is not a regular file", file);
        goto out;
    }
    if (st.st_mode & S_IROTH) {
        snprintf(why, whysz, "control.token_file %s is world-readable; refusing it (chmod o-r)",
                 file);
        goto out;
    }
    /* One byte more than allowed tells a long file from one that fits exactly. */
    while (n < sizeof(buf)) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            snprintf(why, whysz, "control.token_file %s: read() failed: %s", file, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > MAX_TOKEN_FILE_BYTES) {
        snprintf(why, whysz, "control.token_file %s is longer than %d bytes", file,
                 MAX_TOKEN_FILE_BYTES);
        goto out;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    if (n == 0) {
        snprintf(why, whysz, "control.token_file %s is empty or unreadable", file);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch < 0x20 || ch == 0x7f) {
            snprintf(why, whysz,
                     "control.token_file %s: the token has a control character (byte %zu); "
                     "one line expected",
                     file, i + 1);
            goto out;
        }
    }
    *token = bth_strndup(buf, n);
    *token_len = n;
    if (*token == NULL) {
        snprintf(why, whysz, "control.token_file %s: out of memory", file);
        goto out;
    }
    rc = 0;
out:
    if (fd != -1)
        close(fd);
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

void bth_control_free_token(char *token, size_t len)
{
    if (token != NULL) {
        OPENSSL_cleanse(token, len);
        bth_free(token);
    }
}

/* A TCP server on <listen_addr>, bound and listening but not accepting yet. Returns it, or
 * NULL with one line saying why in <why>. */
static struct bth_control_http *bind_tcp(struct bth_control *c, const char *listen_addr, char *why,
                                         size_t whysz)
{
    struct bth_addr a;
    if (bth_parse_addr(listen_addr, &a) != 0) {
        snprintf(why, whysz, "control listen %s: invalid address", listen_addr);
        return NULL;
    }
    int fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd != -1)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd == -1 || bind(fd, (struct sockaddr *)&a.ss, a.len) == -1 || listen(fd, 128) == -1) {
        snprintf(why, whysz, "control listen %s: bind() failed: %s", listen_addr, strerror(errno));
        if (fd != -1)
            close(fd);
        return NULL;
    }
    char name[96];
    snprintf(name, sizeof(name), "control listen %s", listen_addr);
    struct bth_control_http *h =
        bth_control_http_create(c->deps.base, fd, name, TCP_MAX_CONNS, on_tcp_head, on_request, c);
    if (h == NULL)
        snprintf(why, whysz, "control listen %s: out of memory", listen_addr);
    return h;
}

static int start_tcp(struct bth_control *c, const char *listen_addr)
{
    char why[512];
    c->tcp_http = bind_tcp(c, listen_addr, why, sizeof(why));
    c->tcp_listen = bth_strdup(listen_addr);
    if (c->tcp_http == NULL || c->tcp_listen == NULL) {
        bth_log(BTH_LOG_ERR, "%s", c->tcp_http == NULL ? why : "out of memory");
        return -1;
    }
    bth_control_http_set_timeouts(c->tcp_http, c->request_timeout_ms, c->idle_timeout_ms);
    bth_control_http_start(c->tcp_http);
    bth_log(BTH_LOG_NOTICE, "control listening on %s (token required)", listen_addr);
    return 0;
}

/* <sun> for <path>; -1 with errno ENAMETOOLONG when it does not fit. */
static int unix_address(const char *path, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun->sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sun->sun_path, path);
    return 0;
}

int bth_control_check_socket(const char *path)
{
    struct sockaddr_un sun;
    if (unix_address(path, &sun) != 0) {
        bth_log(BTH_LOG_ERR, "control socket %s: path too long", path);
        return -1;
    }
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
    if (unix_address(path, &sun) != 0)
        return -1;
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

struct bth_control *bth_control_start(const struct bth_control_deps *deps, const char *path)
{
    struct bth_control *c = bth_calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->deps = *deps;
    c->path = bth_strdup(path);
    const struct bth_config *cfg = deps->registry->config->cfg;
    char why[512], name[160];
    /* The token is checked before anything is bound, so a refused start leaves no socket. */
    if (cfg->control_listen != NULL &&
        bth_control_read_token(cfg->control_token_file, &c->token, &c->token_len, why,
                               sizeof(why)) != 0) {
        bth_log(BTH_LOG_ERR, "%s", why);
        goto fail;
    }
    int fd = bind_unix(path);
    if (fd == -1) {
        bth_log(BTH_LOG_ERR, "control socket %s: bind() failed: %s", path, strerror(errno));
        goto fail;
    }
    snprintf(name, sizeof(name), "control socket %s", path);
    c->http = bth_control_http_create(deps->base, fd, name, UNIX_MAX_CONNS, NULL, on_request, c);
    if (c->http == NULL) {
        unlink(path);
        goto fail;
    }
    set_timeouts(c, cfg->control_request_timeout_ms, cfg->control_idle_timeout_ms);
    bth_control_http_start(c->http);
    struct stat st;
    if (lstat(path, &st) == 0) {
        c->sock_dev = st.st_dev;
        c->sock_ino = st.st_ino;
    }
    if (cfg->control_listen != NULL && start_tcp(c, cfg->control_listen) != 0) {
        unlink(path);
        goto fail;
    }
    return c;
fail:
    bth_control_http_destroy(c->tcp_http);
    bth_free(c->tcp_listen);
    bth_control_free_token(c->token, c->token_len);
    bth_control_http_destroy(c->http);
    bth_free(c->path);
    bth_free(c);
    return NULL;
}

void bth_control_plan_free(struct bth_control_plan *plan)
{
    if (plan == NULL)
        return;
    bth_control_free_token(plan->token, plan->token_len);
    bth_free(plan->listen);
    bth_control_http_destroy(plan->tcp_http); /* never started: it has no connection */
    bth_free(plan);
}

static bool same_str(const char *a, const char *b)
{
    return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

int bth_control_reconfigure(struct bth_control *c, const struct bth_config *cfg,
                            struct bth_control_plan **out, struct bth_err *err)
{
    char why[512] = "control: out of memory";
    struct bth_control_plan *plan = bth_calloc(1, sizeof(*plan));
    *out = NULL;
    if (plan == NULL)
        goto fail;
    if (cfg->control_listen != NULL &&
        (bth_control_read_token(cfg->control_token_file, &plan->token, &plan->token_len, why,
                                sizeof(why)) != 0 ||
         (plan->listen = bth_strdup(cfg->control_listen)) == NULL))
        goto fail;
    if (!same_str(c->path, cfg->control_socket))
        bth_log(BTH_LOG_WARN, "control.socket changed to %s: %s stays until a restart",
                cfg->control_socket, c->path);
    plan->replace_tcp = !same_str(c->tcp_listen, cfg->control_listen);
    plan->request_timeout_ms = cfg->control_request_timeout_ms;
    plan->idle_timeout_ms = cfg->control_idle_timeout_ms;
    /* A new address is bound now, so a busy port fails the reload before anything changes. */
    if (plan->replace_tcp && cfg->control_listen != NULL &&
        (plan->tcp_http = bind_tcp(c, cfg->control_listen, why, sizeof(why))) == NULL)
        goto fail;
    *out = plan;
    return 0;
fail:
    bth_err_add(err, "%s: %s", cfg->path, why);
    bth_control_plan_free(plan);
    return -1;
}

void bth_control_apply(struct bth_control *c, struct bth_control_plan *plan)
{
    bool token_changed =
        plan->token != NULL && (plan->token_len != c->token_len ||
                                CRYPTO_memcmp(plan->token, c->token, plan->token_len) != 0);
    bth_control_free_token(c->token, c->token_len);
    c->token = plan->token;
    c->token_len = plan->token_len;
    plan->token = NULL;
    set_timeouts(c, plan->request_timeout_ms, plan->idle_timeout_ms);
    if (plan->replace_tcp) {
        if (c->tcp_http != NULL)
            bth_log(BTH_LOG_NOTICE, "control no longer listening on %s", c->tcp_listen);
        /* Its connections close now; one carrying this very reload answers first. */
        bth_control_http_destroy(c->tcp_http);
        bth_free(c->tcp_listen);
        c->tcp_http = plan->tcp_http;
        c->tcp_listen = plan->listen;
        plan->tcp_http = NULL;
        plan->listen = NULL;
        if (c->tcp_http != NULL) {
            bth_control_http_set_timeouts(c->tcp_http, c->request_timeout_ms, c->idle_timeout_ms);
            bth_control_http_start(c->tcp_http);
            bth_log(BTH_LOG_NOTICE, "control listening on %s (token required)", c->tcp_listen);
        }
    } else if (token_changed && c->tcp_http != NULL) {
        bth_log(BTH_LOG_NOTICE, "control listen %s: new token in force", c->tcp_listen);
    }
    bth_control_plan_free(plan);
}

void bth_control_stop(struct bth_control *c)
{
    if (c == NULL)
        return;
    bth_control_http_destroy(c->http);
    bth_control_http_destroy(c->tcp_http);
    bth_free(c->tcp_listen);
    bth_control_free_token(c->token, c->token_len);
    /* Another process may have replaced the file since (a second berth, an operator):
     * only the socket this berth bound is removed. */
    struct stat st;
    if (lstat(c->path, &st) == 0 && st.st_dev == c->sock_dev && st.st_ino == c->sock_ino)
        unlink(c->path);
    bth_free(c->path);
    bth_free(c);
}
