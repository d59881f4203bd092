/* SPDX-License-Identifier: MIT */
/* Listener rule matching: wildcard and case rules per condition type, AND/OR semantics,
 * priority order, CIDR edges, keys past the index's literal limit, and random rule sets checked
 * against a naive linear matcher. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "config.h"
#include "http_head.h"
#include "router.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------------------ */
/* Requests */

struct req {
    const char *host;
    const char *path;
    const char *query;
    const char *method;
    const char *hdrs; /* "name: value\n" lines */
    const char *src;  /* "10.0.0.1", "fd00::1"; NULL = no address */
};

struct built_req {
    struct bth_route_input in;
    struct bth_http_head head;
    char buf[4096];
    struct sockaddr_storage ss;
};

static void build_req(struct built_req *b, const struct req *q)
{
    memset(b, 0, sizeof(*b));
    bth_http_head_reset(&b->head);
    b->head.base = b->buf;
    size_t off = 0;
    for (const char *l = q->hdrs; l != NULL && *l != '\0';) {
        const char *nl = strchr(l, '\n');
        size_t n = nl != NULL ? (size_t)(nl - l) : strlen(l);
        const char *colon = memchr(l, ':', n);
        assert_non_null(colon);
        assert_true(off + n < sizeof(b->buf));
        memcpy(b->buf + off, l, n);
        struct bth_http_hdr *h = &b->head.hdrs[b->head.nhdrs++];
        h->name.off = (uint32_t)off;
        h->name.len = (uint32_t)(colon - l);
        size_t voff = (size_t)(colon - l) + 1;
        h->value.off = (uint32_t)(off + voff);
        h->value.len = (uint32_t)(n - voff);
        off += n;
        l = nl != NULL ? nl + 1 : l + n;
    }
    b->in.host = q->host != NULL ? q->host : "";
    b->in.host_len = strlen(b->in.host);
    b->in.path = q->path != NULL ? q->path : "/";
    b->in.path_len = strlen(b->in.path);
    b->in.query = q->query != NULL ? q->query : "";
    b->in.query_len = strlen(b->in.query);
    b->in.method = q->method != NULL ? q->method : "GET";
    b->in.method_len = strlen(b->in.method);
    b->in.head = &b->head;
    if (q->src != NULL) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&b->ss;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&b->ss;
        if (inet_pton(AF_INET, q->src, &s4->sin_addr) == 1) {
            s4->sin_family = AF_INET;
        } else {
            assert_int_equal(inet_pton(AF_INET6, q->src, &s6->sin6_addr), 1);
            s6->sin6_family = AF_INET6;
        }
        b->in.src = (const struct sockaddr *)&b->ss;
    }
}

/* ------------------------------------------------------------------------------------ */
/* Rules from YAML: each case reads like the config a user writes. */

#define RULE(prio, conds)                                                                          \
    "      - {priority: " #prio ", conditions: " conds                                             \
    ", action: {fixed_response: {status: 200}}}\n"

struct fixture {
    struct bth_config *cfg;
    struct bth_router *r;
};

static void load(struct fixture *f, const char *rules)
{
    char yaml[16384];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - bind: 127.0.0.1:8080\n"
             "    rules:\n%s"
             "    default_action: {fixed_response: {status: 404}}\n",
             rules);
    struct bth_err err;
    bth_err_init(&err);
    f->cfg = bth_config_load_buffer("t.yaml", yaml, strlen(yaml), &err);
    for (size_t i = 0; i < err.n; i++)
        print_error("unexpected: %s\n", err.msgs[i]);
    assert_int_equal(err.n, 0);
    bth_err_fini(&err);
    assert_non_null(f->cfg);
    f->r = bth_router_build(&f->cfg->listeners[0]);
    assert_non_null(f->r);
}

static void unload(struct fixture *f)
{
    bth_router_destroy(f->r);
    bth_config_destroy(f->cfg);
}

/* The priority of the rule <q> matches, 0 for the default action. */
static unsigned prio(const struct fixture *f, const struct req *q)
{
    static struct built_req b;
    build_req(&b, q);
    int i = bth_router_match(f->r, &b.in);
    if (i < 0)
        return 0;
    assert_true((size_t)i < f->cfg->listeners[0].nrules);
    return f->cfg->listeners[0].rules[i].priority;
}

#define H(h)     (&(struct req){.host = (h)})
#define P(p)     (&(struct req){.path = (p)})
#define HP(h, p) (&(struct req){.host = (h), .path = (p)})

