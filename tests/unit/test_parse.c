/* SPDX-License-Identifier: MIT */
/* Value parsers of the config module: durations, sizes, addresses, enum names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "config.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static void test_duration_valid(void **state)
{
    static const struct {
        const char *in;
        uint64_t ms;
    } cases[] = {
        {"500ms", 500},
        {"30s", 30000},
        {"5m", 300000},
        {"1h", 3600000},
        {"1d", 86400000},
        {"0", 0},
        {"0s", 0},
        {"30S", 30000},
        {"2MS", 2},
        {"007s", 7000},
        {"18446744073709551615ms", UINT64_MAX},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        uint64_t ms = 1;
        assert_int_equal(bth_parse_duration_ms(cases[i].in, &ms), 0);
        assert_true(ms == cases[i].ms);
    }
}

static void test_duration_invalid(void **state)
{
    /* A bare number other than 0 is ambiguous and so an error. */
    static const char *const cases[] = {
        "",
        "30",
        "s",
        "-1s",
        "+1s",
        "1.5s",
        " 1s",
        "1s ",
        "1 s",
        "1w",
        "1sm",
        "ms",
        "1mss",
        "0x1s",
        "99999999999999999999s",
        "18446744073709551615s",
        "213503982334601d",
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        uint64_t ms = 0;
        if (bth_parse_duration_ms(cases[i], &ms) != -1)
            fail_msg("duration \"%s\" accepted", cases[i]);
    }
}

static void test_size_valid(void **state)
{
    static const struct {
        const char *in;
        size_t bytes;
    } cases[] = {
        {"0", 0},        {"512", 512},    {"16k", 16384},     {"16K", 16384},
        {"1m", 1048576}, {"1M", 1048576}, {"1g", 1073741824}, {"3G", 3221225472u},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        size_t b = 1;
        assert_int_equal(bth_parse_size(cases[i].in, &b), 0);
        assert_true(b == cases[i].bytes);
    }
}

static void test_size_invalid(void **state)
{
    static const char *const cases[] = {
        "", "k", "1kb", "-1", "1.5k", "1t", "1 k", "k1", "17179869184g", "99999999999999999999",
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        size_t b = 0;
        if (bth_parse_size(cases[i], &b) != -1)
            fail_msg("size \"%s\" accepted", cases[i]);
    }
}

static void test_addr_valid(void **state)
{
    static const struct {
        const char *in;
        const char *text; /* canonical */
        int family;
        unsigned port;
    } cases[] = {
        {"10.0.1.5:8080", "10.0.1.5:8080", AF_INET, 8080},
        {"0.0.0.0:1", "0.0.0.0:1", AF_INET, 1},
        {"255.255.255.255:65535", "255.255.255.255:65535", AF_INET, 65535},
        {"[fd00::5]:8080", "[fd00::5]:8080", AF_INET6, 8080},
        {"[FD00:0:0::5]:80", "[fd00::5]:80", AF_INET6, 80},
        {"[::]:443", "[::]:443", AF_INET6, 443},
        {"[::ffff:10.0.0.1]:80", "[::ffff:10.0.0.1]:80", AF_INET6, 80},
        {"10.0.0.1:0080", "10.0.0.1:80", AF_INET, 80},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct bth_addr a;
        assert_int_equal(bth_parse_addr(cases[i].in, &a), 0);
        assert_string_equal(a.text, cases[i].text);
        assert_int_equal(a.ss.ss_family, cases[i].family);
        if (cases[i].family == AF_INET) {
            assert_int_equal(a.len, sizeof(struct sockaddr_in));
            assert_int_equal(ntohs(((struct sockaddr_in *)&a.ss)->sin_port), cases[i].port);
        } else {
            assert_int_equal(a.len, sizeof(struct sockaddr_in6));
            assert_int_equal(ntohs(((struct sockaddr_in6 *)&a.ss)->sin6_port), cases[i].port);
        }
    }
    struct bth_addr a;
    assert_int_equal(bth_parse_addr("10.0.1.5:8080", &a), 0);
    struct sockaddr_in *in = (struct sockaddr_in *)&a.ss;
    assert_int_equal(ntohl(in->sin_addr.s_addr), 0x0a000105);
}

