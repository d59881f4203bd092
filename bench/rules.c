/* SPDX-License-Identifier: MIT */
/* Rule-matching micro-benchmark: ns per bth_router_match for listeners of 10, 100, 1000
 * and 10000 rules, and the 10000/10 ratio (the router's goal: at most 4x).
 *
 * Build and run (bench/rules.sh does both), from the repository root after
 * `cmake --build build`:
 *   gcc -O2 -std=c11 -D_GNU_SOURCE -Isrc -I/usr/share/include/llhttp bench/rules.c \
 *       build/libberth_core.a build/libberth_llhttp.a $(pkg-config --libs libevent_core \
 *       libevent_extra openssl yaml-0.1 jansson) -ljemalloc -lpthread -lm -o build/bench_rules
 *   build/bench_rules
 *
 * The rule mix, by rule number modulo 20: 12 "api-N.example.com" + "/svcN/x*" (exact host
 * and path prefix), 3 "*.tenantN.example.org" (wildcard host), 2 "/static/N/x*" (path
 * only), 1 exact host + header "x-canary: true*", 1 exact path + query + method, 1 general
 * glob ("app-?N.example.net" + "/v?/N/x*"). Requests: 90% hit a rule drawn uniformly (every
 * answer is checked against the rule the request was made for), 10% miss to the default.
 * Each size runs 5 timed passes over 8192 prepared requests; the median pass is printed.
 * A second series has many paths under each of many hosts (100 x 100 at 10000 rules), the
 * shape that defeats an index on host or path alone. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "config.h"
#include "http_head.h"
#include "router.h"

#define NREQ      8192
#define PASSES    5
#define MIN_CALLS 2000000u

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void add(struct bth_strlist *sl, const char *fmt, unsigned n)
{
    char buf[128];
    snprintf(buf, sizeof(buf), fmt, n);
    sl->v = realloc(sl->v, (sl->n + 1) * sizeof(*sl->v));
    sl->v[sl->n++] = strdup(buf);
}

static struct bth_cfg_kv_cond *kv(const char *key, const char *v1, const char *v2)
{
    struct bth_cfg_kv_cond *c = calloc(1, sizeof(*c));
    c->key = strdup(key);
    add(&c->values, v1, 0);
    if (v2 != NULL)
        add(&c->values, v2, 0);
    return c;
}

static void make_listener(struct bth_cfg_listener *l, unsigned n, int cross)
{
    memset(l, 0, sizeof(*l));
    l->nrules = n;
    l->rules = calloc(n, sizeof(*l->rules));
    for (unsigned i = 0; i < n; i++) {
        struct bth_cfg_rule *r = &l->rules[i];
        r->priority = i + 1;
        unsigned k = i % 20;
        if (cross) {
            add(&r->host, "tenant-%u.example.com", i / 100);
            add(&r->path, "/svc%u/*", i % 100);
        } else if (k < 12) {
            add(&r->host, "api-%u.example.com", i);
            add(&r->path, "/svc%u/*", i);
        } else if (k < 15) {
            add(&r->host, "*.tenant%u.example.org", i);
        } else if (k < 17) {
            add(&r->path, "/static/%u/*", i);
        } else if (k == 17) {
            add(&r->host, "hdr-%u.example.com", i);
            r->headers = kv("x-canary", "true*", NULL);
            r->nheaders = 1;
        } else if (k == 18) {
            add(&r->path, "/q/%u", i);
            add(&r->method, "GET", 0);
            add(&r->method, "POST", 0);
            r->query = kv("version", "2", "3");
            r->nquery = 1;
        } else {
            add(&r->host, "app-?%u.example.net", i);
            add(&r->path, "/v?/%u/*", i);
        }
    }
}

static void free_strlist(struct bth_strlist *sl)
{
    for (size_t i = 0; i < sl->n; i++)
        free(sl->v[i]);
    free(sl->v);
}

static void free_listener(struct bth_cfg_listener *l)
{
    for (size_t i = 0; i < l->nrules; i++) {
        struct bth_cfg_rule *r = &l->rules[i];
        free_strlist(&r->host);
        free_strlist(&r->path);
        free_strlist(&r->method);
        for (size_t j = 0; j < r->nheaders; j++) {
            free(r->headers[j].key);
            free_strlist(&r->headers[j].values);
        }
        free(r->headers);
        for (size_t j = 0; j < r->nquery; j++) {
            free(r->query[j].key);
            free_strlist(&r->query[j].values);
        }
        free(r->query);
    }
    free(l->rules);
}

/* Two request heads shared by all requests: typical browser headers, with and without the
 * canary header. */