static void test_host_wildcards(void **state)
{
    struct fixture f;
    /* clang-format off */
    load(&f, RULE(1, "{host: [\"*.example.com\"]}")
             RULE(2, "{host: [\"api-?.example.org\"]}")
             RULE(3, "{host: [\"a*b.test\"]}")
             RULE(4, "{host: [\"Exact.Example.NET\"]}")
             RULE(5, "{host: [\"*.example.*\"]}")
             RULE(6, "{host: [\"x?\"]}"));
    /* clang-format on */
    assert_int_equal(prio(&f, H("www.example.com")), 1);
    assert_int_equal(prio(&f, H("a.b.example.com")), 1); /* '*' spans dots */
    assert_int_equal(prio(&f, H(".example.com")), 1);    /* empty run */
    assert_int_equal(prio(&f, H("WWW.EXAMPLE.COM")), 1); /* case-insensitive */
    assert_int_equal(prio(&f, H("example.com")), 0);     /* the dot is literal */
    assert_int_equal(prio(&f, H("api-1.example.org")), 2);
    assert_int_equal(prio(&f, H("API-Z.example.org")), 2);
    assert_int_equal(prio(&f, H("api-.example.org")), 5); /* '?' is exactly one */
    assert_int_equal(prio(&f, H("api-12.example.org")), 5);
    assert_int_equal(prio(&f, H("ab.test")), 3);
    assert_int_equal(prio(&f, H("aXYZb.test")), 3);
    assert_int_equal(prio(&f, H("aXYZb.test.x")), 0);
    assert_int_equal(prio(&f, H("exact.example.net")), 4);
    assert_int_equal(prio(&f, H("EXACT.EXAMPLE.NET")), 4);
    assert_int_equal(prio(&f, H("exact.example.net.")), 5);
    assert_int_equal(prio(&f, H("xy")), 6);
    assert_int_equal(prio(&f, H("x")), 0);
    assert_int_equal(prio(&f, H("xyz")), 0);
    assert_int_equal(prio(&f, H("")), 0);
    unload(&f);
}

static void test_path_wildcards(void **state)
{
    struct fixture f;
    /* clang-format off */
    load(&f, RULE(1, "{path: [\"/api/*\"]}")
             RULE(2, "{path: [\"/img/*.png\"]}")
             RULE(3, "{path: [\"/v?/x\"]}")
             RULE(4, "{path: [\"/exact\"]}")
             RULE(5, "{path: [\"*.css\"]}")
             RULE(6, "{path: [\"/Caps*\"]}"));
    /* clang-format on */
    assert_int_equal(prio(&f, P("/api/")), 1);
    assert_int_equal(prio(&f, P("/api/users/1")), 1);
    assert_int_equal(prio(&f, P("/api")), 0);
    assert_int_equal(prio(&f, P("/API/users")), 0); /* case-sensitive */
    assert_int_equal(prio(&f, P("/img/a.png")), 2);
    assert_int_equal(prio(&f, P("/img/.png")), 2);
    assert_int_equal(prio(&f, P("/img/a.png/b")), 0);
    assert_int_equal(prio(&f, P("/v1/x")), 3);
    assert_int_equal(prio(&f, P("/v10/x")), 0);
    assert_int_equal(prio(&f, P("/exact")), 4);
    assert_int_equal(prio(&f, P("/exact/")), 0);
    assert_int_equal(prio(&f, P("/Exact")), 0);
    assert_int_equal(prio(&f, P("/a/b.css")), 5);
    assert_int_equal(prio(&f, P("/Caps/x")), 6);
    assert_int_equal(prio(&f, P("/caps/x")), 0);
    unload(&f);
}

static void test_method(void **state)
{
    struct fixture f;
    load(&f, RULE(1, "{method: [GET, POST]}") RULE(2, "{method: [\"CUSTOM-X\"]}"));
    assert_int_equal(prio(&f, &(struct req){.method = "GET"}), 1);
    assert_int_equal(prio(&f, &(struct req){.method = "POST"}), 1);
    assert_int_equal(prio(&f, &(struct req){.method = "get"}), 0); /* case-sensitive */
    assert_int_equal(prio(&f, &(struct req){.method = "GETX"}), 0);
    assert_int_equal(prio(&f, &(struct req){.method = "CUSTOM-X"}), 2);
    unload(&f);
}

