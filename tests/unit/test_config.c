/* SPDX-License-Identifier: MIT */
/* Config loading: a full config with every field checked, defaults, the embedded default
 * and conf/berth.yaml, one exact FILE:LINE:COL message per error class, and inputs that
 * must fail cleanly (run under ASan/valgrind). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static struct bth_config *load(const char *yaml, struct bth_err *err)
{
    bth_err_init(err);
    return bth_config_load_buffer("t.yaml", yaml, strlen(yaml), err);
}

/* Loads <yaml>, which must be valid. */
static struct bth_config *load_ok(const char *yaml)
{
    struct bth_err err;
    struct bth_config *cfg = load(yaml, &err);
    for (size_t i = 0; i < err.n; i++)
        print_error("unexpected: %s\n", err.msgs[i]);
    assert_int_equal(err.n, 0);
    assert_non_null(cfg);
    bth_err_fini(&err);
    return cfg;
}

static const char full_yaml[] =
    "workers: 4\n"
    "control:\n"
    "  socket: /run/berth/control.sock\n"
    "  listen: 127.0.0.1:9901\n"
    "  token_file: /etc/berth/token\n"
    "state_file: /var/lib/berth/state.json\n"
    "cookie_key_file: /etc/berth/cookie.key\n"
    "access_log: /var/log/berth/access.log\n"
    "shutdown_timeout: 45s\n"
    "log_level: DEBUG\n"
    "listeners:\n"
    "  - name: public\n"
    "    protocol: HTTPS\n"
    "    bind: \"[::]:443\"\n"
    "    idle_timeout: 2m\n"
    "    header_timeout: 5s\n"
    "    max_request_line: 8k\n"
    "    max_header_size: 1m\n"
    "    certificates: [{cert: /etc/berth/a.pem, key: /etc/berth/a.key}, {cert: b.pem, key: "
    "b.key}]\n"
    "    ssl_policy: ELBSecurityPolicy-TLS13-1-2-2021-06\n"
    "    rules:\n"
    "      - priority: 20\n"
    "        conditions: {path: \"/old/*\"}\n"
    "        action: {redirect: {protocol: https, port: \"443\", path: \"/new/#{path}\", status: "
    "301}}\n"
    "      - priority: 10\n"
    "        conditions:\n"
    "          host: [\"api.example.com\", \"*.example.org\"]\n"
    "          path: [\"/api/*\"]\n"
    "          method: [GET, POST]\n"
    "          headers: {x-env: [\"canary*\"], x-team: a}\n"
    "          query: {version: [\"2\", \"3\"]}\n"
    "          source_ip: [\"10.0.0.0/8\", \"fd00::/8\"]\n"
    "        action:\n"
    "          forward:\n"
    "            target_groups: [{name: api-v2, weight: 90}, {name: api-v1, weight: 10}]\n"
    "            stickiness: 10m\n"
    "      - priority: 30\n"
    "        conditions: {method: DELETE}\n"
    "        action: {fixed_response: {status: 403, content_type: text/plain, body: \"no\"}}\n"
    "    default_action: {forward: {target_groups: [{name: api-v1}]}}\n"
    "  - protocol: TCP\n"
    "    bind: 10.0.0.1:5432\n"
    "    default_action: {forward: {target_group: db}}\n"
    "  - protocol: UDP\n"
    "    bind: 10.0.0.1:53\n"
    "    default_action: {forward: {target_group: dns}}\n"
    "target_groups:\n"
    "  - name: api-v1\n"
    "    targets: [\"10.0.1.5:8080\", {id: 10.0.1.6, port: 8080, weight: 2}, \"[fd00::5]:8080\"]\n"
    "  - name: api-v2\n"
    "    protocol: HTTPS\n"
    "    algorithm: least_outstanding_requests\n"
    "    deregistration_delay: 0s\n"
    "    slow_start: 30s\n"
    "    stickiness: {type: app_cookie, cookie: SESSION, duration: 1h}\n"
    "    health_check:\n"
    "      enabled: false\n"
    "      protocol: HTTP\n"
    "      port: 8081\n"
    "      path: /healthz\n"
    "      interval: 10s\n"
    "      timeout: 3s\n"
    "      healthy_threshold: 3\n"
    "      unhealthy_threshold: 4\n"
    "      matcher: \"200,302\"\n"
    "  - name: db\n"
    "    protocol: TCP\n"
    "    stickiness: {type: source_ip}\n"
    "    proxy_protocol_v2: true\n"
    "    connection_termination: true\n"
    "    targets: [{id: \"fd00::7\", port: 5432}]\n"
    "  - name: dns\n"
    "    protocol: UDP\n"
    "    algorithm: weighted_random\n"
    "    health_check: {port: 53, matcher: 200-399}\n";

static void check_full_top(const struct bth_config *cfg)
{
    assert_string_equal(cfg->path, "t.yaml");
    assert_int_equal(cfg->workers, 4);
    assert_string_equal(cfg->control_socket, "/run/berth/control.sock");
    assert_string_equal(cfg->control_listen, "127.0.0.1:9901");
    assert_string_equal(cfg->control_token_file, "/etc/berth/token");
    assert_string_equal(cfg->state_file, "/var/lib/berth/state.json");
    assert_string_equal(cfg->cookie_key_file, "/etc/berth/cookie.key");
    assert_string_equal(cfg->access_log, "/var/log/berth/access.log");
    assert_true(cfg->shutdown_timeout_ms == 45000);
    assert_string_equal(cfg->log_level, "debug");
    assert_int_equal(cfg->nlisteners, 3);
    assert_int_equal(cfg->ntarget_groups, 4);
}

