/* SPDX-License-Identifier: MIT */
/* Request-target rules: Host / authority syntax, and path normalisation (escapes, dot
 * segments, slash merging, climbing above the root), including RFC 3986 section 5.4's
 * dot-segment examples. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "uri.h"

static void test_authority(void **state)
{
    (void)state;
    static const char *const good[] = {
        "example.com",
        "example.com:8080",
        "[::1]",
        "[::1]:80",
        "127.0.0.1",
        "EXAMPLE.com",
        "xn--bcher-kva.example",
        "",
        "a:",
        "a%20b",
        "a_b-c~d",
        "a;b",
        "[fd00::1:2]:65535",
    };
    static const char *const bad[] = {
        "exa mple.com",
        "a/b",
        "a@b",
        "host:port",
        "host:80:81",
        "[::1",
        "a\"b",
        "host:123456",
        "[::1]x",
        "[zz::1]",
        "a,b",
        "good.example,evil.example",
        "a%2",
        "a%zz",
        "a\tb",
        "a,b",
        "good.example,evil.example",
        "a?b",
        "a#b",
        "[]",
        "::1",
        "a\x01",
        "a\xc3\xa9",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!bth_uri_authority_valid(good[i], strlen(good[i])))
            fail_msg("valid authority refused: \"%s\"", good[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (bth_uri_authority_valid(bad[i], strlen(bad[i])))
            fail_msg("invalid authority taken: \"%s\"", bad[i]);
    }
}

static int norm(const char *in, enum bth_path_norm mode, char *out, size_t cap)
{
    size_t n = 0;
    int r = bth_uri_normalize_path(in, strlen(in), mode, out, cap, &n);
    if (r == BTH_URI_OK)
        assert_int_equal(n, strlen(out));
    return r;
}

#define NORM_EQ(in, mode, want)                                                                    \
    do {                                                                                           \
        char out_[256];                                                                            \
        assert_int_equal(norm((in), (mode), out_, sizeof(out_)), BTH_URI_OK);                      \
        assert_string_equal(out_, (want));                                                         \
    } while (0)

static void test_normalize(void **state)
{
    (void)state;
    const enum bth_path_norm on = BTH_PATH_NORM_ON, merge = BTH_PATH_NORM_MERGE_SLASHES;
    NORM_EQ("/", on, "/");
    NORM_EQ("/a/b/c", on, "/a/b/c");
    NORM_EQ("/api/x/../../admin", on, "/admin");
    NORM_EQ("/api/%2e%2e/admin", on, "/admin");
    NORM_EQ("/api/%2E%2E/admin", on, "/admin");
    NORM_EQ("/%61dmin", on, "/admin");
    NORM_EQ("/api/./x/../y", on, "/api/y");
    NORM_EQ("/api/%7Euser", on, "/api/~user");
    NORM_EQ("/api/a%2fb", on, "/api/a%2Fb");
    NORM_EQ("/a%20b", on, "/a%20b");
    NORM_EQ("/a/.", on, "/a/");
    NORM_EQ("/a/..", on, "/");
    NORM_EQ("/a/./", on, "/a/");
    NORM_EQ("/a/b/..", on, "/a/");
    NORM_EQ("/a/.b/..c/...", on, "/a/.b/..c/...");
    NORM_EQ("/index.html", on, "/index.html");
    NORM_EQ("/api//x", on, "/api//x");
    NORM_EQ("/api//x", merge, "/api/x");
    NORM_EQ("//admin", merge, "/admin");
    NORM_EQ("///a///b//", merge, "/a/b/");
    NORM_EQ("/a/../../b", BTH_PATH_NORM_OFF, "/a/../../b");
    /* RFC 3986 section 5.2.4's own examples, as paths. */
    NORM_EQ("/a/b/c/./../../g", on, "/a/g");
    NORM_EQ("/b/c/./g", on, "/b/c/g");
    NORM_EQ("/b/c/g/", on, "/b/c/g/");
    NORM_EQ("/b/c/../g", on, "/b/g");
}

static void test_normalize_refusals(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(norm("/../x", BTH_PATH_NORM_ON, out, sizeof(out)), BTH_URI_ABOVE_ROOT);
    assert_int_equal(norm("/api/../../x", BTH_PATH_NORM_ON, out, sizeof(out)), BTH_URI_ABOVE_ROOT);
    assert_int_equal(norm("/..", BTH_PATH_NORM_ON, out, sizeof(out)), BTH_URI_ABOVE_ROOT);
    assert_int_equal(norm("/%2e%2e/x", BTH_PATH_NORM_ON, out, sizeof(out)), BTH_URI_ABOVE_ROOT);
    assert_int_equal(norm("/api/%zz", BTH_PATH_NORM_ON, out, sizeof(out)), BTH_URI_BAD_ESCAPE);
    assert_int_equal(norm("/api/%4", BTH_PATH_NORM_ON, out, sizeof(out)), BTH_URI_BAD_ESCAPE);
    assert_int_equal(norm("/api/%", BTH_PATH_NORM_ON, out, sizeof(out)), BTH_URI_BAD_ESCAPE);
    assert_int_equal(norm("/abcdef", BTH_PATH_NORM_ON, out, 4), BTH_URI_BAD_ESCAPE);
}