static void test_headers(void **state)
{
    struct fixture f;
    /* clang-format off */
    load(&f, RULE(1, "{headers: {X-Env: [\"canary*\", \"beta\"]}}")
             RULE(2, "{headers: {x-a: [\"1\"], x-b: [\"?\"]}}")
             RULE(3, "{headers: {x-any: [\"*\"]}}"));
    /* clang-format on */
    assert_int_equal(prio(&f, &(struct req){.hdrs = "x-env: canary"}), 1);
    assert_int_equal(prio(&f, &(struct req){.hdrs = "X-ENV:CANARY-7"}), 1);  /* value ci */
    assert_int_equal(prio(&f, &(struct req){.hdrs = "x-env:  Beta \t"}), 1); /* OWS */
    assert_int_equal(prio(&f, &(struct req){.hdrs = "x-env: prod"}), 0);
    /* any header of that name may match */
    assert_int_equal(prio(&f, &(struct req){.hdrs = "x-env: prod\nx-env: beta"}), 1);
    assert_int_equal(prio(&f, &(struct req){.hdrs = "x-envx: beta"}), 0);
    /* two header conditions are AND-ed */
    assert_int_equal(prio(&f, &(struct req){.hdrs = "x-a: 1\nx-b: z"}), 2);
    assert_int_equal(prio(&f, &(struct req){.hdrs = "x-a: 1"}), 0);
    assert_int_equal(prio(&f, &(struct req){.hdrs = "x-a: 1\nx-b: zz"}), 0);
    /* "*" needs the header to be present, even empty */
    assert_int_equal(prio(&f, &(struct req){.hdrs = "x-any:"}), 3);
    assert_int_equal(prio(&f, &(struct req){.hdrs = ""}), 0);
    unload(&f);
}

static void test_query(void **state)
{
    struct fixture f;
    /* clang-format off */
    load(&f, RULE(1, "{query: {version: [\"2\", \"v3*\"]}}")
             RULE(2, "{query: {\"k ey\": [\"a&b\"]}}")
             RULE(3, "{query: {\"*\": [\"anyval\"]}}")
             RULE(4, "{query: {flag: [\"*\"]}}")
             RULE(5, "{query: {a: [\"1\"], b: [\"2\"]}}")
             RULE(6, "{query: {\"p?\": [\"%zz\"]}}")
             RULE(7, "{query: {\"sp%20ace\": [\"x%26y\"]}}"));
    /* clang-format on */
    struct req q = {0};
#define Q(s) (q.query = (s), prio(&f, &q))
    assert_int_equal(Q("version=2"), 1);
    assert_int_equal(Q("x=1&VERSION=2"), 1); /* key case-insensitive */
    assert_int_equal(Q("version=%32"), 1);   /* percent-decoded */
    assert_int_equal(Q("ver%73ion=V3beta"), 1);
    assert_int_equal(Q("version=20"), 0);
    assert_int_equal(Q("version"), 0);
    assert_int_equal(Q("k%20ey=a%26b"), 2); /* decoded '&' inside a value */
    assert_int_equal(Q("k+ey=a%26b"), 0);   /* '+' is not a space */
    assert_int_equal(Q("zz=ANYVAL"), 3);
    assert_int_equal(Q("flag"), 4); /* no '=': empty value */
    assert_int_equal(Q("&&flag=&"), 4);
    assert_int_equal(Q("a=1&b=2"), 5);
    assert_int_equal(Q("b=2&a=1"), 5);
    assert_int_equal(Q("a=1"), 0);
    assert_int_equal(Q("pq=%zz"), 6); /* a bad escape compares as its bytes */
    assert_int_equal(Q("pq=%ZZ"), 6);
    assert_int_equal(Q("sp%20ace=x%26y"), 7); /* patterns are decoded too */
    assert_int_equal(Q("SP%20Ace=X%26Y"), 7);
    assert_int_equal(Q("sp%20ace=x&y"), 0);
    assert_int_equal(Q(""), 0);
#undef Q
    unload(&f);
}

static void test_source_ip(void **state)
{
    struct fixture f;
    /* clang-format off */
    load(&f, RULE(1, "{source_ip: [\"10.1.2.3/32\"]}")
             RULE(2, "{source_ip: [\"10.0.0.0/8\", \"fd00::/8\"]}")
             RULE(3, "{source_ip: [\"192.168.16.0/20\"]}")
             RULE(4, "{source_ip: [\"2001:db8::1/128\"]}")
             RULE(5, "{source_ip: [\"2001:db8:ab00::/41\"]}")
             RULE(6, "{source_ip: [\"::/0\"]}")
             RULE(7, "{source_ip: [\"0.0.0.0/0\"]}"));
    /* clang-format on */
    struct req q = {0};
#define S(s) (q.src = (s), prio(&f, &q))
    assert_int_equal(S("10.1.2.3"), 1);
    assert_int_equal(S("10.1.2.4"), 2);
    assert_int_equal(S("fd12::1"), 2);
    assert_int_equal(S("192.168.16.1"), 3);
    assert_int_equal(S("192.168.31.255"), 3);
    assert_int_equal(S("192.168.32.0"), 7);
    assert_int_equal(S("192.168.15.255"), 7);
    assert_int_equal(S("2001:db8::1"), 4);
    assert_int_equal(S("2001:db8::2"), 6);
    assert_int_equal(S("2001:db8:ab7f::1"), 5);
    assert_int_equal(S("2001:db8:ab80::1"), 6);
    assert_int_equal(S("::1"), 6);             /* ::/0 takes any IPv6, no IPv4 */
    assert_int_equal(S("8.8.8.8"), 7);         /* 0.0.0.0/0 takes any IPv4 */
    assert_int_equal(S("::ffff:10.1.2.3"), 1); /* IPv4-mapped matches IPv4 CIDRs */
    assert_int_equal(S(NULL), 0);
#undef S
    unload(&f);

    /* Mismatched family: an IPv4 CIDR never takes an IPv6 client, and the reverse. */
    load(&f, RULE(1, "{source_ip: [\"0.0.0.0/0\"]}") RULE(2, "{source_ip: [\"fd00::/8\"]}"));
    assert_int_equal(prio(&f, &(struct req){.src = "fd00::1"}), 2);
    assert_int_equal(prio(&f, &(struct req){.src = "2001:db8::1"}), 0);
    unload(&f);
    load(&f, RULE(1, "{source_ip: [\"::/0\"]}"));
    assert_int_equal(prio(&f, &(struct req){.src = "1.2.3.4"}), 0);
    unload(&f);
}