static void check_full_public(const struct bth_cfg_listener *l)
{
    assert_string_equal(l->name, "public");
    assert_int_equal(l->protocol, BTH_PROTO_HTTPS);
    assert_string_equal(l->bind.text, "[::]:443");
    assert_true(l->idle_timeout_ms == 120000);
    assert_true(l->header_timeout_ms == 5000);
    assert_int_equal(l->max_request_line_bytes, 8192);
    assert_int_equal(l->max_header_bytes, 1048576);
    assert_int_equal(l->ncertificates, 2);
    assert_string_equal(l->certificates[0].cert, "/etc/berth/a.pem");
    assert_string_equal(l->certificates[0].key, "/etc/berth/a.key");
    assert_string_equal(l->certificates[1].cert, "b.pem");
    assert_string_equal(l->certificates[1].key, "b.key");
    assert_string_equal(l->ssl_policy, "ELBSecurityPolicy-TLS13-1-2-2021-06");
    assert_int_equal(l->mark.line, 12);
    assert_int_equal(l->mark.col, 5);
    assert_int_equal(l->default_action.type, BTH_ACTION_FORWARD);
    assert_int_equal(l->default_action.ngroups, 1);
    assert_string_equal(l->default_action.groups[0].name, "api-v1");
    assert_int_equal(l->default_action.groups[0].weight, 1);
    assert_true(l->default_action.stickiness_ms == 0);

    /* Rules come sorted by priority. */
    assert_int_equal(l->nrules, 3);
    const struct bth_cfg_rule *r = &l->rules[0];
    assert_int_equal(r->priority, 10);
    assert_int_equal(r->mark.line, 25);
    assert_int_equal(r->host.n, 2);
    assert_string_equal(r->host.v[0], "api.example.com");
    assert_string_equal(r->host.v[1], "*.example.org");
    assert_int_equal(r->path.n, 1);
    assert_string_equal(r->path.v[0], "/api/*");
    assert_int_equal(r->method.n, 2);
    assert_string_equal(r->method.v[1], "POST");
    assert_int_equal(r->nheaders, 2);
    assert_string_equal(r->headers[0].key, "x-env");
    assert_int_equal(r->headers[0].values.n, 1);
    assert_string_equal(r->headers[0].values.v[0], "canary*");
    assert_string_equal(r->headers[1].key, "x-team");
    assert_string_equal(r->headers[1].values.v[0], "a");
    assert_int_equal(r->nquery, 1);
    assert_string_equal(r->query[0].key, "version");
    assert_int_equal(r->query[0].values.n, 2);
    assert_string_equal(r->query[0].values.v[1], "3");
    assert_int_equal(r->source_ip.n, 2);
    assert_string_equal(r->source_ip.v[1], "fd00::/8");
    assert_int_equal(r->action.type, BTH_ACTION_FORWARD);
    assert_int_equal(r->action.ngroups, 2);
    assert_string_equal(r->action.groups[0].name, "api-v2");
    assert_int_equal(r->action.groups[0].weight, 90);
    assert_int_equal(r->action.groups[0].mark.line, 35);
    assert_int_equal(r->action.groups[0].mark.col, 36);
    assert_string_equal(r->action.groups[1].name, "api-v1");
    assert_int_equal(r->action.groups[1].weight, 10);
    assert_true(r->action.stickiness_ms == 600000);

    r = &l->rules[1];
    assert_int_equal(r->priority, 20);
    assert_int_equal(r->path.n, 1);
    assert_string_equal(r->path.v[0], "/old/*");
    assert_int_equal(r->host.n, 0);
    assert_int_equal(r->action.type, BTH_ACTION_REDIRECT);
    assert_string_equal(r->action.redirect_protocol, "HTTPS");
    assert_null(r->action.redirect_host);
    assert_string_equal(r->action.redirect_port, "443");
    assert_string_equal(r->action.redirect_path, "/new/#{path}");
    assert_null(r->action.redirect_query);
    assert_int_equal(r->action.redirect_status, 301);

    r = &l->rules[2];
    assert_int_equal(r->priority, 30);
    assert_string_equal(r->method.v[0], "DELETE");
    assert_int_equal(r->action.type, BTH_ACTION_FIXED_RESPONSE);
    assert_int_equal(r->action.fixed_status, 403);
    assert_string_equal(r->action.fixed_content_type, "text/plain");
    assert_string_equal(r->action.fixed_body, "no");
}

static void check_full_l4(const struct bth_config *cfg)
{
    const struct bth_cfg_listener *l = &cfg->listeners[1];
    assert_string_equal(l->name, "10.0.0.1:5432"); /* defaults to the bind text */
    assert_int_equal(l->protocol, BTH_PROTO_TCP);
    assert_true(l->idle_timeout_ms == 350000);
    assert_int_equal(l->nrules, 0);
    assert_string_equal(l->default_action.groups[0].name, "db");
    l = &cfg->listeners[2];
    assert_int_equal(l->protocol, BTH_PROTO_UDP);
    assert_true(l->idle_timeout_ms == 120000);
}

static void check_full_groups(const struct bth_config *cfg)
{
    const struct bth_cfg_target_group *g = bth_config_find_group(cfg, "api-v1");
    assert_ptr_equal(g, &cfg->target_groups[0]);
    assert_int_equal(g->ntargets, 3);
    assert_string_equal(g->targets[0].addr.text, "10.0.1.5:8080");
    assert_int_equal(g->targets[0].weight, 1);
    assert_string_equal(g->targets[1].addr.text, "10.0.1.6:8080");
    assert_int_equal(g->targets[1].weight, 2);
    assert_string_equal(g->targets[2].addr.text, "[fd00::5]:8080");
    assert_int_equal(g->mark.line, 48);

    g = bth_config_find_group(cfg, "api-v2");
    assert_int_equal(g->protocol, BTH_PROTO_HTTPS);
    assert_int_equal(g->algorithm, BTH_ALG_LEAST_OUTSTANDING);
    assert_true(g->deregistration_delay_ms == 0);
    assert_true(g->slow_start_ms == 30000);
    assert_int_equal(g->stickiness, BTH_STICKY_APP_COOKIE);
    assert_string_equal(g->stickiness_cookie, "SESSION");
    assert_true(g->stickiness_duration_ms == 3600000);
    assert_int_equal(g->health_check.enabled, 0);
    assert_int_equal(g->health_check.protocol, BTH_PROTO_HTTP);
    assert_int_equal(g->health_check.port, 8081);
    assert_string_equal(g->health_check.path, "/healthz");
    assert_true(g->health_check.interval_ms == 10000);
    assert_true(g->health_check.timeout_ms == 3000);
    assert_int_equal(g->health_check.healthy_threshold, 3);
    assert_int_equal(g->health_check.unhealthy_threshold, 4);
    assert_string_equal(g->health_check.matcher, "200,302");
    assert_int_equal(g->ntargets, 0);

    g = bth_config_find_group(cfg, "db");
    assert_int_equal(g->protocol, BTH_PROTO_TCP);
    assert_int_equal(g->algorithm, BTH_ALG_FLOW_HASH);
    assert_int_equal(g->stickiness, BTH_STICKY_SOURCE_IP);
    assert_int_equal(g->proxy_protocol_v2, 1);
    assert_int_equal(g->connection_termination, 1);
    assert_int_equal(g->health_check.protocol, BTH_PROTO_TCP);
    assert_true(g->health_check.timeout_ms == 10000);
    assert_string_equal(g->health_check.matcher, "200-399");
    assert_string_equal(g->targets[0].addr.text, "[fd00::7]:5432");

    g = bth_config_find_group(cfg, "dns");
    assert_int_equal(g->algorithm, BTH_ALG_WEIGHTED_RANDOM);
    assert_int_equal(g->health_check.port, 53);
    assert_null(bth_config_find_group(cfg, "nope"));
}

static void test_full(void **state)
{
    struct bth_config *cfg = load_ok(full_yaml);
    check_full_top(cfg);
    check_full_public(&cfg->listeners[0]);
    check_full_l4(cfg);
    check_full_groups(cfg);
    bth_config_destroy(cfg);
}

