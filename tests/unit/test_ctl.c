/* SPDX-License-Identifier: MIT */
/* The `berth ctl` client's pure parts: target arguments, HTTP response framing (Content-Length,
 * chunked, read-until-close), the table layout; and the JSON rendering of a config that
 * `berth ctl config` shows (GET /v1/config). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_json.h"
#include "ctl.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static void test_parse_target_valid(void **state)
{
    static const struct {
        const char *in, *id;
        unsigned port;
    } cases[] = {
        {"10.0.1.5:8080", "10.0.1.5", 8080},         {"[fd00::5]:8080", "fd00::5", 8080},
        {"Id=10.0.1.5,Port=8080", "10.0.1.5", 8080}, {"Id=fd00::5,Port=1", "fd00::5", 1},
        {"127.0.0.1:65535", "127.0.0.1", 65535},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char id[64];
        unsigned port = 0;
        assert_int_equal(bth_ctl_parse_target(cases[i].in, id, sizeof(id), &port), 0);
        assert_string_equal(id, cases[i].id);
        assert_int_equal(port, cases[i].port);
    }
}

static void test_parse_target_invalid(void **state)
{
    static const char *const cases[] = {
        "10.0.1.5",       /* no port */
        "10.0.1.5:0",     /* port out of range */
        "10.0.1.5:65536", /* port out of range */
        "10.0.1.5:80x",   /* trailing junk */
        "10.0.1.5:+80",   /* digits only */
        "10.0.1.5: 80",
        ":8080",              /* no address */
        "fd00::5:8080",       /* IPv6 needs brackets: ambiguous otherwise */
        "[fd00::5]8080",      /* no colon after the bracket */
        "[fd00::5:8080",      /* unclosed bracket */
        "Id=10.0.1.5",        /* no Port */
        "Id=,Port=80",        /* empty Id */
        "Id=10.0.1.5;Port=8", /* wrong separator */
        "web.example:80",     /* names are not resolved */
        "",
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char id[64];
        unsigned port;
        assert_int_equal(bth_ctl_parse_target(cases[i], id, sizeof(id), &port), -1);
    }
}

static void test_parse_target_id_too_long(void **state)
{
    char id[8];
    unsigned port;
    assert_int_equal(bth_ctl_parse_target("10.0.1.5:80", id, sizeof(id), &port), -1);
}

/* Parses <raw> as if all of it had arrived; <eof> as given. */
static int parse(const char *raw, bool eof, struct bth_ctl_resp *resp)
{
    *resp = (struct bth_ctl_resp){0};
    return bth_ctl_parse_response(raw, strlen(raw), eof, resp);
}

static void test_response_content_length(void **state)
{
    static const char raw[] = "HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n"
                              "Content-Type: application/json\r\n\r\nhello";
    struct bth_ctl_resp resp;
    assert_int_equal(parse(raw, false, &resp), 1);
    assert_int_equal(resp.status, 404);
    assert_int_equal(resp.body_len, 5);
    assert_string_equal(resp.body, "hello");
    bth_ctl_resp_fini(&resp);
    bth_ctl_resp_fini(&resp); /* idempotent */
}

/* Every proper prefix of a response needs more bytes; the whole of it completes. */
static void assert_prefixes_incomplete(const char *raw, const char *body)
{
    size_t len = strlen(raw);
    struct bth_ctl_resp resp = {0};
    for (size_t n = 0; n < len; n++)
        assert_int_equal(bth_ctl_parse_response(raw, n, false, &resp), 0);
    assert_int_equal(bth_ctl_parse_response(raw, len, false, &resp), 1);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body_len, strlen(body));
    assert_string_equal(resp.body, body);
    bth_ctl_resp_fini(&resp);
}

static void test_response_split_reads(void **state)
{
    assert_prefixes_incomplete("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", "abc");
    assert_prefixes_incomplete("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n"
                               "0\r\nX-Trailer: 1\r\n\r\n",
                               "Wikipedia in \r\n\r\nchunks.");
}