static void test_addr_invalid(void **state)
{
    static const char *const cases[] = {
        "",
        "10.0.1.5",
        "10.0.1.5:",
        "10.0.1.5:0",
        "10.0.1.5:65536",
        "10.0.1.5:+80",
        "10.0.1.5:-1",
        "10.0.1.5:80x",
        "10.0.1.5: 80",
        " 10.0.1.5:80",
        "10.1:80",
        "10.0.1.256:80",
        "localhost:80",
        "example.com:80",
        "fd00::5:80",
        "fd00::5",
        "[fd00::5]",
        "[fd00::5]80",
        "[fd00::5]:",
        "[fd00::5]:80]",
        "[[fd00::5]]:80",
        "[10.0.0.1]:80",
        "[]:80",
        ":80",
        "[fe80::1%eth0]:80",
        "10.0.1.5:80:80",
        "[fd00::5:80",
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct bth_addr a;
        if (bth_parse_addr(cases[i], &a) != -1)
            fail_msg("address \"%s\" accepted", cases[i]);
    }
}

static void test_addr_from_ip_port(void **state)
{
    struct bth_addr a;
    assert_int_equal(bth_addr_from_ip_port("10.0.1.5", 8080, &a), 0);
    assert_string_equal(a.text, "10.0.1.5:8080");
    assert_int_equal(bth_addr_from_ip_port("fd00::5", 80, &a), 0);
    assert_string_equal(a.text, "[fd00::5]:80");
    assert_int_equal(a.ss.ss_family, AF_INET6);
    assert_int_equal(bth_addr_from_ip_port("[fd00::5]", 80, &a), 0);
    assert_string_equal(a.text, "[fd00::5]:80");

    assert_int_equal(bth_addr_from_ip_port("10.0.1.5", 0, &a), -1);
    assert_int_equal(bth_addr_from_ip_port("10.0.1.5", 65536, &a), -1);
    assert_int_equal(bth_addr_from_ip_port("10.0.1.5:80", 80, &a), -1);
    assert_int_equal(bth_addr_from_ip_port("web.local", 80, &a), -1);
    assert_int_equal(bth_addr_from_ip_port("", 80, &a), -1);
    assert_int_equal(bth_addr_from_ip_port("[]", 80, &a), -1);
}

static void test_names(void **state)
{
    assert_string_equal(bth_proto_name(BTH_PROTO_HTTP), "HTTP");
    assert_string_equal(bth_proto_name(BTH_PROTO_HTTPS), "HTTPS");
    assert_string_equal(bth_proto_name(BTH_PROTO_TCP), "TCP");
    assert_string_equal(bth_proto_name(BTH_PROTO_TLS), "TLS");
    assert_string_equal(bth_proto_name(BTH_PROTO_UDP), "UDP");
    assert_string_equal(bth_proto_name(BTH_PROTO_TCP_UDP), "TCP_UDP");
    assert_string_equal(bth_algorithm_name(BTH_ALG_ROUND_ROBIN), "round_robin");
    assert_string_equal(bth_algorithm_name(BTH_ALG_LEAST_OUTSTANDING),
                        "least_outstanding_requests");
    assert_string_equal(bth_algorithm_name(BTH_ALG_WEIGHTED_RANDOM), "weighted_random");
    assert_string_equal(bth_algorithm_name(BTH_ALG_FLOW_HASH), "flow_hash");
}

static void test_err_collect(void **state)
{
    struct bth_err err;
    bth_err_init(&err);
    bth_err_add(&err, "%s:%d:%d: %s", "f.yaml", 3, 5, "first");
    bth_err_add(&err, "second %u", 2u);
    assert_int_equal(err.n, 2);
    assert_string_equal(err.msgs[0], "f.yaml:3:5: first");
    assert_string_equal(err.msgs[1], "second 2");
    bth_err_fini(&err);
    assert_int_equal(err.n, 0);
    assert_null(err.msgs);
    bth_err_add(NULL, "ignored"); /* loaders accept a NULL collector */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_valid),    cmocka_unit_test(test_duration_invalid),
        cmocka_unit_test(test_size_valid),        cmocka_unit_test(test_size_invalid),
        cmocka_unit_test(test_addr_valid),        cmocka_unit_test(test_addr_invalid),
        cmocka_unit_test(test_addr_from_ip_port), cmocka_unit_test(test_names),
        cmocka_unit_test(test_err_collect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