static void test_defaults(void **state)
{
    struct bth_config *cfg =
        load_ok("listeners:\n"
                "  - bind: 0.0.0.0:80\n"
                "    default_action: {forward: {target_group: web}}\n"
                "  - {protocol: TLS, bind: 0.0.0.0:443, certificates: [{cert: c, "
                "key: k}], default_action: {forward: {target_group: t}}}\n"
                "target_groups:\n"
                "  - name: web\n"
                "  - {name: t, protocol: tls}\n");
    assert_int_equal(cfg->workers, 0);
    assert_string_equal(cfg->control_socket, "./berth.sock");
    assert_null(cfg->control_listen);
    assert_null(cfg->control_token_file);
    assert_null(cfg->state_file);
    assert_null(cfg->cookie_key_file);
    assert_string_equal(cfg->access_log, "stdout");
    assert_true(cfg->shutdown_timeout_ms == 30000);
    assert_null(cfg->log_level);

    const struct bth_cfg_listener *l = &cfg->listeners[0];
    assert_string_equal(l->name, "0.0.0.0:80");
    assert_int_equal(l->protocol, BTH_PROTO_HTTP);
    assert_true(l->idle_timeout_ms == 60000);
    assert_true(l->header_timeout_ms == 10000);
    assert_true(l->body_timeout_ms == 20000);
    assert_int_equal(l->min_body_rate, 500);
    assert_int_equal(l->max_request_line_bytes, 16384);
    assert_int_equal(l->max_header_bytes, 65536);
    assert_null(l->ssl_policy);
    assert_int_equal(l->nrules, 0);
    assert_int_equal(l->ncertificates, 0);
    assert_true(cfg->listeners[1].idle_timeout_ms == 350000);

    const struct bth_cfg_target_group *g = &cfg->target_groups[0];
    assert_int_equal(g->protocol, BTH_PROTO_HTTP);
    assert_int_equal(g->algorithm, BTH_ALG_ROUND_ROBIN);
    assert_true(g->deregistration_delay_ms == 300000);
    assert_true(g->slow_start_ms == 0);
    assert_int_equal(g->stickiness, BTH_STICKY_NONE);
    assert_int_equal(g->proxy_protocol_v2, 0);
    assert_int_equal(g->connection_termination, 0);
    assert_int_equal(g->health_check.enabled, 1);
    assert_int_equal(g->health_check.protocol, BTH_PROTO_HTTP);
    assert_int_equal(g->health_check.port, 0);
    assert_string_equal(g->health_check.path, "/");
    assert_true(g->health_check.interval_ms == 30000);
    assert_true(g->health_check.timeout_ms == 5000);
    assert_int_equal(g->health_check.healthy_threshold, 5);
    assert_int_equal(g->health_check.unhealthy_threshold, 2);
    assert_string_equal(g->health_check.matcher, "200");

    g = &cfg->target_groups[1];
    assert_int_equal(g->protocol, BTH_PROTO_TLS);
    assert_int_equal(g->algorithm, BTH_ALG_FLOW_HASH);
    assert_int_equal(g->health_check.protocol, BTH_PROTO_TCP);
    assert_true(g->health_check.timeout_ms == 10000);
    assert_string_equal(g->health_check.matcher, "200-399");
    bth_config_destroy(cfg);
}

static void check_default_shape(const struct bth_config *cfg)
{
    assert_int_equal(cfg->workers, 0);
    assert_string_equal(cfg->control_socket, "./berth.sock");
    assert_string_equal(cfg->access_log, "stdout");
    assert_true(cfg->shutdown_timeout_ms == 30000);
    assert_int_equal(cfg->nlisteners, 1);
    const struct bth_cfg_listener *l = &cfg->listeners[0];
    assert_string_equal(l->name, "0.0.0.0:8080");
    assert_int_equal(l->protocol, BTH_PROTO_HTTP);
    assert_string_equal(l->bind.text, "0.0.0.0:8080");
    assert_true(l->idle_timeout_ms == 60000);
    assert_true(l->header_timeout_ms == 10000);
    assert_true(l->body_timeout_ms == 20000);
    assert_int_equal(l->min_body_rate, 500);
    assert_int_equal(l->max_request_line_bytes, 16384);
    assert_int_equal(l->max_header_bytes, 65536);
    assert_int_equal(l->nrules, 0);
    assert_int_equal(l->default_action.type, BTH_ACTION_FORWARD);
    assert_int_equal(l->default_action.ngroups, 1);
    assert_string_equal(l->default_action.groups[0].name, "default");
    assert_int_equal(l->default_action.groups[0].weight, 1);
    assert_int_equal(cfg->ntarget_groups, 1);
    const struct bth_cfg_target_group *g = &cfg->target_groups[0];
    assert_string_equal(g->name, "default");
    assert_int_equal(g->protocol, BTH_PROTO_HTTP);
    assert_int_equal(g->algorithm, BTH_ALG_ROUND_ROBIN);
    assert_true(g->deregistration_delay_ms == 300000);
    assert_int_equal(g->ntargets, 0);
    assert_int_equal(g->health_check.enabled, 1);
    assert_true(g->health_check.interval_ms == 30000);
    assert_true(g->health_check.timeout_ms == 5000);
    assert_string_equal(g->health_check.matcher, "200");
}

static void test_embedded_default(void **state)
{
    struct bth_err err;
    bth_err_init(&err);
    struct bth_config *cfg = bth_config_load_buffer("<default>", bth_config_default_yaml,
                                                    strlen(bth_config_default_yaml), &err);
    assert_non_null(cfg);
    assert_int_equal(err.n, 0);
    assert_string_equal(cfg->path, "<default>");
    check_default_shape(cfg);
    bth_config_destroy(cfg);
}

/* conf/berth.yaml spells the embedded default out; it must load to the same config. */
static void test_example_file(void **state)
{
    static const char self[] = "tests/unit/test_config.c";
    char path[4096];
    size_t len = strlen(__FILE__);
    assert_true(len >= strlen(self) && len - strlen(self) + 32 < sizeof(path));
    snprintf(path, sizeof(path), "%.*sconf/berth.yaml", (int)(len - strlen(self)), __FILE__);
    struct bth_err err;
    bth_err_init(&err);
    struct bth_config *cfg = bth_config_load_file(path, &err);
    for (size_t i = 0; i < err.n; i++)
        print_error("%s\n", err.msgs[i]);
    assert_non_null(cfg);
    assert_string_equal(cfg->path, path);
    check_default_shape(cfg);
    bth_config_destroy(cfg);
    bth_err_fini(&err);
}

static void test_load_file(void **state)
{
    char path[] = "/tmp/berth-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "listeners: 1\n", 13), 13);
    close(fd);
    struct bth_err err;
    bth_err_init(&err);
    assert_null(bth_config_load_file(path, &err));
    assert_int_equal(err.n, 2);
    char want[128];
    snprintf(want, sizeof(want), "%s:1:12: expected a sequence", path);
    assert_string_equal(err.msgs[0], want);
    bth_err_fini(&err);
    unlink(path);

    assert_null(bth_config_load_file("/nonexistent/berth.yaml", &err));
    assert_int_equal(err.n, 1);
    assert_string_equal(err.msgs[0],
                        "/nonexistent/berth.yaml: fopen() failed: No such file or directory");
    bth_err_fini(&err);
    assert_null(bth_config_load_file("/nonexistent/berth.yaml", NULL));
}

/* Building blocks: lines 1-2 open a listener, line 3 is its default action, and GRP (2
 * lines) declares group "web". */