static void test_response_chunked_wins(void **state)
{
    /* RFC 9112 §6.3: Transfer-Encoding overrides Content-Length. */
    static const char raw[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
                              "Transfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n";
    struct bth_ctl_resp resp;
    assert_int_equal(parse(raw, false, &resp), 1);
    assert_string_equal(resp.body, "0123456789");
    bth_ctl_resp_fini(&resp);
}

static void test_response_until_close(void **state)
{
    static const char raw[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nok\n";
    struct bth_ctl_resp resp;
    assert_int_equal(parse(raw, false, &resp), 0); /* could go on */
    assert_int_equal(parse(raw, true, &resp), 1);
    assert_string_equal(resp.body, "ok\n");
    bth_ctl_resp_fini(&resp);
}

static void test_response_no_body_status(void **state)
{
    struct bth_ctl_resp resp;
    assert_int_equal(parse("HTTP/1.1 204 No Content\r\n\r\n", false, &resp), 1);
    assert_int_equal(resp.status, 204);
    assert_int_equal(resp.body_len, 0);
    assert_string_equal(resp.body, "");
    bth_ctl_resp_fini(&resp);
}

static void test_response_bad(void **state)
{
    static const struct {
        const char *raw;
        bool eof;
    } cases[] = {
        {"", true},                                                  /* nothing */
        {"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", true}, /* truncated */
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", true},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", false},
        /* a chunk larger than anything berth sends: waited for, then truncated at the close */
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", true},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", false},
        {"SMTP/1.1 200 OK\r\n\r\n", false},
        {"HTTP/1.1 2x0 OK\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\n", true}, /* head never ends */
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct bth_ctl_resp resp;
        assert_int_equal(parse(cases[i].raw, cases[i].eof, &resp), -1);
        assert_null(resp.body);
    }
}

/* Renders a table into a string the test frees. */
static char *table(const char *const *head, size_t ncols, const char *const *cells, size_t nrows)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_non_null(f);
    assert_int_equal(bth_ctl_print_table(f, head, ncols, cells, nrows), 0);
    fclose(f);
    return out;
}

static void test_table_widths(void **state)
{
    static const char *const head[] = {"NAME", "PROTOCOL", "TARGETS"};
    static const char *const cells[] = {
        "web", "HTTP", "2", "a-much-longer-name", NULL, "10",
    };
    char *out = table(head, 3, cells, 2);
    assert_string_equal(out, "NAME                PROTOCOL  TARGETS\n"
                             "web                 HTTP      2\n"
                             "a-much-longer-name  -         10\n");
    free(out);
}

static void test_table_header_only(void **state)
{
    static const char *const head[] = {"TARGET", "STATE"};
    char *out = table(head, 2, NULL, 0);
    assert_string_equal(out, "TARGET  STATE\n");
    free(out);
    assert_int_equal(bth_ctl_print_table(stdout, head, 0, NULL, 0), -1);
    assert_int_equal(bth_ctl_print_table(stdout, head, BTH_CTL_TABLE_MAX_COLS + 1, NULL, 0), -1);
}

static void test_duration_format(void **state)
{
    static const struct {
        uint64_t ms;
        const char *out;
    } cases[] = {
        {0, "0s"},        {1, "1ms"},       {500, "500ms"},    {1500, "1500ms"},
        {30000, "30s"},   {90000, "90s"},   {300000, "5m"},    {3600000, "1h"},
        {5400000, "90m"}, {86400000, "1d"}, {172800000, "2d"}, {86401000, "86401s"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char buf[32];
        assert_string_equal(bth_config_fmt_duration(cases[i].ms, buf, sizeof(buf)), cases[i].out);
    }
}

static const char config_yaml[] =
    "workers: 2\n"
    "control: {socket: /tmp/b.sock, listen: 127.0.0.1:9901, token_file: /etc/berth/token}\n"
    "listeners:\n"
    "  - name: public\n"
    "    bind: 127.0.0.1:8080\n"
    "    idle_timeout: 90s\n"
    "    header_timeout: 500ms\n"
    "    max_header_size: 32k\n"
    "    rules:\n"
    "      - priority: 10\n"
    "        conditions: {path: [\"/api/*\"], headers: {x-env: [\"canary*\"]}}\n"
    "        action: {forward: {target_groups: [{name: api, weight: 3}], stickiness: 10m}}\n"
    "      - priority: 20\n"
    "        conditions: {host: [old.example]}\n"
    "        action: {redirect: {host: new.example, status: 302}}\n"
    "    default_action: {fixed_response: {status: 503, body: down}}\n"
    "target_groups:\n"
    "  - name: api\n"
    "    deregistration_delay: 0s\n"
    "    stickiness: {type: lb_cookie, duration: 1h}\n"
    "    health_check: {enabled: false, interval: 10s}\n"
    "    targets: [\"10.0.1.5:8080\", {id: \"fd00::5\", port: 81, weight: 7}]\n";

static json_t *load_json(void)
{
    struct bth_err err;
    bth_err_init(&err);
    struct bth_config *cfg =
        bth_config_load_buffer("test.yaml", config_yaml, strlen(config_yaml), &err);
    for (size_t i = 0; i < err.n; i++)
        print_error("%s\n", err.msgs[i]);
    assert_non_null(cfg);
    bth_err_fini(&err);
    json_t *j = bth_config_to_json(cfg);
    bth_config_destroy(cfg);
    assert_non_null(j);
    return j;
}

/* Looks <path> ("a.b.0.c") up in <j>. */
static json_t *at(json_t *j, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save))
        j = json_is_array(j) ? json_array_get(j, (size_t)atoi(k)) : json_object_get(j, k);
    return j;
}

