/* SPDX-License-Identifier: MIT */
/* struct bth_config rendered as JSON for GET /v1/config. Main thread only. Keys follow the
 * config file so the answer reads like the file that produced it, with every default filled
 * in. Source marks (line:col) are left out: they describe the file, not the config. Secrets
 * never appear: token_file and cookie_key_file are paths, and their contents are not read. */
#include "config_json.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>

#include "config.h"

/* Every builder below returns a new reference or NULL; put() and push() take the reference
 * and clear <*ok> when anything was NULL, so one check at the end catches out-of-memory. */
static void put(json_t *obj, const char *key, json_t *v, bool *ok)
{
    if (v == NULL || json_object_set_new(obj, key, v) != 0)
        *ok = false;
}

static void push(json_t *arr, json_t *v, bool *ok)
{
    if (v == NULL || json_array_append_new(arr, v) != 0)
        *ok = false;
}

char *bth_config_fmt_duration(uint64_t ms, char *buf, size_t len)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
    /* 0 is a multiple of every unit; "0s" reads better than "0d". Index 3 is "s". */
    size_t i = ms == 0 ? 3 : 0;
    while (ms % units[i].ms != 0) /* ends at "ms" at the latest */
        i++;
    snprintf(buf, len, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].unit);
    return buf;
}

static json_t *dur(uint64_t ms)
{
    char buf[32];
    return json_string(bth_config_fmt_duration(ms, buf, sizeof(buf)));
}