static void test_and_or(void **state)
{
    struct fixture f;
    /* clang-format off */
    load(&f, RULE(10, "{host: [\"a.com\", \"b.com\"], path: [\"/x/*\", \"/y\"], "
                      "method: [GET]}")
             RULE(20, "{host: [\"a.com\"]}")
             RULE(30, "{path: [\"/y\"]}"));
    /* clang-format on */
    struct req q = {.host = "b.com", .path = "/y", .method = "GET"};
    assert_int_equal(prio(&f, &q), 10);
    q.host = "a.com", q.path = "/x/1";
    assert_int_equal(prio(&f, &q), 10);
    q.method = "POST";
    assert_int_equal(prio(&f, &q), 20); /* one condition fails: the whole rule fails */
    q.host = "c.com", q.path = "/y", q.method = "GET";
    assert_int_equal(prio(&f, &q), 30);
    q.path = "/x/1";
    assert_int_equal(prio(&f, &q), 0);
    unload(&f);
}

static void test_priority_yaml(void **state)
{
    struct fixture f;
    /* Written out of order: the lower priority wins wherever it is in the file. */
    /* clang-format off */
    load(&f, RULE(50, "{path: [\"/*\"]}") RULE(5, "{path: [\"/a/*\"]}")
             RULE(7, "{host: [\"*\"]}"));
    /* clang-format on */
    assert_int_equal(prio(&f, HP("h", "/a/b")), 5);
    assert_int_equal(prio(&f, HP("h", "/b")), 7);
    unload(&f);
}

/* ------------------------------------------------------------------------------------ */
/* Programmatic listeners (random sets, unsorted arrays). Plain malloc: the router copies
 * what it needs, and these are freed here. */

static void sl_add(struct bth_strlist *sl, const char *s)
{
    sl->v = realloc(sl->v, (sl->n + 1) * sizeof(*sl->v));
    assert_non_null(sl->v);
    sl->v[sl->n++] = strdup(s);
}

static void sl_free(struct bth_strlist *sl)
{
    for (size_t i = 0; i < sl->n; i++)
        free(sl->v[i]);
    free(sl->v);
}

static struct bth_cfg_kv_cond *kv_add(struct bth_cfg_kv_cond **arr, size_t *n, const char *key)
{
    *arr = realloc(*arr, (*n + 1) * sizeof(**arr));
    assert_non_null(*arr);
    struct bth_cfg_kv_cond *kv = &(*arr)[(*n)++];
    memset(kv, 0, sizeof(*kv));
    kv->key = strdup(key);
    return kv;
}

static void listener_free(struct bth_cfg_listener *l)
{
    for (size_t i = 0; i < l->nrules; i++) {
        struct bth_cfg_rule *r = &l->rules[i];
        sl_free(&r->host);
        sl_free(&r->path);
        sl_free(&r->method);
        sl_free(&r->source_ip);
        for (size_t j = 0; j < r->nheaders; j++) {
            free(r->headers[j].key);
            sl_free(&r->headers[j].values);
        }
        free(r->headers);
        for (size_t j = 0; j < r->nquery; j++) {
            free(r->query[j].key);
            sl_free(&r->query[j].values);
        }
        free(r->query);
    }
    free(l->rules);
    memset(l, 0, sizeof(*l));
}

