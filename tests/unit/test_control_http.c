/* SPDX-License-Identifier: MIT */
/* The control API's request reader (control_http.c, included for its statics): requests in,
 * what handlers see (or the error answered) out, the same whichever pieces the bytes come
 * in; the 16 KiB head limit stops parsing at 16 KiB; and random mutations of valid requests
 * never read past the limits or depend on how the input is split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/control/control_http.c"

#define MAX_SEEN 8

/* What one request came out as. */
struct seen {
    int status; /* 0: complete; else the error answered */
    char code[48];
    char uri[128];
    char auth[64];
    size_t body_len;
    bool keep_alive;
    bool expect_continue;
};

struct run {
    struct seen v[MAX_SEEN];
    size_t n;
    size_t consumed; /* input bytes taken */
    size_t max_head_bytes;
};

/* Feeds <in> in pieces of at most <step> bytes, stepping through heads and requests as the
 * connection code does, until the input ends, an error, or a request that ends the
 * connection. */
static void drive(const char *in, size_t len, size_t step, struct run *out)
{
    struct creq r;
    memset(out, 0, sizeof(*out));
    assert_int_equal(creq_init(&r), 0);
    size_t off = 0;
    for (unsigned guard = 0; guard < 10 * 1000 * 1000; guard++) {
        size_t avail = len - off < step ? len - off : step, used = 0;
        enum feed_result fr = creq_feed(&r, in + off, avail, &used);
        assert_true(used <= avail);
        off += used;
        if (r.head_bytes > out->max_head_bytes)
            out->max_head_bytes = r.head_bytes;
        if (fr == FEED_MORE) {
            assert_int_equal(used, avail);
            if (off >= len)
                break;
            continue;
        }
        if (fr == FEED_HEAD) {
            creq_resume(&r);
            continue;
        }
        struct seen *s = &out->v[out->n++];
        if (fr == FEED_ERROR) {
            s->status = r.status;
            snprintf(s->code, sizeof(s->code), "%s", r.code);
            break;
        }
        const char *auth = creq_header(&r, "authorization");
        snprintf(s->uri, sizeof(s->uri), "%s", r.url == NO_OFFSET ? "" : r.store + r.url);
        snprintf(s->auth, sizeof(s->auth), "%s", auth ? auth : "(none)");
        s->body_len = evbuffer_get_length(r.body);
        s->keep_alive = r.keep_alive;
        s->expect_continue = r.expect_continue;
        if (!r.keep_alive || out->n == MAX_SEEN)
            break;
        creq_next(&r);
    }
    out->consumed = off;
    creq_fini(&r);
}

static const size_t steps[] = {1, 2, 3, 7, 64, 4096, SIZE_MAX};

/* Runs <in> at every step size and checks each gives the same as the whole at once. */
static void drive_all(const char *in, size_t len, struct run *out)
{
    drive(in, len, SIZE_MAX, out);
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct run again;
        drive(in, len, steps[i], &again);
        assert_int_equal(again.n, out->n);
        assert_memory_equal(again.v, out->v, out->n * sizeof(out->v[0]));
    }
}

static void drive_str(const char *in, struct run *out)
{
    drive_all(in, strlen(in), out);
}

static void test_simple_get(void **state)
{
    struct run r;
    drive_str("GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t0k  \t\r\n\r\n", &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.v[0].status, 0);
    assert_string_equal(r.v[0].uri, "/healthz?x=1");
    assert_string_equal(r.v[0].auth, "Bearer t0k"); /* trailing whitespace is not the value */
    assert_true(r.v[0].keep_alive);
    assert_false(r.v[0].expect_continue);
}

static void test_pipelined_with_bodies(void **state)
{
    struct run r;
    drive_str("POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
              "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n"
              "0\r\nAuthorization: trailer-not-kept\r\n\r\n"
              "GET /c HTTP/1.1\r\nAuthorization: c\r\n\r\n"
              "GET /d HTTP/1.1\r\nConnection: close\r\n\r\n"
              "GET /never HTTP/1.1\r\n\r\n",
              &r);
    assert_int_equal(r.n, 4);
    assert_string_equal(r.v[0].uri, "/a");
    assert_int_equal(r.v[0].body_len, 3);
    assert_string_equal(r.v[1].uri, "/b");
    assert_int_equal(r.v[1].body_len, 8);
    assert_string_equal(r.v[1].auth, "(none)");
    assert_string_equal(r.v[2].auth, "c");
    assert_true(r.v[2].keep_alive);
    assert_string_equal(r.v[3].uri, "/d");
    assert_false(r.v[3].keep_alive);
}

