/* SPDX-License-Identifier: MIT */
/* Mending heads ELB forwards but llhttp refuses: what each mend writes, that the result is a
 * head llhttp reads whole, and the shapes left alone (0: berth refuses them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http_head.h"
#include "http_tolerate.h"

/* Mends <in>; asserts the result is <want> and that llhttp parses it to its very end. */
static void assert_mended(const char *in, const char *want)
{
    char out[BTH_HTTP_TOLERATE_ROOM(512)];
    size_t len = strlen(in);
    assert_true(len <= 512);
    size_t n = bth_http_tolerate_head(in, len, out);
    if (n == 0)
        fail_msg("not mended: %s", in);
    assert_true(n <= BTH_HTTP_TOLERATE_ROOM(len));
    out[n] = '\0';
    assert_string_equal(out, want);
    llhttp_t parser;
    struct bth_http_head head;
    llhttp_init(&parser, HTTP_REQUEST, &bth_http_head_settings);
    bth_http_head_reset(&head);
    parser.data = &head;
    head.base = out;
    assert_int_equal(llhttp_execute(&parser, out, n), HPE_PAUSED);
    assert_ptr_equal(llhttp_get_error_pos(&parser), out + n);
}

static void test_request_line(void **state)
{
    (void)state;
    assert_mended("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_mended("GET /foo/bar HTTP/1.2\r\nHost: x\r\n\r\n",
                  "GET /foo/bar HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_mended("GET /foo/bar \r\nHost: x\r\n\r\n", "GET /foo/bar HTTP/1.0\r\nHost: x\r\n\r\n");
    assert_mended("GET /a HTTP/1.1 \r\nHost: x\r\n\r\n", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_mended("GET  HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_mended("GET /a?p=not escaped HTTP/1.1\r\nHost: x\r\n\r\n",
                  "GET /a?p=not%20escaped HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_mended("\r\nGET /a HTTP/1.0\r\n\r\n", "GET /a HTTP/1.0\r\n\r\n");
}

static void test_fields(void **state)
{
    (void)state;
    assert_mended("PUT /a HTTP/1.1\r\nx-custom : v\r\nHost: x\r\n\r\n",
                  "PUT /a HTTP/1.1\r\nx-custom: v\r\nHost: x\r\n\r\n");
    assert_mended("PUT /a HTTP/1.1\r\n\x01x-custom: v\r\nHost: x\r\n\r\n",
                  "PUT /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_mended("PUT /a HTTP/1.1\r\nSome-Header\x01: v\r\nHost: x\r\n\r\n",
                  "PUT /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_mended("PUT /a HTTP/1.1\r\nSome-Header: \x01v\x7f\r\nHost: x\r\n\r\n",
                  "PUT /a HTTP/1.1\r\nSome-Header:  v \r\nHost: x\r\n\r\n");
    assert_mended("PUT /a HTTP/1.1\r\nA: caf\xc3\xa9\r\nHost: x\r\n\r\n",
                  "PUT /a HTTP/1.1\r\nA: caf\xc3\xa9\r\nHost: x\r\n\r\n");
}

static void test_left_alone(void **state)
{
    (void)state;
    static const char *const heads[] = {
        "GET /a HTTP/2.0\r\nHost: x\r\n\r\n",       /* another major version */
        "GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n",   /* a control byte in the target */
        "G\x01T /a HTTP/1.1\r\nHost: x\r\n\r\n",    /* the method is not a token */
        " GET /a HTTP/1.1\r\nHost: x\r\n\r\n",      /* no method */
        "GET /a HTTP/1.1\r\n Host: x\r\n\r\n",      /* obs-fold */
        "GET /a HTTP/1.1\r\nHost x\r\n\r\n",        /* no colon */
        "GET /a HTTP/1.1\r\n: x\r\n\r\n",           /* no name */
        "GET /a HTTP/1.1\r\nHost: x\ry\r\n\r\n",    /* a bare CR */
        "GET /a HTTP/1.1\nHost: x\r\n\r\n",         /* a bare LF */
        "GET /a HTTP/1.1\r\nHost: x\r\n",           /* no empty line */
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b", /* bytes after the head */
    };
    char out[BTH_HTTP_TOLERATE_ROOM(128)];
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        if (bth_http_tolerate_head(heads[i], strlen(heads[i]), out) != 0)
            fail_msg("mended what it should leave: %s", heads[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_line),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_left_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