static void test_priority_unsorted_array(void **state)
{
    struct bth_cfg_listener l = {0};
    unsigned prios[] = {30, 10, 20, 5};
    const char *paths[] = {"/*", "/a/*", "/a/b", "/zzz"};
    l.nrules = ARRAY_SIZE(prios);
    l.rules = calloc(l.nrules, sizeof(*l.rules));
    for (size_t i = 0; i < l.nrules; i++) {
        l.rules[i].priority = prios[i];
        sl_add(&l.rules[i].path, paths[i]);
    }
    struct bth_router *r = bth_router_build(&l);
    assert_non_null(r);
    struct built_req b;
    build_req(&b, P("/a/b"));
    assert_int_equal(bth_router_match(r, &b.in), 1); /* priority 10, index 1 */
    build_req(&b, P("/c"));
    assert_int_equal(bth_router_match(r, &b.in), 0);
    build_req(&b, P("/zzz"));
    assert_int_equal(bth_router_match(r, &b.in), 3);
    bth_router_destroy(r);
    listener_free(&l);

    /* No rules at all: always the default action. */
    r = bth_router_build(&l);
    assert_non_null(r);
    build_req(&b, P("/"));
    assert_int_equal(bth_router_match(r, &b.in), -1);
    bth_router_destroy(r);
}

/* An all-empty input (no Host, no head, no address) is valid and only takes rules whose
 * conditions accept empty values. */
static void test_empty_input(void **state)
{
    struct fixture f;
    /* clang-format off */
    load(&f, RULE(1, "{host: [\"?*\"]}")
             RULE(2, "{headers: {x: [\"*\"]}}")
             RULE(3, "{source_ip: [\"0.0.0.0/0\"]}")
             RULE(4, "{query: {\"*\": [\"*\"]}}")
             RULE(5, "{host: [\"*\"], path: [\"*\"]}"));
    /* clang-format on */
    struct bth_route_input in;
    memset(&in, 0, sizeof(in));
    int i = bth_router_match(f.r, &in);
    assert_true(i >= 0);
    assert_int_equal(f.cfg->listeners[0].rules[i].priority, 5);
    unload(&f);
}

/* Literals longer than the index keeps (128 bytes) still match exactly. */
static void test_long_keys(void **state)
{
    char longhost[300], longpath[400], pat[420];
    memset(longhost, 'h', 250);
    strcpy(longhost + 250, ".example.com");
    longpath[0] = '/';
    memset(longpath + 1, 'p', 300);
    longpath[301] = '\0';

    struct bth_cfg_listener l = {0};
    l.nrules = 6;
    l.rules = calloc(l.nrules, sizeof(*l.rules));
    for (size_t i = 0; i < l.nrules; i++)
        l.rules[i].priority = (unsigned)i + 1;
    sl_add(&l.rules[0].host, longhost);              /* exact, 262 bytes */
    snprintf(pat, sizeof(pat), "*%s", longhost + 1); /* suffix longer than a key */
    sl_add(&l.rules[1].host, pat);
    sl_add(&l.rules[2].path, longpath);              /* exact, 301 bytes */
    snprintf(pat, sizeof(pat), "%.200s*", longpath); /* prefix longer than a key */
    sl_add(&l.rules[3].path, pat);
    sl_add(&l.rules[4].host, "*");
    sl_add(&l.rules[4].path, "/short");
    sl_add(&l.rules[5].host, longhost);
    sl_add(&l.rules[5].path, "/x*");
    struct bth_router *r = bth_router_build(&l);
    assert_non_null(r);
    struct built_req b;

    build_req(&b, H(longhost));
    assert_int_equal(bth_router_match(r, &b.in), 0);
    longhost[0] = 'X'; /* same length, first byte differs: only the suffix rule */
    build_req(&b, H(longhost));
    assert_int_equal(bth_router_match(r, &b.in), 1);
    longhost[0] = 'h';
    longhost[200] = 'Q'; /* differs inside the part past the key: neither */
    build_req(&b, H(longhost));
    assert_int_equal(bth_router_match(r, &b.in), -1);
    longhost[200] = 'h';

    build_req(&b, P(longpath));
    assert_int_equal(bth_router_match(r, &b.in), 2);
    longpath[300] = 'q';
    build_req(&b, P(longpath));
    assert_int_equal(bth_router_match(r, &b.in), 3);
    longpath[150] = 'q';
    build_req(&b, P(longpath));
    assert_int_equal(bth_router_match(r, &b.in), -1);

    build_req(&b, HP("any", "/short"));
    assert_int_equal(bth_router_match(r, &b.in), 4);
    build_req(&b, HP(longhost, "/xyz"));
    assert_int_equal(bth_router_match(r, &b.in), 0); /* rule 0 (host only) comes first */
    bth_router_destroy(r);
    listener_free(&l);
}

/* ------------------------------------------------------------------------------------ */
/* Random rule sets against a naive linear matcher */

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* The textbook recursive glob; no shortcuts shared with the router. */
static bool ref_glob(const char *p, const char *s)
{
    if (*p == '\0')
        return *s == '\0';
    if (*p == '*')
        return ref_glob(p + 1, s) || (*s != '\0' && ref_glob(p, s + 1));
    if (*s == '\0')
        return false;
    return (*p == '?' || *p == *s) && ref_glob(p + 1, s + 1);
}

static void ref_lower(char *d, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i];
    d[n] = '\0';
}