static void test_http10_and_expect(void **state)
{
    struct run r;
    drive_str("GET / HTTP/1.0\r\n\r\n", &r);
    assert_int_equal(r.n, 1);
    assert_false(r.v[0].keep_alive);
    drive_str("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r);
    assert_true(r.v[0].keep_alive);
    drive_str("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi", &r);
    assert_true(r.v[0].expect_continue);
    drive_str("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n", &r);
    assert_false(r.v[0].expect_continue); /* no body: nothing to wait for */
}

static void test_errors(void **state)
{
    static const struct {
        const char *in;
        int status;
        const char *code;
    } cases[] = {
        {"PUT / HTTP/1.1\r\n\r\n", 405, "MethodNotAllowed"},
        {"HEAD / HTTP/1.1\r\n\r\n", 405, "MethodNotAllowed"},
        {"CONNECT a:1 HTTP/1.1\r\n\r\n", 405, "MethodNotAllowed"},
        {"BREW /pot HTTP/1.1\r\n\r\n", 405, "MethodNotAllowed"},
        {"\x16\x03\x01\x00", 405, "MethodNotAllowed"},
        {"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400, "BadRequest"},
        {"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "BadRequest"},
        {"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "BadRequest"},
        {"POST / HTTP/1.1\r\nContent-Length: 4194305\r\n\r\n", 413, "RequestEntityTooLarge"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct run r;
        drive_str(cases[i].in, &r);
        assert_int_equal(r.n, 1);
        assert_int_equal(r.v[0].status, cases[i].status);
        assert_string_equal(r.v[0].code, cases[i].code);
    }
    /* exactly 4 MiB is fine, a byte more is not (chunked: counted as it arrives) */
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = BTH_CONTROL_HTTP_MAX_BODY_BYTES + (size_t)extra;
        char *in = malloc(n + 128);
        int h = sprintf(in, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%zx\r\n", n);
        memset(in + h, 'x', n);
        memcpy(in + h + n, "\r\n0\r\n\r\n", 7);
        struct run r;
        drive(in, (size_t)h + n + 7, 65536, &r);
        assert_int_equal(r.n, 1);
        assert_int_equal(r.v[0].status, extra ? 413 : 0);
        free(in);
    }
}

/* A head of <len> bytes: request line, padding header, blank line. */
static char *head_of_len(size_t len)
{
    static const char start[] = "GET / HTTP/1.1\r\nX-Pad: ";
    char *in = malloc(len + 1);
    memcpy(in, start, sizeof(start) - 1);
    memset(in + sizeof(start) - 1, 'p', len - (sizeof(start) - 1) - 4);
    memcpy(in + len - 4, "\r\n\r\n", 5);
    return in;
}

static void test_head_limit(void **state)
{
    struct run r;
    char *in = head_of_len(BTH_CONTROL_HTTP_MAX_HEAD_BYTES);
    drive_str(in, &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.v[0].status, 0);
    free(in);
    in = head_of_len(BTH_CONTROL_HTTP_MAX_HEAD_BYTES + 1);
    drive_str(in, &r);
    assert_int_equal(r.v[0].status, 431);
    free(in);
    /* 64 MiB without a newline: parsing stops at the limit */
    size_t big = 64u << 20;
    in = malloc(big);
    memcpy(in, "GET / HTTP/1.1\r\nX-Big: ", 23);
    memset(in + 23, 'a', big - 23);
    drive(in, big, 16384, &r);
    assert_int_equal(r.v[0].status, 431);
    assert_string_equal(r.v[0].code, "RequestHeaderFieldsTooLarge");
    assert_int_equal(r.consumed, BTH_CONTROL_HTTP_MAX_HEAD_BYTES);
    free(in);
    /* many small fields */
    char many[8192];
    size_t n = (size_t)sprintf(many, "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= BTH_CONTROL_HTTP_MAX_HEADERS; i++)
        n += (size_t)sprintf(many + n, "X-%d: v\r\n", i);
    strcpy(many + n, "\r\n");
    drive_str(many, &r);
    assert_int_equal(r.v[0].status, 431);
}

/* Deterministic mutations (xorshift) of valid requests: every split gives the same result,
 * no head passes the limit, and nothing crashes (ASan builds check the memory). */
static void test_mutations(void **state)
{
    static const char *const seeds[] = {
        "GET /v1/target-groups HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\n\r\n",
        "POST /v1/target-groups/app/register HTTP/1.1\r\nContent-Length: 11\r\n\r\n{\"a\":[1,2]}"
        "GET /healthz HTTP/1.1\r\n\r\n",
        "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        "4\r\nabcd\r\n0\r\nT: v\r\n\r\n",
    };
    static const char alphabet[] = "\r\n :;/GETPOS0123456789abcdefxHTP.\t\x00\x7f\xff-";
    uint64_t x = 0x9E3779B97F4A7C15ull;
    char buf[512];
    for (int iter = 0; iter < 20000; iter++) {
        const char *s = seeds[iter % 3];
        size_t len = strlen(s);
        memcpy(buf, s, len);
        int edits = 1 + iter % 4;
        for (int e = 0; e < edits; e++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            size_t at = (size_t)(x % len);
            char ch = alphabet[(x >> 32) % (sizeof(alphabet) - 1)];
            switch ((x >> 48) % 3) {
            case 0:
                buf[at] = ch;
                break;
            case 1:
                if (len < sizeof(buf) - 1) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = ch;
                    len++;
                }
                break;
            default:
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
                break;
            }
        }
        struct run r;
        drive_all(buf, len, &r);
        assert_true(r.max_head_bytes <= BTH_CONTROL_HTTP_MAX_HEAD_BYTES);
        for (size_t i = 0; i < r.n; i++)
            assert_true(r.v[i].status == 0 || r.v[i].status == 400 || r.v[i].status == 405 ||
                        r.v[i].status == 413 || r.v[i].status == 431);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),        cmocka_unit_test(test_pipelined_with_bodies),
        cmocka_unit_test(test_http10_and_expect), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_head_limit),        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
