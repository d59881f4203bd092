/* SPDX-License-Identifier: MIT */
/* Stickiness cookies: round trip, opacity, tamper evidence, scope binding, expiry, and the
 * Cookie header parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sticky.h"

static int setup(void **state)
{
    uint8_t key[BTH_STICKY_KEY_BYTES];
    assert_int_equal(
        bth_sticky_parse_hex_key(
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 65, key),
        0);
    bth_sticky_set_key(key);
    return 0;
}

static void test_round_trip(void **state)
{
    char v[BTH_STICKY_VALUE_MAX], name[64];
    size_t n = bth_sticky_sign("BERTH-|web", "10.0.1.5:8080", 13, 2000000000, v);
    assert_true(n > 0);
    assert_int_equal(bth_sticky_verify("BERTH-|web", v, n, 1900000000, name, sizeof(name)), 13);
    assert_string_equal(name, "10.0.1.5:8080");
    /* opaque: the address does not appear, not even base64-encoded as plain text */
    assert_null(strstr(v, "10.0.1.5"));
    assert_null(strstr(v, "MTAuMC4xLjU")); /* base64 of "10.0.1.5" */
}

static void test_tamper_scope_expiry(void **state)
{
    char v[BTH_STICKY_VALUE_MAX], name[64];
    size_t n = bth_sticky_sign("BERTH-|web", "10.0.1.5:8080", 13, 2000000000, v);
    for (size_t i = 0; i < n; i++) {
        char t[BTH_STICKY_VALUE_MAX];
        memcpy(t, v, n);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        assert_int_equal(bth_sticky_verify("BERTH-|web", t, n, 1900000000, name, sizeof(name)), -1);
    }
    assert_int_equal(bth_sticky_verify("BERTH-|api", v, n, 1900000000, name, sizeof(name)), -1);
    assert_int_equal(bth_sticky_verify("BERTH-|web", v, n, 2000000001, name, sizeof(name)), -1);
    assert_int_equal(bth_sticky_verify("BERTH-|web", v, n - 3, 1900000000, name, sizeof(name)), -1);
    assert_int_equal(bth_sticky_verify("BERTH-|web", "", 0, 1, name, sizeof(name)), -1);
    assert_int_equal(bth_sticky_verify("BERTH-|web", "!!!", 3, 1, name, sizeof(name)), -1);
}

static void test_other_key_rejects(void **state)
{
    char v[BTH_STICKY_VALUE_MAX], name[64];
    size_t n = bth_sticky_sign("tg", "blue", 4, 2000000000, v);
    uint8_t key[BTH_STICKY_KEY_BYTES] = {1};
    bth_sticky_set_key(key);
    assert_int_equal(bth_sticky_verify("tg", v, n, 1, name, sizeof(name)), -1);
    setup(NULL);
    assert_int_equal(bth_sticky_verify("tg", v, n, 1, name, sizeof(name)), 4);
}

static void test_bad_keys(void **state)
{
    uint8_t key[BTH_STICKY_KEY_BYTES];
    assert_int_equal(bth_sticky_parse_hex_key("abc", 3, key), -1);
    assert_int_equal(
        bth_sticky_parse_hex_key("zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
                                 64, key),
        -1);
}

static void test_cookie_find(void **state)
{
    const char *h = "a=1; BERTH-web=xyz ; SESSIONID=\"q\";empty=";
    const char *v;
    size_t n;
    assert_true(bth_cookie_find(h, strlen(h), "BERTH-web", &v, &n));
    assert_int_equal(n, 3);
    assert_memory_equal(v, "xyz", 3);
    assert_true(bth_cookie_find(h, strlen(h), "SESSIONID", &v, &n));
    assert_int_equal(n, 1);
    assert_memory_equal(v, "q", 1);
    assert_true(bth_cookie_find(h, strlen(h), "empty", &v, &n));
    assert_int_equal(n, 0);
    assert_false(bth_cookie_find(h, strlen(h), "BERTH", &v, &n));
    assert_false(bth_cookie_find(h, strlen(h), "web", &v, &n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_round_trip, setup),
        cmocka_unit_test_setup(test_tamper_scope_expiry, setup),
        cmocka_unit_test_setup(test_other_key_rejects, setup),
        cmocka_unit_test(test_bad_keys),
        cmocka_unit_test_setup(test_cookie_find, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