#define LST "listeners:\n  - bind: 0.0.0.0:80\n"
#define FWD "    default_action: {forward: {target_group: web}}\n"
#define GRP "target_groups:\n  - name: web\n"
#define RULE(cond, act)                                                                            \
    "    rules:\n      - priority: 10\n        conditions: " cond "\n        action: " act "\n"

struct err_case {
    const char *yaml;
    const char *errs[4]; /* every message, in order */
};

static const struct err_case err_cases[] = {
    /* unknown keys, all of them */
    {LST "    bnd: 1.2.3.4:80\n" FWD GRP, {"t.yaml:3:5: unknown key \"bnd\" in listener"}},
    {"workerz: 2\n" LST "    nmae: x\n" FWD GRP "    helth_check: {}\n",
     {"t.yaml:1:1: unknown key \"workerz\" in config",
      "t.yaml:4:5: unknown key \"nmae\" in listener",
      "t.yaml:8:5: unknown key \"helth_check\" in target group"}},
    {LST RULE("{paht: /a}", "{forward: {target_group: web, weight: 2}}") FWD GRP,
     {"t.yaml:5:22: unknown key \"paht\" in conditions",
      "t.yaml:5:21: conditions need at least one of host, path, method, headers, query or "
      "source_ip",
      "t.yaml:6:47: unknown key \"weight\" in forward"}},
    {LST FWD "control: {sock: x}\n" GRP, {"t.yaml:4:11: unknown key \"sock\" in control"}},
    /* wrong types */
    {"listeners:\n  - 5\n", {"t.yaml:2:5: expected a mapping"}},
    {LST FWD "target_groups: {name: web}\n",
     {"t.yaml:4:16: expected a sequence", "t.yaml:3:46: unknown target group \"web\""}},
    {LST "    name: [a]\n" FWD GRP, {"t.yaml:3:11: expected a scalar"}},
    {"hello\n", {"t.yaml:1:1: expected a mapping"}},
    {"[1, 2]\n", {"t.yaml:1:1: expected a mapping"}},
    {LST RULE("{path: /a}", "{fixed_response: {status: x}}") FWD GRP,
     {"t.yaml:6:43: expected an integer"}},
    {LST FWD GRP "    proxy_protocol_v2: yes\n", {"t.yaml:6:24: expected true or false"}},
    {LST FWD GRP "    targets: [[1]]\n", {"t.yaml:6:15: expected a scalar or a mapping"}},
    {LST FWD GRP "    name: web\n", {"t.yaml:6:5: duplicate key \"name\" in target group"}},
    {"workers: many\n" LST FWD GRP, {"t.yaml:1:10: expected an integer"}},
    /* ranges */
    {"workers: 0\n" LST FWD GRP, {"t.yaml:1:10: workers 0 is out of range (1..1024)"}},
    {LST "    default_action: {forward: {target_groups: [{name: web, weight: 1000}]}}\n" GRP,
     {"t.yaml:3:68: weight 1000 is out of range (0..999)"}},
    {LST RULE("{path: /a}", "{forward: {target_group: web}}") FWD GRP,
     {NULL}}, /* a valid baseline for the RULE macro */
    {"listeners:\n  - bind: 0.0.0.0:80\n    rules:\n      - priority: 0\n"
     "        conditions: {path: /a}\n        action: {forward: {target_group: web}}\n" FWD GRP,
     {"t.yaml:4:19: priority 0 is out of range (1..50000)"}},
    {"listeners:\n  - bind: 0.0.0.0:80\n    rules:\n      - priority: 50001\n"
     "        conditions: {path: /a}\n        action: {forward: {target_group: web}}\n" FWD GRP,
     {"t.yaml:4:19: priority 50001 is out of range (1..50000)"}},
    {LST FWD GRP "    deregistration_delay: 3601s\n",
     {"t.yaml:6:27: deregistration_delay 3601s is out of range (0s..3600s)"}},
    {LST FWD GRP "    slow_start: 10s\n",
     {"t.yaml:6:17: slow_start 10s is out of range (0 or 30s..900s)"}},
    {LST FWD GRP "    slow_start: 15m1s\n",
     {"t.yaml:6:17: invalid duration \"15m1s\" (expected e.g. 500ms, 30s, 5m, 1h, 1d)"}},
    {LST FWD GRP "    slow_start: 901s\n",
     {"t.yaml:6:17: slow_start 901s is out of range (0 or 30s..900s)"}},
    {LST FWD GRP "    health_check: {interval: 900ms}\n",
     {"t.yaml:6:30: interval 900ms is out of range (1s..300s)"}},
    {LST FWD GRP "    health_check: {timeout: 400ms}\n",
     {"t.yaml:6:29: timeout 400ms is out of range (500ms..120s)"}},
    {LST FWD GRP "    health_check: {interval: 30s, timeout: 30s}\n",
     {"t.yaml:6:19: health_check timeout 30s must be less than interval 30s"}},
    {LST FWD GRP "    health_check: {healthy_threshold: 11, unhealthy_threshold: 1}\n",
     {"t.yaml:6:39: healthy_threshold 11 is out of range (2..10)",
      "t.yaml:6:64: unhealthy_threshold 1 is out of range (2..10)"}},
    {LST FWD GRP "    health_check: {port: 0}\n",
     {"t.yaml:6:26: port 0 is out of range (1..65535)"}},
    {LST FWD GRP "    targets: [{id: 10.0.0.1, port: 80, weight: 1000}]\n",
     {"t.yaml:6:48: weight 1000 is out of range (0..999)"}},
    {LST "    max_request_line: 2m\n" FWD GRP,
     {"t.yaml:3:23: max_request_line 2m is out of range (64..1m)"}},
    {LST FWD GRP "    stickiness: {type: lb_cookie, duration: 8d}\n",
     {"t.yaml:6:45: duration 8d is out of range (1s..604800s)"}},
    {LST FWD GRP "    discovery: {dns: a.test, port: 80, interval: 999ms}\n",
     {"t.yaml:6:50: interval 999ms is out of range (1s..3600s)"}},
    {LST FWD GRP "    discovery: {dns: a.test, port: 80, interval: 0s}\n",
     {"t.yaml:6:50: interval 0s is out of range (1s..3600s)"}},
    {LST FWD GRP "    discovery: {dns: a.test, port: 80, interval: 61m}\n",
     {"t.yaml:6:50: interval 61m is out of range (1s..3600s)"}},
    {LST FWD GRP "    discovery: {dns: a.test, port: 0}\n",
     {"t.yaml:6:36: port 0 is out of range (1..65535)"}},
    {LST FWD GRP "    discovery: {dns: a.test, port: 65536}\n",
     {"t.yaml:6:36: port 65536 is out of range (1..65535)"}},
    /* values */
    {"listeners:\n  - bind: 1.2.3.4\n" FWD GRP, {"t.yaml:2:11: invalid address \"1.2.3.4\""}},
    {LST FWD GRP "    targets: [\"10.0.0.1:80\", \"web.local:80\"]\n",
     {"t.yaml:6:30: invalid address \"web.local:80\""}},
    {LST FWD GRP "    targets: [{id: web.local, port: 80}, {id: 10.0.0.1}]\n",
     {"t.yaml:6:20: invalid address \"web.local\"", "t.yaml:6:42: missing key \"port\" in target"}},
    {LST "    idle_timeout: 30\n" FWD GRP,
     {"t.yaml:3:19: invalid duration \"30\" (expected e.g. 500ms, 30s, 5m, 1h, 1d)"}},
    {LST "    max_header_size: 16q\n" FWD GRP,
     {"t.yaml:3:22: invalid size \"16q\" (expected e.g. 512, 16k, 1m)"}},
    {LST "    body_timeout: 20\n" FWD GRP,
     {"t.yaml:3:19: invalid duration \"20\" (expected e.g. 500ms, 30s, 5m, 1h, 1d)"}},
    {LST "    body_timeout: 50ms\n" FWD GRP,
     {"t.yaml:3:19: body_timeout 50ms is out of range (100ms..3600s)"}},
    {LST "    min_body_rate: 1k\n" FWD GRP, {"t.yaml:3:20: expected an integer"}},
    {LST "    min_body_rate: -1\n" FWD GRP, {"t.yaml:3:20: expected an integer"}},
    {LST "    min_body_rate: 1000000001\n" FWD GRP,
     {"t.yaml:3:20: min_body_rate 1000000001 is out of range (0..1000000000)"}},
    {"listeners:\n  - protocol: FOO\n    bind: 0.0.0.0:80\n" FWD GRP,
     {"t.yaml:2:15: invalid protocol \"FOO\" (expected HTTP, HTTPS, TCP, TLS, UDP or TCP_UDP)"}},
    {LST FWD GRP "    algorithm: fastest\n",
     {"t.yaml:6:16: invalid algorithm \"fastest\" (expected round_robin, "
      "least_outstanding_requests, weighted_random or flow_hash)"}},
    {LST FWD GRP "    health_check: {protocol: UDP}\n",
     {"t.yaml:6:30: invalid protocol \"UDP\" (expected HTTP, HTTPS or TCP)"}},
    {LST FWD GRP "    discovery: {dns: a.test, type: CNAME, port: 80}\n",
     {"t.yaml:6:36: invalid type \"CNAME\" (expected A, AAAA or SRV)"}},
    {LST FWD GRP "    discovery: {dns: \"web..svc\", port: 80}\n",
     {"t.yaml:6:22: invalid DNS name \"web..svc\""}},
    {LST FWD GRP "    discovery: {dns: .web.svc, port: 80}\n",
     {"t.yaml:6:22: invalid DNS name \".web.svc\""}},
    {LST FWD GRP "    discovery: {dns: \"web svc\", port: 80}\n",
     {"t.yaml:6:22: invalid DNS name \"web svc\""}},
    {LST FWD GRP "    discovery: {dns: \"web/svc\", port: 80}\n",
     {"t.yaml:6:22: invalid DNS name \"web/svc\""}},
    {LST FWD GRP "    discovery: {dns: \"\", port: 80}\n", {"t.yaml:6:22: invalid DNS name \"\""}},
    {LST FWD GRP
     "    discovery: {dns: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.svc, "
     "port: 80}\n",
     {"t.yaml:6:22: invalid DNS name "
      "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.svc\""}},
    {LST FWD GRP "    discovery: {dns: a.test, port: 80, resolvers: [10.0.0.2:53, 10.0.0.3, "
                 "\"[fd00::53]:53\", dns.test:53]}\n",
     {"t.yaml:6:65: invalid resolver address \"10.0.0.3\" (expected IP:PORT)",
      "t.yaml:6:92: invalid resolver address \"dns.test:53\" (expected IP:PORT)"}},
    {LST FWD GRP "    discovery: {dns: a.test, port: 80, resolvers: 10.0.0.2:53}\n",
     {"t.yaml:6:51: expected a sequence"}},
    {LST FWD GRP "    stickiness: {type: sticky}\n",
     {"t.yaml:6:24: invalid type \"sticky\" (expected lb_cookie, app_cookie or source_ip)"}},
    {"log_level: loud\n" LST FWD GRP,
     {"t.yaml:1:12: invalid log_level \"loud\" (expected err, warn, notice, info or debug)"}},
    {LST FWD GRP "    health_check: {matcher: \"200-\"}\n",
     {"t.yaml:6:29: invalid matcher \"200-\" (expected e.g. \"200\", \"200-399\" or \"200,302\")"}},
    {LST FWD GRP "    health_check: {matcher: \"300-200\"}\n",
     {"t.yaml:6:29: invalid matcher \"300-200\" (expected e.g. \"200\", \"200-399\" or "
      "\"200,302\")"}},
    {LST FWD GRP "    health_check: {matcher: \"200,\"}\n",
     {"t.yaml:6:29: invalid matcher \"200,\" (expected e.g. \"200\", \"200-399\" or \"200,302\")"}},
    {LST FWD GRP "    health_check: {matcher: 199}\n",
     {"t.yaml:6:29: invalid matcher \"199\" (expected e.g. \"200\", \"200-399\" or \"200,302\")"}},
    {LST FWD GRP "    health_check: {path: healthz}\n",
     {"t.yaml:6:26: path must start with \"/\""}},
    {LST RULE("{source_ip: [10.0.0.0/8, 10.0.0.0/33, 10.0.0.1]}", "{forward: {target_group: web}}")
         FWD GRP,
     {"t.yaml:5:46: invalid CIDR \"10.0.0.0/33\"", "t.yaml:5:59: invalid CIDR \"10.0.0.1\""}},
    {LST RULE("{method: []}", "{forward: {target_group: web}}") FWD GRP,
     {"t.yaml:5:30: expected at least one value"}},
    {LST FWD "    name: \"\"\n" GRP, {"t.yaml:4:11: expected a non-empty string"}},
    {LST FWD "target_groups:\n  - name: \"web/1\"\n",
     {"t.yaml:5:11: invalid target group name \"web/1\" (letters, digits, \".\", \"_\" and "
      "\"-\", at most 128)",
      "t.yaml:3:46: unknown target group \"web\""}},
    /* duplicates */
    {"listeners:\n  - name: a\n    bind: 0.0.0.0:80\n" FWD
     "  - name: a\n    bind: 0.0.0.0:81\n" FWD GRP,
     {"t.yaml:5:5: duplicate listener name \"a\""}},
    {LST FWD "  - bind: 0.0.0.0:80\n" FWD GRP,
     {"t.yaml:4:5: duplicate bind address \"0.0.0.0:80\""}},
    {LST FWD "  - {name: b, bind: \"[::0]:80\"}\n  - {name: c, bind: \"[::]:80\"}\n" GRP,
     {"t.yaml:4:5: missing key \"default_action\" in listener",
      "t.yaml:5:5: missing key \"default_action\" in listener",
      "t.yaml:5:5: duplicate bind address \"[::]:80\""}},
    {LST FWD GRP "  - name: web\n", {"t.yaml:6:5: duplicate target group name \"web\""}},
    {LST FWD GRP "    targets: [\"10.0.0.1:80\", {id: 10.0.0.1, port: 80}]\n",
     {"t.yaml:6:30: duplicate target \"10.0.0.1:80\""}},
    {"listeners:\n  - bind: 0.0.0.0:80\n    rules:\n"
     "      - {priority: 10, conditions: {path: /a}, action: {forward: {target_group: web}}}\n"
     "      - {priority: 10, conditions: {path: /b}, action: {forward: {target_group: web}}}\n" FWD
         GRP,
     {"t.yaml:5:9: duplicate rule priority 10 (also at line 4)"}},
    {LST "    default_action: {forward: {target_groups: [{name: web}, {name: web}]}}\n" GRP,
     {"t.yaml:3:68: duplicate target group \"web\" in forward"}},
    /* references */
    {LST "    default_action: {forward: {target_group: nope}}\n" GRP,
     {"t.yaml:3:46: unknown target group \"nope\""}},
    {LST RULE("{path: /a}", "{forward: {target_groups: [{name: web}, {name: api}]}}") FWD GRP,
     {"t.yaml:6:64: unknown target group \"api\""}},
    {"listeners:\n  - protocol: TCP\n    bind: 0.0.0.0:80\n" FWD GRP,
     {"t.yaml:4:46: target group \"web\" is HTTP, which TCP listeners cannot use"}},
    /* missing keys and values */
    {LST FWD "target_groups:\n  - protocol: TCP\n",
     {"t.yaml:5:5: missing key \"name\" in target group",
      "t.yaml:3:46: unknown target group \"web\""}},
    {LST GRP, {"t.yaml:2:5: missing key \"default_action\" in listener"}},
    {"listeners:\n  - bind:\n" FWD GRP, {"t.yaml:2:10: missing value for \"bind\""}},
    {GRP, {"t.yaml:1:1: at least one listener is required"}},
    {LST FWD "control: {listen: 127.0.0.1:9901}\n" GRP,
     {"t.yaml:4:10: control listen requires token_file"}},
    /* actions */
    {LST "    default_action: {}\n" GRP,
     {"t.yaml:3:21: action needs one of forward, redirect or fixed_response"}},
    {LST "    default_action: {fixed_response: {status: 404}, redirect: {host: a}}\n" GRP,
     {"t.yaml:3:21: action takes only one of forward, redirect or fixed_response"}},
    {LST "    default_action: {forward: {stickiness: 1h}}\n" GRP,
     {"t.yaml:3:31: forward needs target_groups or target_group"}},
    {LST "    default_action: {forward: {target_group: web, target_groups: [{name: web}]}}\n" GRP,
     {"t.yaml:3:31: forward takes target_groups or target_group, not both"}},
    {LST "    default_action: {forward: {target_groups: []}}\n" GRP,
     {"t.yaml:3:47: expected at least one target group"}},
    {LST "    default_action: {redirect: {host: x.example, status: 303}}\n" GRP,
     {"t.yaml:3:58: redirect status must be 301 or 302"}},
    {LST "    default_action: {redirect: {status: 302}}\n" GRP,
     {"t.yaml:3:32: redirect would loop: change at least one of protocol, host, port, path or "
      "query"}},
    {LST "    default_action: {redirect: {protocol: \"#{protocol}\", host: \"#{host}\", "
         "port: \"#{port}\", path: \"/#{path}\", query: \"#{query}\"}}\n" GRP,
     {"t.yaml:3:32: redirect would loop: change at least one of protocol, host, port, path or "
      "query"}},
    {LST "    default_action: {redirect: {protocol: ftp, port: 0}}\n" GRP,
     {"t.yaml:3:43: invalid protocol \"ftp\" (expected HTTP, HTTPS or #{protocol})",
      "t.yaml:3:54: invalid port \"0\" (expected 1..65535 or #{port})"}},
    {LST "    default_action: {fixed_response: {status: 99}}\n" GRP,
     {"t.yaml:3:47: status 99 is out of range (200..599)"}},
    {LST "    default_action: {fixed_response: {body: x}}\n" GRP,
     {"t.yaml:3:38: missing key \"status\" in fixed_response"}},
    /* protocol-specific rules */
    {"listeners:\n  - protocol: TCP\n    bind: 0.0.0.0:80\n"
     "    default_action: {fixed_response: {status: 200}}\n" GRP,
     {"t.yaml:4:21: TCP listeners can only forward to one target group"}},
    {"listeners:\n  - protocol: UDP\n    bind: 0.0.0.0:53\n    rules: []\n"
     "    default_action: {forward: {target_group: u}}\n"
     "target_groups: [{name: u, protocol: UDP}]\n",
     {"t.yaml:4:12: rules are only for HTTP and HTTPS listeners"}},
    {"listeners:\n  - protocol: HTTPS\n    bind: 0.0.0.0:443\n" FWD GRP,
     {"t.yaml:2:5: HTTPS listener needs certificates"}},
    {LST "    certificates: [{cert: a.pem}]\n" FWD GRP,
     {"t.yaml:3:19: certificates are only for HTTPS and TLS listeners"}},
    {LST FWD GRP "    stickiness: {type: source_ip}\n",
     {"t.yaml:6:17: source_ip stickiness is for TCP, TLS, UDP and TCP_UDP target groups"}},
    {LST FWD GRP "    stickiness: {type: app_cookie}\n",
     {"t.yaml:6:17: cookie is required with app_cookie stickiness"}},
    {LST FWD GRP "    stickiness: {type: lb_cookie, cookie: x}\n",
     {"t.yaml:6:17: cookie is only used with app_cookie stickiness"}},
    {LST FWD GRP "    discovery: {dns: a.test}\n",
     {"t.yaml:6:16: port is required with A records"}},
    {LST FWD GRP "    discovery:\n      dns: a.test\n      type: AAAA\n",
     {"t.yaml:7:7: port is required with AAAA records"}},
    {LST FWD GRP "    discovery: {dns: a.test, type: SRV, port: 8080}\n",
     {"t.yaml:6:16: port is not used with SRV records (they carry the port)"}},
    {LST FWD GRP "    discovery: {type: SRV}\n", {"t.yaml:6:16: missing key \"dns\" in discovery"}},
    {LST FWD GRP "    discovery: {dns: a.test, port: 80, ttl: 5s}\n",
     {"t.yaml:6:40: unknown key \"ttl\" in discovery"}},
    {LST FWD GRP "    discovery: a.test\n", {"t.yaml:6:16: expected a mapping"}},
    {LST FWD GRP "    stickiness: {duration: 1h}\n",
     {"t.yaml:6:17: missing key \"type\" in stickiness"}},
    {LST FWD "target_groups:\n  - {name: web, protocol: TCP, stickiness: {type: lb_cookie}}\n",
     {"t.yaml:5:44: lb_cookie stickiness is for HTTP and HTTPS target groups",
      "t.yaml:3:46: target group \"web\" is TCP, which HTTP listeners cannot use"}},
    /* documents */
    {"", {"t.yaml:1:1: empty config"}},
    {"---\n", {"t.yaml:1:1: empty config"}},
    {"# only a comment\n", {"t.yaml:1:1: empty config"}},
    {LST FWD GRP "---\nfoo: 1\n", {"t.yaml:7:1: only one YAML document is allowed"}},
    {"workers: \"1\\0\"\n" LST FWD GRP, {"t.yaml:1:10: unexpected NUL character"}},
    {"listeners: [\n",
     {"t.yaml:2:1: did not find expected node content while parsing a flow node"}},
    {"listeners:\n  - bind: 0.0.0.0:80\n   default_action: x\n",
     {"t.yaml:3:4: did not find expected '-' indicator while parsing a block collection"}},
    {"target_groups:\n  - {name: t, protocol: TCP, protocol_version: GRPC}\n",
     {"t.yaml:2:5: protocol_version GRPC needs an HTTP or HTTPS group, not TCP",
      "t.yaml:1:1: at least one listener is required"}},
    {"target_groups:\n  - {name: g, protocol_version: GRPC, health_check: {matcher: \"200\"}}\n",
     {"t.yaml:2:63: invalid grpc_code matcher \"200\" (expected e.g. \"12\", \"0-99\" or "
      "\"0,12\")",
      "t.yaml:1:1: at least one listener is required"}},
    {"target_groups:\n  - {name: g, health_check: {matcher: {grpc_code: \"0\"}}}\n",
     {"t.yaml:2:40: matcher key \"grpc_code\" does not fit this group (expected http_code)",
      "t.yaml:1:1: at least one listener is required"}},
    {"a: *nope\n", {"t.yaml:1:4: found undefined alias"}},
    {"a: \"\x01\"\n", {"t.yaml:1:5: control characters are not allowed"}},
};

