/* SPDX-License-Identifier: MIT */
/* Header handling: spans recorded by the llhttp glue (also when bytes arrive in pieces),
 * and hop-by-hop removal per RFC 9110 7.6.1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http_head.h"

struct parsed {
    llhttp_t parser;
    struct bth_http_head head;
    size_t head_len;
};

/* Feeds <req> in pieces of <step> bytes, as reads would deliver it. Returns the llhttp error
 * of the last call (HPE_PAUSED at the end of the head). */
static llhttp_errno_t parse(struct parsed *p, const char *req, size_t step)
{
    llhttp_init(&p->parser, HTTP_REQUEST, &bth_http_head_settings);
    bth_http_head_reset(&p->head);
    p->parser.data = &p->head;
    p->head.base = req;
    size_t len = strlen(req), off = 0;
    llhttp_errno_t err = HPE_OK;
    while (off < len && err == HPE_OK) {
        size_t n = len - off < step ? len - off : step;
        err = llhttp_execute(&p->parser, req + off, n);
        off += n;
    }
    if (err == HPE_PAUSED) {
        p->head_len = (size_t)(llhttp_get_error_pos(&p->parser) - req);
        bth_http_head_finish(&p->head);
    }
    return err;
}

static int find(const struct bth_http_head *h, const char *name)
{
    for (unsigned i = 0; i < h->nhdrs; i++) {
        if (bth_span_ieq(h, h->hdrs[i].name, name))
            return (int)i;
    }
    return -1;
}

static void assert_value(const struct bth_http_head *h, const char *name, const char *value)
{
    int i = find(h, name);
    assert_true(i >= 0);
    assert_int_equal(h->hdrs[i].value.len, strlen(value));
    assert_memory_equal(bth_span_ptr(h, h->hdrs[i].value), value, strlen(value));
}

static const char *const sample = "POST /api/v1?x=1 HTTP/1.1\r\n"
                                  "Host: example.com\r\n"
                                  "Connection: keep-alive, X-Drop-Me\r\n"
                                  "Keep-Alive: timeout=5\r\n"
                                  "X-Drop-Me: secret\r\n"
                                  "TE: trailers\r\n"
                                  "Empty:\r\n"
                                  "Content-Length: 3\r\n"
                                  "User-Agent: test/1.0\r\n"
                                  "\r\n"
                                  "abc";

static void check_sample(const struct parsed *p)
{
    const struct bth_http_head *h = &p->head;
    assert_int_equal(h->nhdrs, 8);
    assert_int_equal(h->url.len, strlen("/api/v1?x=1"));
    assert_memory_equal(bth_span_ptr(h, h->url), "/api/v1?x=1", h->url.len);
    assert_value(h, "host", "example.com");
    assert_value(h, "user-agent", "test/1.0");
    assert_value(h, "empty", "");
    assert_int_equal(p->head_len, strlen(sample) - 3);
    assert_true(h->conn_keep_alive);
    assert_false(h->conn_close);
    /* hop-by-hop and Connection-named headers are dropped, the rest kept */
    assert_true(h->hdrs[find(h, "connection")].drop);
    assert_true(h->hdrs[find(h, "keep-alive")].drop);
    assert_true(h->hdrs[find(h, "x-drop-me")].drop);
    assert_true(h->hdrs[find(h, "te")].drop);
    assert_false(h->hdrs[find(h, "host")].drop);
    assert_false(h->hdrs[find(h, "content-length")].drop);
    assert_false(h->hdrs[find(h, "user-agent")].drop);
    assert_int_equal(h->idx[BTH_HDR_HOST], find(h, "host"));
    assert_int_equal(h->idx[BTH_HDR_X_REQUEST_ID], -1);
}

static void test_whole(void **state)
{
    struct parsed p;
    assert_int_equal(parse(&p, sample, 1 << 20), HPE_PAUSED);
    check_sample(&p);
}

static void test_byte_by_byte(void **state)
{
    /* every token split across reads must still give one span per name and value */
    struct parsed p;
    for (size_t step = 1; step < 12; step++) {
        assert_int_equal(parse(&p, sample, step), HPE_PAUSED);
        check_sample(&p);
    }
}

