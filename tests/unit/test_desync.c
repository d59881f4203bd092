/* SPDX-License-Identifier: MIT */
/* Desync classification: every case of aws/http-desync-guardian's data (tests/data/
 * desync-cases, compiled in through desync_cases.inc) must get its tier and reason exactly,
 * then heads the data does not cover, then bth_desync_head_length. Heads are copied into
 * buffers of exactly their length so ASan catches any read past <len>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "desync.h"
#include "mem.h"

struct desync_case {
    const char *name;
    const char *raw;
    size_t len;
    enum bth_desync_tier tier;
    const char *reason;
};

static const struct desync_case guardian_cases[] = {
#include "desync_cases.inc"
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
/* A string literal and its length without the terminating NUL, which the head excludes. */
#define RAW(s) s, sizeof(s) - 1

/* Heads the case data does not have: bare-LF line ends, obs-fold, request-target forms,
 * transfer-coding lists, Content-Length limits, versions, and what lies after the head. */
static const struct desync_case extra_cases[] = {
    {"bare LF line ends", RAW("GET / HTTP/1.1\nHost: a\n\n"), BTH_DESYNC_SEVERE, "BadVersion"},
    {"bare LF ends the last field", RAW("GET / HTTP/1.1\r\nHost: a\n\r\n"), BTH_DESYNC_SEVERE,
     "BadHeader"},
    {"bare CR ends the request line", RAW("GET / HTTP/1.1\r\r\n\r\n"), BTH_DESYNC_SEVERE,
     "BadVersion"},
    {"obs-fold continues a value",
     RAW("POST / HTTP/1.1\r\nX-A: a\r\n b\r\nContent-Length: 1\r\n\r\n"), BTH_DESYNC_SEVERE,
     "BadHeader"},
    {"obs-fold extends Content-Length", RAW("POST / HTTP/1.1\r\nContent-Length: 1\r\n 0\r\n\r\n"),
     BTH_DESYNC_SEVERE, "BadHeader"},
    {"whitespace line before the first field", RAW("GET / HTTP/1.1\r\n \r\nHost: a\r\n\r\n"),
     BTH_DESYNC_SEVERE, "BadHeader"},
    {"field line without a colon", RAW("GET / HTTP/1.1\r\nHost a\r\n\r\n"), BTH_DESYNC_SEVERE,
     "BadHeader"},
    {"absolute-form", RAW("GET http://example.com/a?b=c HTTP/1.1\r\nHost: example.com\r\n\r\n"),
     BTH_DESYNC_COMPLIANT, "Compliant"},
    {"asterisk-form with OPTIONS", RAW("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
     BTH_DESYNC_COMPLIANT, "Compliant"},
    {"asterisk-form with GET", RAW("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), BTH_DESYNC_ACCEPTABLE,
     "NonCompliantUri"},
    {"authority-form with CONNECT", RAW("CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
     BTH_DESYNC_COMPLIANT, "Compliant"},
    {"relative target", RAW("GET foo HTTP/1.1\r\nHost: a\r\n\r\n"), BTH_DESYNC_ACCEPTABLE,
     "NonCompliantUri"},
    {"VT in the target", RAW("GET /a\vb HTTP/1.1\r\nHost: a\r\n\r\n"), BTH_DESYNC_AMBIGUOUS,
     "AmbiguousUri"},
    {"HTAB between method and target", RAW("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), BTH_DESYNC_SEVERE,
     "BadMethod"},
    {"HTAB before the version", RAW("GET /a\tHTTP/1.1\r\nHost: a\r\n\r\n"), BTH_DESYNC_SEVERE,
     "BadUri"},
    {"extension method", RAW("PURGE /a HTTP/1.1\r\nHost: a\r\n\r\n"), BTH_DESYNC_COMPLIANT,
     "Compliant"},
    {"request line without target", RAW("GET\r\nHost: a\r\n\r\n"), BTH_DESYNC_SEVERE, "BadUri"},
    {"empty head", RAW(""), BTH_DESYNC_SEVERE, "BadMethod"},
    {"HTTP/0.9 simple request", RAW("GET /a\r\n"), BTH_DESYNC_ACCEPTABLE, "NonCompliantVersion"},
    {"HTTP/2.0 in a request line", RAW("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), BTH_DESYNC_ACCEPTABLE,
     "NonCompliantVersion"},
    {"lowercase version", RAW("GET / http/1.1\r\nHost: a\r\n\r\n"), BTH_DESYNC_SEVERE,
     "BadVersion"},
    {"two-digit minor version", RAW("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), BTH_DESYNC_SEVERE,
     "BadVersion"},
    {"HTTP/1.0 with Content-Length", RAW("POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n"),
     BTH_DESYNC_COMPLIANT, "Compliant"},
    {"final coding not chunked", RAW("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
     BTH_DESYNC_AMBIGUOUS, "UndefinedTransferEncodingSemantics"},
    {"chunked before gzip", RAW("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
     BTH_DESYNC_SEVERE, "BadTransferEncoding"},
    {"chunked before gzip, two fields",
     RAW("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"),
     BTH_DESYNC_SEVERE, "BadTransferEncoding"},
    {"empty Transfer-Encoding", RAW("POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n"),
     BTH_DESYNC_SEVERE, "BadTransferEncoding"},
    {"empty list elements", RAW("POST / HTTP/1.1\r\nTransfer-Encoding: ,gzip,, chunked,\r\n\r\n"),
     BTH_DESYNC_COMPLIANT, "Compliant"},
    {"quoted parameter with a comma",
     RAW("POST / HTTP/1.1\r\nTransfer-Encoding: gzip;q=\"a,b\", chunked\r\n\r\n"),
     BTH_DESYNC_COMPLIANT, "Compliant"},
    {"parameter without a name", RAW("POST / HTTP/1.1\r\nTransfer-Encoding: chunked;=x\r\n\r\n"),
     BTH_DESYNC_SEVERE, "BadTransferEncoding"},
    {"unterminated quoted parameter",
     RAW("POST / HTTP/1.1\r\nTransfer-Encoding: chunked;a=\"x\r\n\r\n"), BTH_DESYNC_SEVERE,
     "BadTransferEncoding"},
    {"largest Content-Length",
     RAW("POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n"), BTH_DESYNC_COMPLIANT,
     "Compliant"},
    {"Content-Length with leading zeros", RAW("POST / HTTP/1.1\r\nContent-Length: 007\r\n\r\n"),
     BTH_DESYNC_COMPLIANT, "Compliant"},
    {"Content-Length with a sign", RAW("POST / HTTP/1.1\r\nContent-Length: +7\r\n\r\n"),
     BTH_DESYNC_SEVERE, "BadContentLength"},
    {"empty Content-Length", RAW("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n"), BTH_DESYNC_SEVERE,
     "BadContentLength"},
    {"Content-Length list", RAW("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"),
     BTH_DESYNC_SEVERE, "BadContentLength"},
    {"same Content-Length spelled twice",
     RAW("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\n"),
     BTH_DESYNC_AMBIGUOUS, "DuplicateContentLength"},
    {"look-alike Content-Length in GET", RAW("GET / HTTP/1.1\r\nContent-Length : 5\r\n\r\n"),
     BTH_DESYNC_AMBIGUOUS, "SuspiciousHeader"},
    {"look-alike adds a second chunked",
     RAW("POST / HTTP/1.1\r\nTransfer_Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
     BTH_DESYNC_SEVERE, "MultipleTransferEncodingChunked"},
    {"indented Content-Length after a field",
     RAW("POST / HTTP/1.1\r\nX-A: a\r\n Content-Length: 5\r\n\r\n"), BTH_DESYNC_AMBIGUOUS,
     "SuspiciousHeader"},
    {"digits break the look-alike", RAW("POST / HTTP/1.1\r\nContent-Length2: 5\r\n\r\n"),
     BTH_DESYNC_COMPLIANT, "Compliant"},
    {"DEL in a value", RAW("GET / HTTP/1.1\r\nX-A: a\177b\r\n\r\n"), BTH_DESYNC_ACCEPTABLE,
     "NonCompliantHeader"},
    {"separator in a name", RAW("GET / HTTP/1.1\r\nX(A): a\r\n\r\n"), BTH_DESYNC_ACCEPTABLE,
     "NonCompliantHeader"},
    {"empty lines before the request line", RAW("\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
     BTH_DESYNC_COMPLIANT, "Compliant"},
    {"body and next request ignored",
     RAW("POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n\0\r\n\rGET\t/\0 HTTP/9\r\n\r\n"),
     BTH_DESYNC_COMPLIANT, "Compliant"},
    {"head without its empty line", RAW("GET / HTTP/1.1\r\nHost: a"), BTH_DESYNC_COMPLIANT,
     "Compliant"},
};

/* Classifies <c> from a heap copy of exactly <len> bytes. */
static void classify_exact(const char *raw, size_t len, struct bth_desync_verdict *v)
{
    char *buf = len > 0 ? bth_malloc(len) : NULL;
    assert_true(len == 0 || buf != NULL);
    if (len > 0)
        memcpy(buf, raw, len);
    bth_desync_classify(buf, len, v);
    bth_free(buf);
}

static size_t head_length_exact(const char *raw, size_t len)
{
    char *buf = len > 0 ? bth_malloc(len) : NULL;
    assert_true(len == 0 || buf != NULL);
    if (len > 0)
        memcpy(buf, raw, len);
    size_t n = bth_desync_head_length(buf, len);
    bth_free(buf);
    return n;
}

static bool verdict_is(const struct bth_desync_verdict *v, const struct desync_case *c)
{
    return v->tier == c->tier && v->reason != NULL && strcmp(v->reason, c->reason) == 0;
}

/* Classifies each case twice, as given and cut to bth_desync_head_length() (what a reader
 * would pass), prints a table of every mismatch and returns how many cases matched. */
static size_t run_cases(const char *label, const struct desync_case *cases, size_t n)
{
    size_t ok = 0;
    bool header = false;
    for (size_t i = 0; i < n; i++) {
        const struct desync_case *c = &cases[i];
        struct bth_desync_verdict whole, head;
        classify_exact(c->raw, c->len, &whole);
        size_t hl = bth_desync_head_length(c->raw, c->len);
        classify_exact(c->raw, hl > 0 ? hl : c->len, &head);
        if (verdict_is(&whole, c) && verdict_is(&head, c)) {
            ok++;
            continue;
        }
        if (!header) {
            printf("%-3s | %-60s | %-44s | %s\n", "#", "case", "expected", "got (whole / head)");
            header = true;
        }
        printf("%-3zu | %-60.60s | %-10s %-33s | %s %s / %s %s\n", i + 1, c->name,
               bth_desync_tier_name(c->tier), c->reason, bth_desync_tier_name(whole.tier),
               whole.reason, bth_desync_tier_name(head.tier), head.reason);
    }
    printf("desync %s: %zu/%zu cases classified as expected\n", label, ok, n);
    return ok;
}

static void test_guardian_cases(void **state)
{
    (void)state;
    /* The data has 158 cases: a different count means the .inc is stale or truncated. */
    assert_int_equal(N_ELEMS(guardian_cases), 158);
    assert_int_equal(run_cases("guardian cases", guardian_cases, N_ELEMS(guardian_cases)),
                     N_ELEMS(guardian_cases));
}

static void test_extra_cases(void **state)
{
    (void)state;
    assert_int_equal(run_cases("extra cases", extra_cases, N_ELEMS(extra_cases)),
                     N_ELEMS(extra_cases));
}

static const struct {
    const char *raw;
    size_t len;
    size_t want;
} head_lengths[] = {
    {RAW("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 27},
    {RAW("GET / HTTP/1.1\r\nHost: a\r\n\r"), 0},
    {RAW("GET / HTTP/1.1\r\nHost: a\r\n"), 0},
    {RAW("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"), 19},
    {RAW("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"), 38},
    {RAW("GET / HTTP/1.1\n\n"), 16},
    {RAW("GET / HTTP/1.1\r\n\n"), 17},
    {RAW("GET / HTTP/1.1\n\r\n"), 17},
    {RAW("GET / HTTP/1.1\n\r"), 0},
    {RAW("GET / HTTP/1.1\r\r\r\r"), 0}, /* bare CR never ends a line */
    {RAW("GET /\0 HTTP/1.1\r\nX: \0\r\n\r\n"), 25},
    {RAW("\r\nGET / HTTP/1.1\r\n\r\n"), 20},
    {RAW("\r\n\r\n"), 0}, /* empty lines only: the request line has not arrived */
    {RAW("\r\n\r"), 0},
    {RAW(""), 0},
};

static void test_head_length(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMS(head_lengths); i++) {
        size_t got = head_length_exact(head_lengths[i].raw, head_lengths[i].len);
        if (got != head_lengths[i].want)
            printf("head_lengths[%zu]: got %zu, want %zu\n", i, got, head_lengths[i].want);
        assert_int_equal(got, head_lengths[i].want);
    }
}

/* Bytes arriving one by one: every prefix shorter than the head reports 0, every longer one
 * the same length, so a reader may call it after each read. */
static void test_head_length_prefixes(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMS(guardian_cases); i++) {
        const struct desync_case *c = &guardian_cases[i];
        size_t full = bth_desync_head_length(c->raw, c->len);
        assert_true(full > 0 && full <= c->len);
        for (size_t k = 0; k <= c->len; k++)
            assert_int_equal(head_length_exact(c->raw, k), k >= full ? full : 0);
    }
}

static void test_tier_names(void **state)
{
    (void)state;
    assert_string_equal(bth_desync_tier_name(BTH_DESYNC_COMPLIANT), "Compliant");
    assert_string_equal(bth_desync_tier_name(BTH_DESYNC_ACCEPTABLE), "Acceptable");
    assert_string_equal(bth_desync_tier_name(BTH_DESYNC_AMBIGUOUS), "Ambiguous");
    assert_string_equal(bth_desync_tier_name(BTH_DESYNC_SEVERE), "Severe");
    assert_string_equal(bth_desync_tier_name((enum bth_desync_tier)42), "?");
    assert_true(BTH_DESYNC_COMPLIANT < BTH_DESYNC_ACCEPTABLE);
    assert_true(BTH_DESYNC_ACCEPTABLE < BTH_DESYNC_AMBIGUOUS);
    assert_true(BTH_DESYNC_AMBIGUOUS < BTH_DESYNC_SEVERE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guardian_cases), cmocka_unit_test(test_extra_cases),
        cmocka_unit_test(test_head_length),    cmocka_unit_test(test_head_length_prefixes),
        cmocka_unit_test(test_tier_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