static json_t *str(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

static json_t *size(size_t bytes)
{
    return json_integer((json_int_t)bytes);
}

const char *bth_stickiness_name(enum bth_stickiness_type t)
{
    static const char *const names[] = {"none", "lb_cookie", "app_cookie", "source_ip"};
    return (size_t)t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

const char *bth_action_type_name(enum bth_action_type t)
{
    static const char *const names[] = {"forward", "redirect", "fixed_response"};
    return (size_t)t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

static json_t *strlist(const struct bth_strlist *l, bool *ok)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < l->n; i++)
        push(arr, json_string(l->v[i]), ok);
    return arr;
}

/* headers/query conditions: {"x-env": ["canary*"]}. */
static json_t *kv_conds(const struct bth_cfg_kv_cond *kv, size_t n, bool *ok)
{
    json_t *obj = json_object();
    for (size_t i = 0; i < n; i++)
        put(obj, kv[i].key, strlist(&kv[i].values, ok), ok);
    return obj;
}

/* Only the conditions a rule sets: an absent one matches anything, while an empty list
 * would read as "matches nothing". */
static json_t *conditions(const struct bth_cfg_rule *r, bool *ok)
{
    json_t *obj = json_object();
    if (r->host.n > 0)
        put(obj, "host", strlist(&r->host, ok), ok);
    if (r->path.n > 0)
        put(obj, "path", strlist(&r->path, ok), ok);
    if (r->method.n > 0)
        put(obj, "method", strlist(&r->method, ok), ok);
    if (r->nheaders > 0)
        put(obj, "headers", kv_conds(r->headers, r->nheaders, ok), ok);
    if (r->nquery > 0)
        put(obj, "query", kv_conds(r->query, r->nquery, ok), ok);
    if (r->source_ip.n > 0)
        put(obj, "source_ip", strlist(&r->source_ip, ok), ok);
    return obj;
}

static json_t *forward(const struct bth_cfg_action *a, bool *ok)
{
    json_t *obj = json_object(), *groups = json_array();
    for (size_t i = 0; i < a->ngroups; i++) {
        json_t *ref = json_object();
        put(ref, "name", json_string(a->groups[i].name), ok);
        put(ref, "weight", json_integer(a->groups[i].weight), ok);
        push(groups, ref, ok);
    }
    put(obj, "target_groups", groups, ok);
    put(obj, "stickiness", dur(a->stickiness_ms), ok); /* "0s": off */
    return obj;
}

/* A null component keeps the request's value ("#{host}" and so on). */
static json_t *redirect(const struct bth_cfg_action *a, bool *ok)
{
    json_t *obj = json_object();
    put(obj, "protocol", str(a->redirect_protocol), ok);
    put(obj, "host", str(a->redirect_host), ok);
    put(obj, "port", str(a->redirect_port), ok);
    put(obj, "path", str(a->redirect_path), ok);
    put(obj, "query", str(a->redirect_query), ok);
    put(obj, "status", json_integer(a->redirect_status), ok);
    return obj;
}

static json_t *fixed_response(const struct bth_cfg_action *a, bool *ok)
{
    json_t *obj = json_object();
    put(obj, "status", json_integer(a->fixed_status), ok);
    put(obj, "content_type", str(a->fixed_content_type), ok);
    put(obj, "body", str(a->fixed_body), ok);
    return obj;
}

/* {"forward": {...}}, as the file writes it. */
static json_t *action(const struct bth_cfg_action *a, bool *ok)
{
    json_t *obj = json_object();
    json_t *v = NULL;
    switch (a->type) {
    case BTH_ACTION_FORWARD:
        v = forward(a, ok);
        break;
    case BTH_ACTION_REDIRECT:
        v = redirect(a, ok);
        break;
    case BTH_ACTION_FIXED_RESPONSE:
        v = fixed_response(a, ok);
        break;
    }
    put(obj, bth_action_type_name(a->type), v, ok);
    return obj;
}

static json_t *rule(const struct bth_cfg_rule *r, bool *ok)
{
    json_t *obj = json_object();
    put(obj, "priority", json_integer(r->priority), ok);
    put(obj, "conditions", conditions(r, ok), ok);
    put(obj, "action", action(&r->action, ok), ok);
    return obj;
}

static json_t *listener(const struct bth_cfg_listener *l, bool *ok)
{
    json_t *obj = json_object(), *certs = json_array(), *rules = json_array();
    put(obj, "name", str(l->name), ok);
    put(obj, "protocol", json_string(bth_proto_name(l->protocol)), ok);
    put(obj, "bind", json_string(l->bind.text), ok);
    put(obj, "reuse_port", json_boolean(l->reuse_port), ok);
    put(obj, "idle_timeout", dur(l->idle_timeout_ms), ok);
    put(obj, "header_timeout", dur(l->header_timeout_ms), ok);
    put(obj, "body_timeout", dur(l->body_timeout_ms), ok);
    put(obj, "min_body_rate", json_integer(l->min_body_rate), ok);
    put(obj, "max_request_line", size(l->max_request_line_bytes), ok);
    put(obj, "max_header_size", size(l->max_header_bytes), ok);
    if (l->protocol == BTH_PROTO_HTTP || l->protocol == BTH_PROTO_HTTPS) {
        json_t *h2 = json_object();
        put(h2, "enabled", json_boolean(l->http2.enabled), ok);
        put(h2, "max_concurrent_streams", json_integer(l->http2.max_concurrent_streams), ok);
        put(h2, "initial_window_size", size(l->http2.initial_window_size), ok);
        put(h2, "max_frame_size", size(l->http2.max_frame_size), ok);
        put(h2, "max_header_list_size", size(l->http2.max_header_list_size), ok);
        put(h2, "ping_interval", dur(l->http2.ping_interval_ms), ok);
        put(obj, "http2", h2, ok);
        if (l->protocol == BTH_PROTO_HTTP)
            put(obj, "h2c", json_boolean(l->h2c), ok);
    }
    for (size_t i = 0; i < l->ncertificates; i++) {
        json_t *c = json_object();
        put(c, "cert", json_string(l->certificates[i].cert), ok);
        put(c, "key", json_string(l->certificates[i].key), ok); /* the path, not the key */
        push(certs, c, ok);
    }
    put(obj, "certificates", certs, ok);
    put(obj, "ssl_policy", str(l->ssl_policy), ok);
    for (size_t i = 0; i < l->nrules; i++)
        push(rules, rule(&l->rules[i], ok), ok);
    put(obj, "rules", rules, ok);
    put(obj, "default_action", action(&l->default_action, ok), ok);
    return obj;
}

static json_t *health_check(const struct bth_cfg_health_check *hc, bool *ok)
{
    json_t *obj = json_object();
    put(obj, "enabled", json_boolean(hc->enabled), ok);
    put(obj, "protocol", json_string(bth_proto_name(hc->protocol)), ok);
    put(obj, "port", hc->port == 0 ? json_string("traffic-port") : json_integer(hc->port), ok);
    put(obj, "path", str(hc->path), ok);
    put(obj, "interval", dur(hc->interval_ms), ok);
    put(obj, "timeout", dur(hc->timeout_ms), ok);
    put(obj, "healthy_threshold", json_integer(hc->healthy_threshold), ok);
    put(obj, "unhealthy_threshold", json_integer(hc->unhealthy_threshold), ok);
    put(obj, "matcher", str(hc->matcher), ok);
    put(obj, "tls_verify", json_boolean(hc->tls_verify), ok);
    return obj;
}

static json_t *outlier(const struct bth_cfg_outlier *od, bool *ok)
{
    json_t *obj = json_object();
    put(obj, "enabled", json_boolean(od->enabled), ok);
    put(obj, "consecutive_errors", json_integer(od->consecutive_errors), ok);
    put(obj, "base_ejection_time", dur(od->base_ejection_ms), ok);
    put(obj, "max_ejection_percent", json_integer(od->max_ejection_percent), ok);
    return obj;
}

static json_t *stickiness(const struct bth_cfg_target_group *g, bool *ok)
{
    json_t *obj = json_object();
    put(obj, "type", json_string(bth_stickiness_name(g->stickiness)), ok);
    put(obj, "duration", dur(g->stickiness_duration_ms), ok);
    put(obj, "cookie", str(g->stickiness_cookie), ok);
    return obj;
}

/* null when the group has no discovery block. */
static json_t *discovery(const struct bth_cfg_discovery *d, bool *ok)
{
    static const char *const types[] = {"A", "AAAA", "SRV"};
    if (d->dns == NULL)
        return json_null();
    json_t *obj = json_object(), *rs = json_array();
    put(obj, "dns", json_string(d->dns), ok);
    put(obj, "type", json_string(types[d->type]), ok);
    put(obj, "port", d->port ? json_integer(d->port) : json_null(), ok);
    put(obj, "interval", dur(d->interval_ms), ok);
    for (size_t i = 0; i < d->nresolvers; i++)
        push(rs, json_string(d->resolvers[i].text), ok);
    put(obj, "resolvers", rs, ok); /* []: /etc/resolv.conf */
    return obj;
}

/* {id, port, weight}: the mapping form of a target, as the ELBv2 API names its parts. */
static json_t *target(const struct bth_cfg_target *t, bool *ok)
{
    char ip[INET6_ADDRSTRLEN];
    unsigned port;
    bth_addr_split(&t->addr, ip, sizeof(ip), &port);
    json_t *obj = json_object();
    put(obj, "id", json_string(ip), ok);
    put(obj, "port", json_integer(port), ok);
    put(obj, "weight", json_integer(t->weight), ok);
    return obj;
}

static json_t *group(const struct bth_cfg_target_group *g, bool *ok)
{
    json_t *obj = json_object(), *targets = json_array();
    put(obj, "name", json_string(g->name), ok);
    put(obj, "protocol", json_string(bth_proto_name(g->protocol)), ok);
    put(obj, "protocol_version", json_string(bth_proto_version_name(g->protocol_version)), ok);
    put(obj, "algorithm", json_string(bth_algorithm_name(g->algorithm)), ok);
    put(obj, "deregistration_delay", dur(g->deregistration_delay_ms), ok);
    put(obj, "slow_start", dur(g->slow_start_ms), ok); /* "0s": off */
    put(obj, "stickiness", stickiness(g, ok), ok);
    put(obj, "proxy_protocol_v2", json_boolean(g->proxy_protocol_v2), ok);
    put(obj, "connection_termination", json_boolean(g->connection_termination), ok);
    put(obj, "health_check", health_check(&g->health_check, ok), ok);
    put(obj, "outlier_detection", outlier(&g->outlier_detection, ok), ok);
    for (size_t i = 0; i < g->ntargets; i++)
        push(targets, target(&g->targets[i], ok), ok);
    put(obj, "targets", targets, ok);
    put(obj, "discovery", discovery(&g->discovery, ok), ok);
    return obj;
}

static json_t *control(const struct bth_config *cfg, bool *ok)
{
    json_t *obj = json_object();
    put(obj, "socket", str(cfg->control_socket), ok);
    put(obj, "listen", str(cfg->control_listen), ok);
    put(obj, "token_file", str(cfg->control_token_file), ok); /* the path, never the token */
    put(obj, "request_timeout", dur(cfg->control_request_timeout_ms), ok);
    put(obj, "idle_timeout", dur(cfg->control_idle_timeout_ms), ok);
    return obj;
}

json_t *bth_config_to_json(const struct bth_config *cfg)
{
    bool ok = true;
    json_t *root = json_object(), *listeners = json_array(), *groups = json_array();
    put(root, "config_file", str(cfg->path), &ok);
    put(root, "workers", cfg->workers == 0 ? json_string("auto") : json_integer(cfg->workers), &ok);
    put(root, "control", control(cfg, &ok), &ok);
    put(root, "state_file", str(cfg->state_file), &ok);
    put(root, "state_file_recovery",
        json_string(cfg->state_file_recovery == BTH_STATE_MOVE_ASIDE ? "move_aside" : "fail"), &ok);
    put(root, "cookie_key_file", str(cfg->cookie_key_file), &ok);
    put(root, "access_log", str(cfg->access_log), &ok);
    put(root, "shutdown_timeout", dur(cfg->shutdown_timeout_ms), &ok);
    put(root, "log_level", str(cfg->log_level), &ok);
    for (size_t i = 0; i < cfg->nlisteners; i++)
        push(listeners, listener(&cfg->listeners[i], &ok), &ok);
    put(root, "listeners", listeners, &ok);
    for (size_t i = 0; i < cfg->ntarget_groups; i++)
        push(groups, group(&cfg->target_groups[i], &ok), &ok);
    put(root, "target_groups", groups, &ok);
    if (!ok) {
        json_decref(root);
        return NULL;
    }
    return root;
}