static void test_errors(void **state)
{
    size_t failed = 0;
    for (size_t i = 0; i < ARRAY_SIZE(err_cases); i++) {
        const struct err_case *t = &err_cases[i];
        struct bth_err err;
        size_t want = 0;
        struct bth_config *cfg = load(t->yaml, &err);
        while (want < ARRAY_SIZE(t->errs) && t->errs[want] != NULL)
            want++;
        bool ok = (cfg == NULL) == (want > 0) && err.n == want;
        for (size_t j = 0; ok && j < want; j++)
            ok = strcmp(err.msgs[j], t->errs[j]) == 0;
        if (!ok) {
            print_error("case %zu:\n%s--- got %zu:\n", i, t->yaml, err.n);
            for (size_t j = 0; j < err.n; j++)
                print_error("  %s\n", err.msgs[j]);
            for (size_t j = 0; j < want; j++)
                print_error("  want %s\n", t->errs[j]);
        }
        bth_config_destroy(cfg);
        bth_err_fini(&err);
        failed += !ok;
    }
    assert_int_equal(failed, 0);
}

/* protocol_version: HTTP1 by default; GRPC groups check ALB's gRPC path for UNIMPLEMENTED;
 * matchers in both forms. */
static void test_protocol_version(void **state)
{
    (void)state;
    struct bth_config *cfg =
        load_ok("listeners:\n"
                "  - bind: 0.0.0.0:80\n"
                "    default_action: {forward: {target_group: a}}\n"
                "target_groups:\n"
                "  - name: a\n"
                "  - {name: b, protocol: HTTPS, protocol_version: HTTP2}\n"
                "  - {name: c, protocol_version: GRPC}\n"
                "  - name: d\n"
                "    protocol_version: GRPC\n"
                "    health_check: {path: /grpc.health.v1.Health/Check,\n"
                "                   matcher: {grpc_code: \"0-2,12\"}}\n"
                "  - {name: e, health_check: {matcher: {http_code: \"200-299\"}}}\n");
    assert_int_equal(cfg->target_groups[0].protocol_version, BTH_PV_HTTP1);
    assert_int_equal(cfg->target_groups[1].protocol_version, BTH_PV_HTTP2);
    assert_string_equal(cfg->target_groups[1].health_check.path, "/");
    assert_string_equal(cfg->target_groups[1].health_check.matcher, "200");
    const struct bth_cfg_health_check *c = &cfg->target_groups[2].health_check;
    assert_int_equal(cfg->target_groups[2].protocol_version, BTH_PV_GRPC);
    assert_string_equal(c->path, "/AWS.ALB/healthcheck");
    assert_string_equal(c->matcher, "12");
    assert_string_equal(cfg->target_groups[3].health_check.path, "/grpc.health.v1.Health/Check");
    assert_string_equal(cfg->target_groups[3].health_check.matcher, "0-2,12");
    assert_string_equal(cfg->target_groups[4].health_check.matcher, "200-299");
    assert_string_equal(bth_proto_version_name(BTH_PV_GRPC), "GRPC");
    bth_config_destroy(cfg);
}