static struct bth_http_head heads[2];
static char head_bytes[2][512];

static void make_head(int canary)
{
    static const char *const lines[] = {
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64)",
        "Accept: text/html,application/json",
        "Accept-Encoding: gzip, deflate, br",
        "Accept-Language: en-US,en;q=0.9",
        "Cookie: session=abcdef0123456789",
        "X-Request-Id: 0f8fad5b-d9cb-469f-a165-70867728950e",
        "x-canary: true-v2",
    };
    struct bth_http_head *h = &heads[canary];
    bth_http_head_reset(h);
    h->base = head_bytes[canary];
    size_t off = 0, n = sizeof(lines) / sizeof(lines[0]) - (canary ? 0 : 1);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(lines[i]);
        const char *colon = strchr(lines[i], ':');
        memcpy(head_bytes[canary] + off, lines[i], len);
        struct bth_http_hdr *hd = &h->hdrs[h->nhdrs++];
        hd->name = (struct bth_span){(uint32_t)off, (uint32_t)(colon - lines[i])};
        hd->value = (struct bth_span){(uint32_t)(off + (size_t)(colon - lines[i]) + 2),
                                      (uint32_t)(len - (size_t)(colon - lines[i]) - 2)};
        off += len;
    }
}

struct breq {
    struct bth_route_input in;
    int want;
    char host[48], path[48], query[16];
};

static struct sockaddr_in client;

