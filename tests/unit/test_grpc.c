/* SPDX-License-Identifier: MIT */
/* gRPC wire bits: content types, grpc-timeout values and the HTTP-to-gRPC status mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "grpc.h"

static bool ct(const char *v)
{
    return bth_grpc_content_type(v, strlen(v));
}

static void test_content_type(void **state)
{
    (void)state;
    assert_true(ct("application/grpc"));
    assert_true(ct("application/grpc+proto"));
    assert_true(ct("Application/GRPC+json"));
    assert_true(ct("application/grpc; charset=utf-8"));
    assert_false(ct("application/grpc-web"));
    assert_false(ct("application/grpcx"));
    assert_false(ct("application/json"));
    assert_false(ct("application/grp"));
    assert_false(ct(""));
}

static int timeout(const char *v, uint64_t *ms)
{
    return bth_grpc_timeout_ms(v, strlen(v), ms);
}

static void test_timeout(void **state)
{
    (void)state;
    uint64_t ms = 0;
    assert_int_equal(timeout("1H", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(timeout("2M", &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(timeout("5S", &ms), 0);
    assert_int_equal(ms, 5000);
    assert_int_equal(timeout("499m", &ms), 0);
    assert_int_equal(ms, 499);
    assert_int_equal(timeout("1500u", &ms), 0);
    assert_int_equal(ms, 2); /* rounded up */
    assert_int_equal(timeout("1n", &ms), 0);
    assert_int_equal(ms, 1); /* a positive timeout never becomes 0 */
    assert_int_equal(timeout("0m", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(timeout("99999999H", &ms), 0); /* 8 digits: the largest allowed */
    assert_int_equal(ms, 99999999ull * 3600000ull);
    assert_int_equal(timeout("123456789S", &ms), -1); /* 9 digits */
    assert_int_equal(timeout("S", &ms), -1);
    assert_int_equal(timeout("10", &ms), -1);
    assert_int_equal(timeout("10s", &ms), -1); /* units are case-sensitive: s is not S */
    assert_int_equal(timeout("-1S", &ms), -1);
    assert_int_equal(timeout("1 S", &ms), -1);
}

static void test_mapping(void **state)
{
    (void)state;
    assert_int_equal(bth_grpc_code_of_http(400), BTH_GRPC_INTERNAL);
    assert_int_equal(bth_grpc_code_of_http(401), BTH_GRPC_UNAUTHENTICATED);
    assert_int_equal(bth_grpc_code_of_http(403), BTH_GRPC_PERMISSION_DENIED);
    assert_int_equal(bth_grpc_code_of_http(404), BTH_GRPC_UNIMPLEMENTED);
    assert_int_equal(bth_grpc_code_of_http(429), BTH_GRPC_UNAVAILABLE);
    assert_int_equal(bth_grpc_code_of_http(502), BTH_GRPC_UNAVAILABLE);
    assert_int_equal(bth_grpc_code_of_http(503), BTH_GRPC_UNAVAILABLE);
    assert_int_equal(bth_grpc_code_of_http(504), BTH_GRPC_UNAVAILABLE);
    assert_int_equal(bth_grpc_code_of_http(464), BTH_GRPC_UNKNOWN);
    assert_int_equal(bth_grpc_code_of_http(500), BTH_GRPC_UNKNOWN);
    assert_string_equal(bth_grpc_code_name(0), "OK");
    assert_string_equal(bth_grpc_code_name(4), "DEADLINE_EXCEEDED");
    assert_string_equal(bth_grpc_code_name(14), "UNAVAILABLE");
    assert_string_equal(bth_grpc_code_name(16), "UNAUTHENTICATED");
    assert_string_equal(bth_grpc_code_name(17), "UNKNOWN");
    assert_string_equal(bth_grpc_code_name(-1), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