/* target_groups[].discovery: defaults, every field, and a group without it. */
static void test_discovery(void **state)
{
    char name253[300];
    size_t o = 0;
    for (int i = 0; i < 4; i++) { /* 3 x (63 + 1) + 61 = 253 */
        size_t l = i < 3 ? 63 : 61;
        memset(name253 + o, 'a' + i, l);
        o += l;
        name253[o++] = i < 3 ? '.' : '\0';
    }
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             LST FWD GRP "    discovery: {dns: web.svc.test, port: 8080}\n"
                         "  - name: srv\n"
                         "    discovery: {dns: _http._tcp.Web-1.svc.test., type: srv}\n"
                         "  - name: v6\n"
                         "    discovery:\n"
                         "      dns: %s\n"
                         "      type: AAAA\n"
                         "      port: 65535\n"
                         "      interval: 1h\n"
                         "      resolvers: [\"10.0.0.2:53\", \"[fd00::53]:5353\"]\n"
                         "  - name: plain\n"
                         "  - name: short\n"
                         "    discovery: {dns: x, port: 1, interval: 1s, resolvers: []}\n",
             name253);
    struct bth_config *cfg = load_ok(yaml);
    assert_int_equal(cfg->ntarget_groups, 5);

    const struct bth_cfg_discovery *d = &cfg->target_groups[0].discovery;
    assert_string_equal(d->dns, "web.svc.test");
    assert_int_equal(d->type, BTH_DNS_A);
    assert_int_equal(d->port, 8080);
    assert_true(d->interval_ms == 10000);
    assert_int_equal(d->nresolvers, 0);
    assert_null(d->resolvers);
    assert_int_equal(d->mark.line, 6);
    assert_int_equal(cfg->target_groups[0].ntargets, 0);

    d = &cfg->target_groups[1].discovery;
    assert_string_equal(d->dns, "_http._tcp.Web-1.svc.test.");
    assert_int_equal(d->type, BTH_DNS_SRV);
    assert_int_equal(d->port, 0);
    assert_true(d->interval_ms == 10000);

    d = &cfg->target_groups[2].discovery;
    assert_int_equal(strlen(d->dns), 253);
    assert_string_equal(d->dns, name253);
    assert_int_equal(d->type, BTH_DNS_AAAA);
    assert_int_equal(d->port, 65535);
    assert_true(d->interval_ms == 3600000);
    assert_int_equal(d->nresolvers, 2);
    assert_string_equal(d->resolvers[0].text, "10.0.0.2:53");
    assert_string_equal(d->resolvers[1].text, "[fd00::53]:5353");

    d = &cfg->target_groups[3].discovery;
    assert_null(d->dns);
    assert_null(d->resolvers);
    assert_int_equal(d->nresolvers, 0);

    d = &cfg->target_groups[4].discovery;
    assert_string_equal(d->dns, "x");
    assert_true(d->interval_ms == 1000);
    assert_int_equal(d->nresolvers, 0);
    bth_config_destroy(cfg);

    /* 254 characters: one too many */
    struct bth_err err;
    snprintf(yaml, sizeof(yaml), LST FWD GRP "    discovery: {dns: %sb, port: 80}\n", name253);
    assert_null(load(yaml, &err));
    assert_int_equal(err.n, 1);
    assert_true(strncmp(err.msgs[0], "t.yaml:6:22: invalid DNS name \"", 31) == 0);
    bth_err_fini(&err);
}