static void test_needs_normalizing(void **state)
{
    (void)state;
    const enum bth_path_norm on = BTH_PATH_NORM_ON;
    assert_false(bth_uri_path_needs_normalizing("/a/b.html", 9, on));
    assert_false(bth_uri_path_needs_normalizing("/a//b", 5, on));
    assert_true(bth_uri_path_needs_normalizing("/a//b", 5, BTH_PATH_NORM_MERGE_SLASHES));
    assert_true(bth_uri_path_needs_normalizing("/a/./b", 6, on));
    assert_true(bth_uri_path_needs_normalizing("/a%41", 5, on));
    assert_false(bth_uri_path_needs_normalizing("/a/../b", 7, BTH_PATH_NORM_OFF));
}

static void test_dot_segments_in_place(void **state)
{
    (void)state;
    char buf[] = "/a/b/../../../c";
    size_t n = strlen(buf);
    assert_int_equal(bth_uri_remove_dot_segments(buf, &n), BTH_URI_ABOVE_ROOT);
    char buf2[] = "/x/y/../z/./";
    n = strlen(buf2);
    assert_int_equal(bth_uri_remove_dot_segments(buf2, &n), BTH_URI_OK);
    assert_string_equal(buf2, "/x/z/");
    assert_int_equal(n, 5);
}

static void test_host_without_port(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
    } cases[] = {
        {"example.com:8080", 11},
        {"example.com", 11},
        {"example.com:", 11},
        {"[fd00::1]:443", 9},
        {"[fd00::1]", 9},
        {"fd00::1", 7},
        {"10.0.0.1:80", 8},
        {"", 0},
        {":80", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = 12345;
        bth_uri_host_without_port(cases[i].in, strlen(cases[i].in), &n);
        if (n != cases[i].len)
            fail_msg("\"%s\": %zu, want %zu", cases[i].in, n, cases[i].len);
    }
}

#define SPLIT(t) bth_uri_split_target((t), strlen(t), &ut)
#define PIECE_EQ(ptr, len, want)                                                                   \
    do {                                                                                           \
        assert_int_equal((len), strlen(want));                                                     \
        assert_memory_equal((ptr), (want), (len));                                                 \
    } while (0)

static void test_split_target(void **state)
{
    (void)state;
    struct bth_uri_target ut;
    assert_int_equal(SPLIT("/a%20b?x=1&y=%zz"), 0);
    PIECE_EQ(ut.path, ut.path_len, "/a%20b");
    PIECE_EQ(ut.query, ut.query_len, "x=1&y=%zz");
    assert_true(ut.has_query);
    assert_null(ut.authority);

    assert_int_equal(SPLIT("/plain"), 0);
    PIECE_EQ(ut.path, ut.path_len, "/plain");
    assert_false(ut.has_query);
    assert_non_null(ut.query);
    assert_int_equal(ut.query_len, 0);
    assert_int_equal(SPLIT("/p?"), 0);
    assert_true(ut.has_query);
    assert_int_equal(ut.query_len, 0);
    assert_int_equal(SPLIT("/p#frag"), 0);
    PIECE_EQ(ut.path, ut.path_len, "/p");
    assert_int_equal(SPLIT("/p?q#frag"), 0);
    PIECE_EQ(ut.query, ut.query_len, "q");

    assert_int_equal(SPLIT(""), -1);
    assert_int_equal(SPLIT("example.com:443"), -1); /* authority-form */
    assert_int_equal(SPLIT("://x/"), -1);

    assert_int_equal(SPLIT("http://Example.com:8080/p%41th?q=1"), 0);
    PIECE_EQ(ut.authority, ut.authority_len, "Example.com:8080");
    PIECE_EQ(ut.path, ut.path_len, "/p%41th");
    PIECE_EQ(ut.query, ut.query_len, "q=1");
    assert_int_equal(SPLIT("https://h"), 0);
    PIECE_EQ(ut.authority, ut.authority_len, "h");
    assert_int_equal(ut.path_len, 0);
    assert_int_equal(SPLIT("http://h?x"), 0);
    assert_int_equal(ut.path_len, 0);
    PIECE_EQ(ut.query, ut.query_len, "x");
    assert_int_equal(SPLIT("http://user:pw@[fd00::1]:80/x"), 0);
    PIECE_EQ(ut.authority, ut.authority_len, "user:pw@[fd00::1]:80");
    assert_false(bth_uri_authority_valid(ut.authority, ut.authority_len)); /* userinfo */

    assert_int_equal(SPLIT("*"), 0);
    PIECE_EQ(ut.path, ut.path_len, "*");
}

static void test_percent_decode(void **state)
{
    (void)state;
    char out[16];
    size_t n;
    assert_int_equal(bth_uri_percent_decode("/%2Fx%2f%41", 11, out, sizeof(out), &n), 0);
    assert_string_equal(out, "//x/A");
    assert_int_equal(n, 5);
    assert_int_equal(bth_uri_percent_decode("/%zz", 4, out, sizeof(out), &n), -1);
    assert_int_equal(bth_uri_percent_decode("/%4", 3, out, sizeof(out), &n), -1);
    assert_int_equal(bth_uri_percent_decode("/a%00b", 6, out, sizeof(out), &n), -1);
    assert_int_equal(bth_uri_percent_decode("/abc", 4, out, 4, &n), -1); /* room for the NUL */
    assert_int_equal(bth_uri_percent_decode("/abc", 4, out, 5, &n), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authority),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_normalize_refusals),
        cmocka_unit_test(test_needs_normalizing),
        cmocka_unit_test(test_dot_segments_in_place),
        cmocka_unit_test(test_host_without_port),
        cmocka_unit_test(test_split_target),
        cmocka_unit_test(test_percent_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