static bool ref_glob_ci(const char *p, const char *s, size_t n)
{
    char lp[512], ls[512];
    assert_true(strlen(p) < sizeof(lp) && n < sizeof(ls));
    ref_lower(lp, p, strlen(p));
    ref_lower(ls, s, n);
    return ref_glob(lp, ls);
}

/* Decodes %XX (invalid escapes kept; "%00" too when <keep00>) and lowercases. */
static void ref_decode2(char *d, const char *s, size_t n, bool keep00)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        char hex[3] = {0};
        if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2]) && !(keep00 && s[i + 1] == '0' && s[i + 2] == '0')) {
            hex[0] = s[i + 1];
            hex[1] = s[i + 2];
            sscanf(hex, "%x", &v);
            d[o++] = (char)v;
            i += 2;
        } else {
            d[o++] = s[i];
        }
    }
    ref_lower(d, d, o);
}

static void ref_decode(char *d, const char *s, size_t n)
{
    ref_decode2(d, s, n, false);
}

static bool ref_any(const struct bth_strlist *sl, const char *s, size_t n, bool ci)
{
    char buf[512];
    assert_true(n < sizeof(buf));
    memcpy(buf, s, n);
    buf[n] = '\0';
    for (size_t i = 0; i < sl->n; i++)
        if (ci ? ref_glob_ci(sl->v[i], buf, n) : ref_glob(sl->v[i], buf))
            return true;
    return false;
}