static void test_body_limit(void **state)
{
    char yaml[2048], body[1026];
    struct bth_err err;
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    snprintf(yaml, sizeof(yaml),
             LST "    default_action: {fixed_response: {status: 503, body: "
                 "%s}}\n",
             body);
    assert_null(load(yaml, &err));
    assert_int_equal(err.n, 1);
    assert_string_equal(err.msgs[0], "t.yaml:3:58: body is 1025 bytes long, at most 1024 allowed");
    bth_err_fini(&err);
    body[1024] = '\0'; /* exactly at the limit */
    snprintf(yaml, sizeof(yaml),
             LST "    default_action: {fixed_response: {status: 503, body: "
                 "%s}}\n",
             body);
    struct bth_config *cfg = load_ok(yaml);
    assert_int_equal(strlen(cfg->listeners[0].default_action.fixed_body), 1024);
    bth_config_destroy(cfg);
}

/* min_body_rate and body_timeout: set, and 0 turns the rate check off. */
static void test_body_rate(void **state)
{
    struct bth_config *cfg = load_ok(LST "    body_timeout: 2500ms\n"
                                         "    min_body_rate: 1000\n" FWD "  - bind: 0.0.0.0:81\n"
                                         "    min_body_rate: 0\n" FWD GRP);
    assert_true(cfg->listeners[0].body_timeout_ms == 2500);
    assert_int_equal(cfg->listeners[0].min_body_rate, 1000);
    assert_true(cfg->listeners[1].body_timeout_ms == 20000);
    assert_int_equal(cfg->listeners[1].min_body_rate, 0);
    bth_config_destroy(cfg);
}