static void make_request(struct breq *q, unsigned nrules, int cross)
{
    memset(q, 0, sizeof(*q));
    const char *method = "GET";
    int canary = 0;
    if (rnd(10) == 0) {
        unsigned k = rnd(100000);
        snprintf(q->host, sizeof(q->host), "nohost-%u.example.net", k);
        snprintf(q->path, sizeof(q->path), "/nothing/%u", k);
        q->want = -1;
    } else {
        unsigned i = rnd(nrules), k = i % 20;
        q->want = (int)i;
        snprintf(q->host, sizeof(q->host), "www.example.com");
        snprintf(q->path, sizeof(q->path), "/");
        if (cross) {
            snprintf(q->host, sizeof(q->host), "tenant-%u.example.com", i / 100);
            snprintf(q->path, sizeof(q->path), "/svc%u/items/42", i % 100);
        } else if (k < 12) {
            snprintf(q->host, sizeof(q->host), "api-%u.example.com", i);
            snprintf(q->path, sizeof(q->path), "/svc%u/items/42", i);
        } else if (k < 15) {
            snprintf(q->host, sizeof(q->host), "shop.tenant%u.example.org", i);
        } else if (k < 17) {
            snprintf(q->path, sizeof(q->path), "/static/%u/app.js", i);
        } else if (k == 17) {
            snprintf(q->host, sizeof(q->host), "hdr-%u.example.com", i);
            canary = 1;
        } else if (k == 18) {
            snprintf(q->path, sizeof(q->path), "/q/%u", i);
            snprintf(q->query, sizeof(q->query), "x=1&version=3");
            method = "POST";
        } else {
            snprintf(q->host, sizeof(q->host), "app-x%u.example.net", i);
            snprintf(q->path, sizeof(q->path), "/v1/%u/z", i);
        }
    }
    q->in.host = q->host;
    q->in.host_len = strlen(q->host);
    q->in.path = q->path;
    q->in.path_len = strlen(q->path);
    q->in.query = q->query;
    q->in.query_len = strlen(q->query);
    q->in.method = method;
    q->in.method_len = strlen(method);
    q->in.head = &heads[canary];
    q->in.src = (const struct sockaddr *)&client;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Returns the median ns per match for a listener of <n> rules. */
static double run(unsigned n, int cross)
{
    static struct breq reqs[NREQ];
    struct bth_cfg_listener l;
    make_listener(&l, n, cross);
    double t0 = now_ns();
    struct bth_router *r = bth_router_build(&l);
    double build_ms = (now_ns() - t0) / 1e6;
    if (r == NULL) {
        fprintf(stderr, "bth_router_build failed\n");
        exit(1);
    }
    unsigned hits = 0;
    for (unsigned i = 0; i < NREQ; i++) {
        make_request(&reqs[i], n, cross);
        int got = bth_router_match(r, &reqs[i].in);
        if (got != reqs[i].want) {
            fprintf(stderr, "wrong answer: host %s path %s: got %d, want %d\n", reqs[i].host,
                    reqs[i].path, got, reqs[i].want);
            exit(1);
        }
        hits += got >= 0;
    }
    unsigned rounds = MIN_CALLS / NREQ + 1;
    double pass[PASSES];
    volatile int sink = 0;
    for (int p = 0; p < PASSES; p++) {
        t0 = now_ns();
        for (unsigned k = 0; k < rounds; k++)
            for (unsigned i = 0; i < NREQ; i++)
                sink += bth_router_match(r, &reqs[i].in);
        pass[p] = (now_ns() - t0) / ((double)rounds * NREQ);
    }
    (void)sink;
    qsort(pass, PASSES, sizeof(pass[0]), cmp_double);
    printf("%6u rules  %7.1f ns/match  (min %.1f, max %.1f)  hits %4.1f%%  build %.2f ms\n", n,
           pass[PASSES / 2], pass[0], pass[PASSES - 1], 100.0 * hits / NREQ, build_ms);
    bth_router_destroy(r);
    free_listener(&l);
    return pass[PASSES / 2];
}

/* The per-request helpers the session calls before matching, for scale. */
static void run_helpers(void)
{
    static const char target[] = "/svc123/items/42%20x?version=2&x=1";
    static const char hostport[] = "api-123.example.com:8080";
    char out[256];
    size_t pl, ql, hl;
    const char *q;
    unsigned calls = MIN_CALLS;
    volatile size_t sink = 0;
    double t0 = now_ns();
    for (unsigned i = 0; i < calls; i++) {
        bth_router_split_target(target, sizeof(target) - 1, out, sizeof(out), &pl, &q, &ql, NULL,
                                NULL);
        bth_router_host_without_port(hostport, sizeof(hostport) - 1, &hl);
        sink += pl + hl;
    }
    (void)sink;
    printf("split_target + host_without_port: %.1f ns\n", (now_ns() - t0) / calls);
}

int main(void)
{
    static const unsigned sizes[] = {10, 100, 1000, 10000};
    double ns[4];
    make_head(0);
    make_head(1);
    client.sin_family = AF_INET;
    client.sin_addr.s_addr = htonl(0x0a000001);
    printf("realistic mix:\n");
    for (int i = 0; i < 4; i++)
        ns[i] = run(sizes[i], 0);
    printf("ratio 10000/10: %.2f\n", ns[3] / ns[0]);
    printf("hosts x paths (rule i: host tenant-<i/100>, path /svc<i%%100>/x*):\n");
    for (int i = 0; i < 4; i++)
        ns[i] = run(sizes[i], 1);
    printf("ratio 10000/10: %.2f\n", ns[3] / ns[0]);
    run_helpers();
    return 0;
}