static void assert_str_at(json_t *j, const char *path, const char *want)
{
    json_t *v = at(j, path);
    if (!json_is_string(v))
        fail_msg("%s: not a string", path);
    assert_string_equal(json_string_value(v), want);
}

static void assert_int_at(json_t *j, const char *path, long long want)
{
    json_t *v = at(j, path);
    if (!json_is_integer(v))
        fail_msg("%s: not an integer", path);
    assert_int_equal(json_integer_value(v), want);
}

static void test_config_json(void **state)
{
    json_t *j = load_json();
    assert_int_at(j, "workers", 2);
    assert_str_at(j, "control.token_file", "/etc/berth/token");
    assert_str_at(j, "control.listen", "127.0.0.1:9901");
    assert_true(json_is_null(at(j, "state_file")));
    assert_str_at(j, "shutdown_timeout", "30s");
    assert_str_at(j, "listeners.0.bind", "127.0.0.1:8080");
    assert_str_at(j, "listeners.0.protocol", "HTTP");
    assert_str_at(j, "listeners.0.idle_timeout", "90s");
    assert_str_at(j, "listeners.0.header_timeout", "500ms");
    assert_str_at(j, "listeners.0.body_timeout", "20s");
    assert_int_at(j, "listeners.0.min_body_rate", 500);
    assert_int_at(j, "listeners.0.max_header_size", 32768);
    assert_int_at(j, "listeners.0.max_request_line", 16384);
    assert_int_at(j, "listeners.0.rules.0.priority", 10);
    assert_str_at(j, "listeners.0.rules.0.conditions.path.0", "/api/*");
    assert_str_at(j, "listeners.0.rules.0.conditions.headers.x-env.0", "canary*");
    assert_null(at(j, "listeners.0.rules.0.conditions.host")); /* unset: absent */
    assert_str_at(j, "listeners.0.rules.0.action.forward.target_groups.0.name", "api");
    assert_int_at(j, "listeners.0.rules.0.action.forward.target_groups.0.weight", 3);
    assert_str_at(j, "listeners.0.rules.0.action.forward.stickiness", "10m");
    assert_str_at(j, "listeners.0.rules.1.action.redirect.host", "new.example");
    assert_true(json_is_null(at(j, "listeners.0.rules.1.action.redirect.path")));
    assert_int_at(j, "listeners.0.rules.1.action.redirect.status", 302);
    assert_int_at(j, "listeners.0.default_action.fixed_response.status", 503);
    assert_str_at(j, "listeners.0.default_action.fixed_response.body", "down");
    assert_str_at(j, "target_groups.0.name", "api");
    assert_str_at(j, "target_groups.0.algorithm", "round_robin");
    assert_str_at(j, "target_groups.0.deregistration_delay", "0s");
    assert_str_at(j, "target_groups.0.stickiness.type", "lb_cookie");
    assert_str_at(j, "target_groups.0.stickiness.duration", "1h");
    assert_true(json_is_false(at(j, "target_groups.0.health_check.enabled")));
    assert_str_at(j, "target_groups.0.health_check.interval", "10s");
    assert_str_at(j, "target_groups.0.health_check.port", "traffic-port");
    assert_str_at(j, "target_groups.0.targets.0.id", "10.0.1.5");
    assert_int_at(j, "target_groups.0.targets.0.port", 8080);
    assert_str_at(j, "target_groups.0.targets.1.id", "fd00::5");
    assert_int_at(j, "target_groups.0.targets.1.weight", 7);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_target_valid),
        cmocka_unit_test(test_parse_target_invalid),
        cmocka_unit_test(test_parse_target_id_too_long),
        cmocka_unit_test(test_response_content_length),
        cmocka_unit_test(test_response_split_reads),
        cmocka_unit_test(test_response_chunked_wins),
        cmocka_unit_test(test_response_until_close),
        cmocka_unit_test(test_response_no_body_status),
        cmocka_unit_test(test_response_bad),
        cmocka_unit_test(test_table_widths),
        cmocka_unit_test(test_table_header_only),
        cmocka_unit_test(test_duration_format),
        cmocka_unit_test(test_config_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