/* A UDP group whose health check would connect over TCP to the traffic port loads, with one
 * warning naming where; a check port, checks off or a TCP_UDP group need none. */
static void test_udp_health_check_warning(void **state)
{
    struct bth_config *cfg =
        load_ok("listeners:\n"
                "  - {bind: 0.0.0.0:53, protocol: UDP, default_action: "
                "{forward: {target_group: dns}}}\n"
                "target_groups:\n"
                "  - name: dns\n"
                "    protocol: UDP\n"
                "  - name: dns2\n"
                "    protocol: UDP\n"
                "    health_check: {protocol: HTTP, path: /}\n"
                "  - {name: ok1, protocol: UDP, health_check: {port: 8080}}\n"
                "  - {name: ok2, protocol: UDP, health_check: {enabled: false}}\n"
                "  - {name: ok3, protocol: TCP_UDP}\n");
    assert_int_equal(cfg->warnings.n, 2);
    assert_string_equal(cfg->warnings.msgs[0],
                        "t.yaml:4:5: warning: target group dns is UDP; its health check probes "
                        "TCP port traffic-port, which a UDP-only target does not answer (set "
                        "health_check.port to a TCP port the target serves, or "
                        "health_check.enabled: false)");
    assert_non_null(
        strstr(cfg->warnings.msgs[1], "t.yaml:8:19: warning: target group dns2 is UDP"));
    bth_config_destroy(cfg);
}

/* Anchors and aliases share nodes; the loader reads them like written-out copies. */
static void test_aliases(void **state)
{
    struct bth_config *cfg =
        load_ok("listeners:\n"
                "  - bind: 0.0.0.0:80\n"
                "    default_action: &fwd {forward: {target_group: a}}\n"
                "  - bind: 0.0.0.0:81\n"
                "    default_action: *fwd\n"
                "target_groups:\n"
                "  - {name: a, health_check: &hc {interval: 10s, timeout: 2s}}\n"
                "  - {name: b, health_check: *hc}\n");
    assert_true(cfg->target_groups[1].health_check.interval_ms == 10000);
    assert_string_equal(cfg->listeners[1].default_action.groups[0].name, "a");
    bth_config_destroy(cfg);
}

/* Odd inputs: each must fail with at least one message and without a crash or leak. */
static void test_weird_inputs(void **state)
{
    static const char *const inputs[] = {
        "~",
        "[]",
        "- - -",
        "&a [*a]",
        "a: &a {b: *a}",
        "listeners: &l [*l]",
        "listeners: [&x {bind: *x, default_action: *x}]",
        "target_groups: [&g {name: g, targets: *g, health_check: *g, stickiness: *g}]",
        "listeners: [{bind: 0.0.0.0:1, rules: &r [{priority: 1, conditions: *r, action: *r}],"
        " default_action: {forward: {target_groups: *r}}}]",
        "{",
        "\xff\xfe\x01garbage",
        "\xc3\x28: x",
        "!!binary x",
        "? [a]\n: b\n",
        "listeners:\n  - ? [a, b]\n    : c\n",
        "listeners: [{bind: 0.0.0.0:1, default_action: {forward: {target_groups: [{name: [1]}]}}}]",
        "listeners: [{bind: 0.0.0.0:1, rules: [{conditions: {headers: {? [x] : y, z: []}}}], "
        "default_action: {redirect: {host: [x]}}}]",
        "target_groups: [{name: x, targets: [{id: [], port: {}}, 1, ~, \"\"]}]",
        "%YAML 1.1\n%YAML 1.1\n---\na: 1\n",
        "a: b\n--- !!str\n...\n",
        "---\n---\n",
    };
    for (size_t i = 0; i < ARRAY_SIZE(inputs); i++) {
        struct bth_err err;
        bth_err_init(&err);
        struct bth_config *cfg =
            bth_config_load_buffer("w.yaml", inputs[i], strlen(inputs[i]), &err);
        if (cfg != NULL || err.n == 0)
            fail_msg("input %zu: cfg %p, %zu errors", i, (void *)cfg, err.n);
        for (size_t j = 0; j < err.n; j++)
            assert_true(strncmp(err.msgs[j], "w.yaml:", 7) == 0);
        bth_config_destroy(cfg);
        bth_err_fini(&err);
    }
    /* Deep nesting and a NULL collector. */
    size_t depth = 20000;
    char *deep = malloc(2 * depth + 1);
    assert_non_null(deep);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    assert_null(bth_config_load_buffer("deep.yaml", deep, 2 * depth, NULL));
    free(deep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_udp_health_check_warning),
        cmocka_unit_test(test_embedded_default),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_body_rate),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_protocol_version),
        cmocka_unit_test(test_discovery),
        cmocka_unit_test(test_weird_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