static bool ref_cidr(const char *cidr, const struct sockaddr *sa)
{
    char ip[64];
    const char *slash = strchr(cidr, '/');
    unsigned bits = (unsigned)atoi(slash + 1);
    unsigned char net[16], addr[16];
    snprintf(ip, sizeof(ip), "%.*s", (int)(slash - cidr), cidr);
    int fam = inet_pton(AF_INET, ip, net) == 1 ? AF_INET : AF_INET6;
    if (fam == AF_INET6)
        inet_pton(AF_INET6, ip, net);
    if (sa->sa_family == AF_INET) {
        if (fam != AF_INET)
            return false;
        memcpy(addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else {
        const unsigned char *a6 =
            (const unsigned char *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        static const unsigned char pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (fam == AF_INET && memcmp(a6, pre, 12) != 0)
            return false;
        memcpy(addr, fam == AF_INET ? a6 + 12 : a6, fam == AF_INET ? 4 : 16);
    }
    for (unsigned b = 0; b < bits; b++)
        if (((net[b / 8] >> (7 - b % 8)) & 1) != ((addr[b / 8] >> (7 - b % 8)) & 1))
            return false;
    return true;
}

static bool ref_rule(const struct bth_cfg_rule *r, const struct bth_route_input *in)
{
    if (r->host.n > 0 && !ref_any(&r->host, in->host, in->host_len, true))
        return false;
    if (r->path.n > 0 && !ref_any(&r->path, in->path, in->path_len, false))
        return false;
    if (r->method.n > 0) {
        bool ok = false;
        for (size_t i = 0; i < r->method.n; i++)
            ok |= strlen(r->method.v[i]) == in->method_len &&
                  memcmp(r->method.v[i], in->method, in->method_len) == 0;
        if (!ok)
            return false;
    }
    if (r->source_ip.n > 0) {
        bool ok = false;
        for (size_t i = 0; i < r->source_ip.n && in->src != NULL; i++)
            ok |= ref_cidr(r->source_ip.v[i], in->src);
        if (!ok)
            return false;
    }
    for (size_t k = 0; k < r->nheaders; k++) {
        bool ok = false;
        const struct bth_http_head *h = in->head;
        for (unsigned i = 0; i < h->nhdrs; i++) {
            const char *name = bth_span_ptr(h, h->hdrs[i].name);
            if (h->hdrs[i].name.len != strlen(r->headers[k].key) ||
                strncasecmp(name, r->headers[k].key, h->hdrs[i].name.len) != 0)
                continue;
            const char *v = bth_span_ptr(h, h->hdrs[i].value);
            size_t vn = h->hdrs[i].value.len;
            while (vn > 0 && (*v == ' ' || *v == '\t'))
                v++, vn--;
            while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
                vn--;
            ok |= ref_any(&r->headers[k].values, v, vn, true);
        }
        if (!ok)
            return false;
    }
    for (size_t k = 0; k < r->nquery; k++) {
        bool ok = false;
        char qs[512], *save = NULL;
        snprintf(qs, sizeof(qs), "%.*s", (int)in->query_len, in->query);
        for (char *pair = strtok_r(qs, "&", &save); pair != NULL;
             pair = strtok_r(NULL, "&", &save)) {
            char key[512], val[512];
            char *eq = strchr(pair, '=');
            size_t kn = eq != NULL ? (size_t)(eq - pair) : strlen(pair);
            ref_decode(key, pair, kn);
            ref_decode(val, eq != NULL ? eq + 1 : "", eq != NULL ? strlen(eq + 1) : 0);
            char kp[512];
            ref_decode2(kp, r->query[k].key, strlen(r->query[k].key), true);
            if (strcmp(kp, "*") != 0 && strcmp(kp, "") != 0 && !ref_glob(kp, key))
                continue;
            for (size_t i = 0; i < r->query[k].values.n; i++) {
                char vp[512];
                ref_decode2(vp, r->query[k].values.v[i], strlen(r->query[k].values.v[i]), true);
                ok |= ref_glob(vp, val);
            }
        }
        if (!ok)
            return false;
    }
    return true;
}

static int ref_match(const struct bth_cfg_listener *l, const struct bth_route_input *in)
{
    int best = -1;
    for (size_t i = 0; i < l->nrules; i++)
        if ((best < 0 || l->rules[i].priority < l->rules[best].priority) &&
            ref_rule(&l->rules[i], in))
            best = (int)i;
    return best;
}

static char longhost[200], longhost2[200], longpath[300];

static const char *const hosts[] = {
    "api.example.com",
    "api-1.example.com",
    "API-2.Example.com",
    "www.example.org",
    "a.t1.example.org",
    "b.a.t1.example.org",
    "example.com",
    "x",
    "",
    "t1.example.org",
    "api-10.example.com",
    "ab.test",
    "aXb.test",
    longhost,
    longhost2,
};
static const char *const paths[] = {
    "/",       "/api",     "/api/",  "/api/v1/users",   "/API/v1",
    "/svc1/x", "/svc10/y", "/a/b/c", "/static/img.png", "/a b",
    "/svc1",   "/a/b",     longpath, "/img/x.PNG",
};
static const char *const methods[] = {"GET", "POST", "get", "PUT"};
static const char *const hnames[] = {"x-env", "X-Env", "x-other"};
static const char *const hvals[] = {"canary", "Canary-1", "prod", "", " beta "};
static const char *const qparts[] = {
    "version=2", "Version=%32", "a=b", "flag", "x=%zz", "k%20ey=v", "A=B", "version=3",
};
static const char *const srcs[] = {
    "10.0.0.1", "10.1.2.3", "192.168.1.1", "::1", "fd00::5", "::ffff:10.0.0.7", NULL,
};
static const char *const cidrs[] = {
    "10.0.0.0/8", "10.0.0.1/32",    "0.0.0.0/0",   "::/0",          "fd00::/8",
    "::1/128",    "192.168.0.0/16", "10.0.0.0/31", "::ffff:0:0/96", "10.128.0.0/9",
};
static const char *const hpats[] = {"canary*", "prod", "*", "?rod", "CANARY", "beta", ""};
static const char *const qkeys[] = {"version", "*", "k ey",   "flag",     "A",
                                    "v?rsion", "x", "k%20ey", "%76ersion"};
static const char *const qvals[] = {"2", "*", "b", "", "v", "%zz", "3", "%32", "%00"};

/* A pattern derived from <s>, so that it matches some inputs and narrowly misses others. */
static void mutate(char *out, size_t cap, const char *s)
{
    size_t n = strlen(s), a = n ? rnd((uint32_t)n + 1) : 0,
           b = a + (n > a ? rnd((uint32_t)(n - a) + 1) : 0);
    switch (rnd(9)) {
    case 0:
    case 1:
        snprintf(out, cap, "%s", s);
        break;
    case 2:
        snprintf(out, cap, "%.*s*", (int)a, s);
        break;
    case 3:
        snprintf(out, cap, "*%s", s + a);
        break;
    case 4:
        snprintf(out, cap, "%.*s?%s", (int)a, s, a < n ? s + a + 1 : "");
        break;
    case 5:
        snprintf(out, cap, "%.*s*%s", (int)a, s, s + b);
        break;
    case 6:
        snprintf(out, cap, "*");
        break;
    case 7:
        snprintf(out, cap, "*%.*s*", (int)(b - a), s + a);
        break;
    default:
        snprintf(out, cap, "%.*s?*%s", (int)a, s, s + b);
        break;
    }
    for (char *c = out; *c != '\0'; c++)
        if (rnd(8) == 0 && *c >= 'a' && *c <= 'z')
            *c = (char)(*c - 32);
}

#define PICK(arr) (arr)[rnd(ARRAY_SIZE(arr))]

static void random_listener(struct bth_cfg_listener *l, size_t nrules)
{
    char buf[512];
    memset(l, 0, sizeof(*l));
    l->nrules = nrules;
    l->rules = calloc(nrules, sizeof(*l->rules));
    /* unique priorities in a random order: the array is not sorted */
    for (size_t i = 0; i < nrules; i++)
        l->rules[i].priority = (unsigned)i * 3 + 1;
    for (size_t i = nrules; i > 1; i--) {
        size_t j = rnd((uint32_t)i);
        unsigned t = l->rules[i - 1].priority;
        l->rules[i - 1].priority = l->rules[j].priority;
        l->rules[j].priority = t;
    }
    for (size_t i = 0; i < nrules; i++) {
        struct bth_cfg_rule *r = &l->rules[i];
        bool any = false;
        while (!any) {
            if (rnd(10) < 7) {
                for (uint32_t k = rnd(3) + 1; k > 0; k--) {
                    mutate(buf, sizeof(buf), PICK(hosts));
                    sl_add(&r->host, buf);
                }
                any = true;
            }
            if (rnd(10) < 7) {
                for (uint32_t k = rnd(3) + 1; k > 0; k--) {
                    mutate(buf, sizeof(buf), PICK(paths));
                    sl_add(&r->path, buf);
                }
                any = true;
            }
            if (rnd(10) < 2) {
                for (uint32_t k = rnd(2) + 1; k > 0; k--)
                    sl_add(&r->method, PICK(methods));
                any = true;
            }
            if (rnd(10) < 2) {
                struct bth_cfg_kv_cond *kv = kv_add(&r->headers, &r->nheaders, PICK(hnames));
                for (uint32_t k = rnd(2) + 1; k > 0; k--)
                    sl_add(&kv->values, PICK(hpats));
                any = true;
            }
            if (rnd(10) < 2) {
                struct bth_cfg_kv_cond *kv = kv_add(&r->query, &r->nquery, PICK(qkeys));
                for (uint32_t k = rnd(2) + 1; k > 0; k--)
                    sl_add(&kv->values, PICK(qvals));
                any = true;
            }
            if (rnd(10) < 1) {
                for (uint32_t k = rnd(2) + 1; k > 0; k--)
                    sl_add(&r->source_ip, PICK(cidrs));
                any = true;
            }
        }
    }
}

static void random_request(struct req *q, char *hbuf, char *hdrs, char *query, char *host)
{
    strcpy(host, PICK(hosts));
    for (char *c = host; *c != '\0'; c++)
        if (rnd(6) == 0 && *c >= 'a' && *c <= 'z')
            *c = (char)(*c - 32);
    q->host = host;
    q->path = PICK(paths);
    q->method = PICK(methods);
    q->src = PICK(srcs);
    hdrs[0] = '\0';
    for (uint32_t k = rnd(4); k > 0; k--) {
        snprintf(hbuf, 128, "%s:%s\n", PICK(hnames), PICK(hvals));
        strcat(hdrs, hbuf);
    }
    q->hdrs = hdrs;
    query[0] = '\0';
    for (uint32_t k = rnd(4); k > 0; k--) {
        if (query[0] != '\0')
            strcat(query, "&");
        strcat(query, PICK(qparts));
    }
    q->query = query;
}

static void test_random_vs_reference(void **state)
{
    memset(longhost, 'h', 150);
    strcpy(longhost + 150, ".example.com");
    memcpy(longhost2, longhost, sizeof(longhost));
    longhost2[10] = 'z';
    longpath[0] = '/';
    memset(longpath + 1, 'p', 200);
    longpath[201] = '\0';
    static const size_t sizes[] = {1, 5, 20, 60, 200, 1000};
    rng_state = 0x9e3779b97f4a7c15ull;
    size_t hits = 0, total = 0;
    for (size_t round = 0; round < 24; round++) {
        struct bth_cfg_listener l;
        random_listener(&l, sizes[round % ARRAY_SIZE(sizes)]);
        struct bth_router *r = bth_router_build(&l);
        assert_non_null(r);
        for (int i = 0; i < 2000; i++) {
            struct req q;
            char hbuf[128], hdrs[1024], query[256], host[256];
            static struct built_req b;
            random_request(&q, hbuf, hdrs, query, host);
            build_req(&b, &q);
            int got = bth_router_match(r, &b.in), want = ref_match(&l, &b.in);
            if (got != want)
                fail_msg("round %zu req %d: host \"%s\" path \"%s\" query \"%s\" method %s: "
                         "got %d, want %d",
                         round, i, q.host, q.path, q.query, q.method, got, want);
            hits += got >= 0;
            total++;
        }
        bth_router_destroy(r);
        listener_free(&l);
    }
    /* The generator must exercise both outcomes. */
    assert_true(hits > total / 5 && hits < total - total / 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_wildcards),
        cmocka_unit_test(test_path_wildcards),
        cmocka_unit_test(test_method),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_source_ip),
        cmocka_unit_test(test_and_or),
        cmocka_unit_test(test_priority_yaml),
        cmocka_unit_test(test_priority_unsorted_array),
        cmocka_unit_test(test_empty_input),
        cmocka_unit_test(test_long_keys),
        cmocka_unit_test(test_random_vs_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