static void test_connection_cannot_drop_framing(void **state)
{
    struct parsed p;
    assert_int_equal(
        parse(&p,
              "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, Host, Content-Length\r\n"
              "Content-Length: 0\r\n\r\n",
              64),
        HPE_PAUSED);
    assert_true(p.head.conn_close);
    assert_false(p.head.hdrs[find(&p.head, "host")].drop);
    assert_false(p.head.hdrs[find(&p.head, "content-length")].drop);
}

static void test_upgrade_tokens(void **state)
{
    struct parsed p;
    assert_int_equal(parse(&p,
                           "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                           "Upgrade: websocket\r\n\r\n",
                           64),
                     HPE_PAUSED);
    assert_true(p.head.conn_upgrade);
    assert_true(p.parser.upgrade);
    assert_true(p.head.idx[BTH_HDR_UPGRADE] >= 0);
}

static void test_too_many_headers(void **state)
{
    char req[16384] = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < BTH_HTTP_MAX_HEADERS + 5; i++)
        snprintf(req + strlen(req), sizeof(req) - strlen(req), "X-H%d: v\r\n", i);
    strcat(req, "\r\n");
    struct parsed p;
    assert_int_equal(parse(&p, req, 100), HPE_PAUSED);
    assert_true(p.head.too_many);
    assert_int_equal(p.head.nhdrs, BTH_HTTP_MAX_HEADERS);
}

static void test_kinds(void **state)
{
    assert_int_equal(bth_http_hdr_kind("X-Forwarded-For", 15), BTH_HDR_X_FORWARDED_FOR);
    assert_int_equal(bth_http_hdr_kind("TRANSFER-ENCODING", 17), BTH_HDR_TRANSFER_ENCODING);
    assert_int_equal(bth_http_hdr_kind("Hostx", 5), BTH_HDR_OTHER);
    assert_int_equal(bth_http_hdr_kind("Hos", 3), BTH_HDR_OTHER);
}

static void test_malformed_rejected(void **state)
{
    struct parsed p;
    assert_int_equal(parse(&p, "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 64), HPE_USER);
    assert_int_equal(
        parse(&p, "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 64),
        HPE_UNEXPECTED_CONTENT_LENGTH);
    assert_int_not_equal(parse(&p, "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 64), HPE_PAUSED);
}

/* Transfer-Encoding is one list over its fields; only a final chunked frames the body, and
 * chunked with parameters is forwarded as a bare chunked. */
static void test_transfer_encoding_list(void **state)
{
    (void)state;
    static const struct {
        const char *te_lines;
        int chunked;
        const char *reframed;
    } cases[] = {
        {"Transfer-Encoding: chunked\r\n", 1, "chunked"},
        {"Transfer-Encoding: gzip, chunked\r\n", 1, "gzip, chunked"},
        {"Transfer-Encoding: gzip\r\nTransfer-Encoding: CHUNKED\r\n", 1, "gzip, chunked"},
        {"Transfer-Encoding: gzip ;\r\nTransfer-Encoding:  chunked;p=1; \r\n", 1,
         "gzip ;, chunked"},
        {"Transfer-Encoding: gzip , \tdeflate\t,chunked\r\n", 1, "gzip, deflate, chunked"},
        {"Transfer-Encoding: gzip\r\n", 0, NULL},
        {"Transfer-Encoding: xchunked\r\n", 0, NULL},
        {"Transfer-Encoding: chunkedx\r\n", 0, NULL},
        {"Transfer-Encoding: identity, , \r\n", 0, NULL},
        {"Transfer-Encoding: gzip;q=\"x, chunked \"\r\n", 0, NULL},
        {"Transfer-Encoding: chunked;q=\"a\"\r\n", 0, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nHost: x\r\n%s\r\n", cases[i].te_lines);
        struct parsed p;
        assert_int_equal(parse(&p, req, 1000), HPE_PAUSED);
        if (bth_http_head_te_chunked(&p.head) != (cases[i].chunked != 0))
            fail_msg("%s: chunked should be %d", cases[i].te_lines, cases[i].chunked);
        if (cases[i].reframed != NULL) {
            char out[256];
            assert_true(bth_http_head_te_room(&p.head) <= sizeof(out));
            size_t n = bth_http_head_te_reframe(&p.head, out);
            out[n] = '\0';
            assert_string_equal(out, cases[i].reframed);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_connection_cannot_drop_framing),
        cmocka_unit_test(test_upgrade_tokens),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_malformed_rejected),
        cmocka_unit_test(test_transfer_encoding_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
