/* SPDX-License-Identifier: MIT */
/* Flow hashing: SipHash against the reference vectors, what the 5-tuple and source hashes
 * depend on, and the Maglev table's balance, disruption on adding/removing a target,
 * agreement between instances, and failover when a target stops taking traffic. The
 * disruption figures are printed so they can be quoted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "config.h"
#include "flow_hash.h"
#include "mem.h"
#include "target.h"

#define NFLOWS 100000

static uint64_t flow_hashes[NFLOWS];

static uint64_t rng_state = 0x1234567887654321ULL;

/* splitmix64: a deterministic generator, so the test measures the same flows every run */
static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static struct sockaddr_in sin4(uint32_t ip, uint16_t port)
{
    struct sockaddr_in s;
    memset(&s, 0, sizeof(s));
    s.sin_family = AF_INET;
    s.sin_addr.s_addr = htonl(ip);
    s.sin_port = htons(port);
    return s;
}

static int setup(void **state)
{
    struct sockaddr_in dst = sin4(0xC000020A, 443); /* 192.0.2.10:443, the listener */
    for (size_t i = 0; i < NFLOWS; i++) {
        uint64_t r = rng();
        /* clients anywhere in 10.0.0.0/8, ephemeral ports */
        struct sockaddr_in src =
            sin4(0x0A000000 | (uint32_t)(r & 0xFFFFFF), (uint16_t)(32768 + ((r >> 24) % 28232)));
        flow_hashes[i] =
            bth_flow_hash_5tuple((struct sockaddr *)&src, (struct sockaddr *)&dst, IPPROTO_TCP);
    }
    return 0;
}

static struct bth_target *mk_target(const char *addr, unsigned weight)
{
    struct bth_addr a;
    assert_int_equal(bth_parse_addr(addr, &a), 0);
    struct bth_target *t = bth_target_create(&a, weight, 1, false);
    assert_non_null(t);
    return t;
}

/* n targets 10.0.1.1:8080, 10.0.1.2:8080, ... */
static void mk_targets(struct bth_target **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        snprintf(buf, sizeof(buf), "10.0.1.%zu:8080", i + 1);
        v[i] = mk_target(buf, 1);
    }
}

static void unref_all(struct bth_target **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        bth_target_unref(v[i]);
}

static struct bth_target *pick(const struct bth_flow_table *t, struct bth_target **v, size_t n,
                               uint64_t h)
{
    return bth_flow_table_pick(t, (struct bth_target *const *)v, n, h);
}

static struct bth_flow_table *build(struct bth_target **v, size_t n)
{
    struct bth_flow_table *t = bth_flow_table_build((struct bth_target *const *)v, n);
    assert_non_null(t);
    return t;
}

static void test_siphash_vectors(void **state)
{
    uint8_t key[16], zero[16] = {0}, msg[64];
    for (unsigned i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (unsigned i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    /* SipHash-2-4: vectors from the paper's appendix / the reference vectors.h
     * (key 00..0f, message 00..len-1) */
    assert_true(bth_siphash(key, msg, 0, 2, 4) == 0x726fdb47dd0e0e31ULL);
    assert_true(bth_siphash(key, msg, 8, 2, 4) == 0x93f5f5799a932462ULL);
    assert_true(bth_siphash(key, msg, 15, 2, 4) == 0xa129ca6149be45e5ULL);
    assert_true(bth_siphash(key, msg, 63, 2, 4) == 0x958a324ceb064572ULL);
    /* SipHash-1-3 from the reference implementation (zero key, message 00..len-1) */
    assert_true(bth_siphash(zero, msg, 0, 1, 3) == 0xd1fba762150c532cULL);
    assert_true(bth_siphash(zero, msg, 1, 1, 3) == 0x68a914128e01e473ULL);
    assert_true(bth_siphash(zero, msg, 8, 1, 3) == 0xead411e67ebe2eeaULL);
    assert_true(bth_siphash(zero, msg, 15, 1, 3) == 0xf30eb725bb91c9eaULL);
}

static void test_5tuple_inputs(void **state)
{
    struct sockaddr_in s = sin4(0x0A000001, 40000), d = sin4(0xC000020A, 443);
    uint64_t base = bth_flow_hash_5tuple((struct sockaddr *)&s, (struct sockaddr *)&d, IPPROTO_TCP);
    /* stable across calls, and every field matters */
    assert_true(base ==
                bth_flow_hash_5tuple((struct sockaddr *)&s, (struct sockaddr *)&d, IPPROTO_TCP));
    assert_true(base !=
                bth_flow_hash_5tuple((struct sockaddr *)&s, (struct sockaddr *)&d, IPPROTO_UDP));
    struct sockaddr_in s2 = sin4(0x0A000001, 40001), s3 = sin4(0x0A000002, 40000);
    struct sockaddr_in d2 = sin4(0xC000020A, 444), d3 = sin4(0xC000020B, 443);
    assert_true(base !=
                bth_flow_hash_5tuple((struct sockaddr *)&s2, (struct sockaddr *)&d, IPPROTO_TCP));
    assert_true(base !=
                bth_flow_hash_5tuple((struct sockaddr *)&s3, (struct sockaddr *)&d, IPPROTO_TCP));
    assert_true(base !=
                bth_flow_hash_5tuple((struct sockaddr *)&s, (struct sockaddr *)&d2, IPPROTO_TCP));
    assert_true(base !=
                bth_flow_hash_5tuple((struct sockaddr *)&s, (struct sockaddr *)&d3, IPPROTO_TCP));
    /* source and destination are not interchangeable */
    assert_true(base !=
                bth_flow_hash_5tuple((struct sockaddr *)&d, (struct sockaddr *)&s, IPPROTO_TCP));

    /* an IPv4 flow seen on a dual-stack socket (as ::ffff:a.b.c.d) hashes the same */
    struct sockaddr_in6 s6, d6;
    memset(&s6, 0, sizeof(s6));
    memset(&d6, 0, sizeof(d6));
    s6.sin6_family = d6.sin6_family = AF_INET6;
    s6.sin6_port = htons(40000);
    d6.sin6_port = htons(443);
    assert_int_equal(inet_pton(AF_INET6, "::ffff:10.0.0.1", &s6.sin6_addr), 1);
    assert_int_equal(inet_pton(AF_INET6, "::ffff:192.0.2.10", &d6.sin6_addr), 1);
    assert_true(base ==
                bth_flow_hash_5tuple((struct sockaddr *)&s6, (struct sockaddr *)&d6, IPPROTO_TCP));
    assert_true(bth_flow_hash_source((struct sockaddr *)&s) ==
                bth_flow_hash_source((struct sockaddr *)&s6));
}

static void test_source_ignores_port(void **state)
{
    struct sockaddr_in a = sin4(0x0A000001, 40000), b = sin4(0x0A000001, 50123);
    struct sockaddr_in c = sin4(0x0A000002, 40000);
    assert_true(bth_flow_hash_source((struct sockaddr *)&a) ==
                bth_flow_hash_source((struct sockaddr *)&b));
    assert_true(bth_flow_hash_source((struct sockaddr *)&a) !=
                bth_flow_hash_source((struct sockaddr *)&c));
    /* and so one client's connections all land on one target */
    struct bth_target *v[10];
    mk_targets(v, 10);
    struct bth_flow_table *t = build(v, 10);
    struct bth_target *first = pick(t, v, 10, bth_flow_hash_source((struct sockaddr *)&a));
    for (uint16_t port = 1024; port < 1124; port++) {
        struct sockaddr_in p = sin4(0x0A000001, port);
        assert_ptr_equal(pick(t, v, 10, bth_flow_hash_source((struct sockaddr *)&p)), first);
    }
    bth_flow_table_destroy(t);
    unref_all(v, 10);
}

static size_t index_of(struct bth_target **v, size_t n, const struct bth_target *x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return i;
    fail_msg("picked target not in the array");
    return 0;
}

static void test_distribution(void **state)
{
    struct bth_target *v[10];
    mk_targets(v, 10);
    struct bth_flow_table *t = build(v, 10);
    assert_int_equal(bth_flow_table_size(t), 10007);
    size_t count[10] = {0};
    for (size_t i = 0; i < NFLOWS; i++)
        count[index_of(v, 10, pick(t, v, 10, flow_hashes[i]))]++;
    size_t lo = SIZE_MAX, hi = 0;
    for (size_t i = 0; i < 10; i++) {
        assert_in_range(count[i], NFLOWS / 10 * 9 / 10, NFLOWS / 10 * 11 / 10);
        lo = count[i] < lo ? count[i] : lo;
        hi = count[i] > hi ? count[i] : hi;
    }
    print_message("distribution over 10 targets, %d flows: min %zu max %zu (even: %d)\n", NFLOWS,
                  lo, hi, NFLOWS / 10);
    bth_flow_table_destroy(t);
    unref_all(v, 10);
}

static void test_add_target(void **state)
{
    struct bth_target *v[11];
    mk_targets(v, 11);
    struct bth_flow_table *t10 = build(v, 10), *t11 = build(v, 11);
    size_t moved = 0, moved_elsewhere = 0, on_new = 0;
    for (size_t i = 0; i < NFLOWS; i++) {
        struct bth_target *a = pick(t10, v, 10, flow_hashes[i]);
        struct bth_target *b = pick(t11, v, 11, flow_hashes[i]);
        on_new += b == v[10];
        if (a != b) {
            moved++;
            /* a moved flow should be one the new target takes over */
            moved_elsewhere += b != v[10];
        }
    }
    print_message("add 11th target: %.2f%% of flows moved (ideal %.2f%%), %.2f%% between old "
                  "targets, new target has %.2f%%\n",
                  100.0 * moved / NFLOWS, 100.0 / 11, 100.0 * moved_elsewhere / NFLOWS,
                  100.0 * on_new / NFLOWS);
    assert_in_range(moved, NFLOWS * 5 / 100, NFLOWS * 15 / 100);
    assert_true(moved_elsewhere < NFLOWS * 3 / 100);
    bth_flow_table_destroy(t10);
    bth_flow_table_destroy(t11);
    unref_all(v, 11);
}

static void test_remove_target(void **state)
{
    struct bth_target *v[10], *w[9];
    mk_targets(v, 10);
    /* remove 10.0.1.4 from the middle: the array shifts, which must not matter */
    for (size_t i = 0, k = 0; i < 10; i++)
        if (i != 3)
            w[k++] = v[i];
    struct bth_flow_table *t10 = build(v, 10), *t9 = build(w, 9);
    size_t orphaned = 0, extra = 0;
    for (size_t i = 0; i < NFLOWS; i++) {
        struct bth_target *a = pick(t10, v, 10, flow_hashes[i]);
        struct bth_target *b = pick(t9, w, 9, flow_hashes[i]);
        assert_ptr_not_equal(b, v[3]);
        if (a == v[3])
            orphaned++;
        else if (a != b)
            extra++;
    }
    print_message("remove 1 of 10 targets: its %.2f%% of flows moved, plus %.2f%% of others\n",
                  100.0 * orphaned / NFLOWS, 100.0 * extra / NFLOWS);
    assert_true(extra < NFLOWS * 3 / 100);
    bth_flow_table_destroy(t10);
    bth_flow_table_destroy(t9);
    unref_all(v, 10);
}

static void test_instances_agree(void **state)
{
    /* instance A registered the targets in one order, instance B in another, with other
     * objects: same addresses, so the same answers */
    struct bth_target *a[10], *b[10];
    mk_targets(a, 10);
    static const size_t perm[10] = {7, 2, 9, 0, 5, 3, 8, 1, 6, 4};
    for (size_t i = 0; i < 10; i++) {
        char buf[64];
        snprintf(buf, sizeof(buf), "10.0.1.%zu:8080", perm[i] + 1);
        b[i] = mk_target(buf, 1);
    }
    struct bth_flow_table *ta = build(a, 10), *tb = build(b, 10);
    for (size_t i = 0; i < NFLOWS; i++) {
        struct bth_target *x = pick(ta, a, 10, flow_hashes[i]);
        struct bth_target *y = pick(tb, b, 10, flow_hashes[i]);
        assert_string_equal(x->addr.text, y->addr.text);
    }
    /* and the same holds while a target is out, on both */
    atomic_store(&a[4]->state, BTH_TARGET_UNHEALTHY);
    atomic_store(&b[9]->state, BTH_TARGET_UNHEALTHY); /* also 10.0.1.5 */
    for (size_t i = 0; i < NFLOWS; i++) {
        struct bth_target *x = pick(ta, a, 10, flow_hashes[i]);
        struct bth_target *y = pick(tb, b, 10, flow_hashes[i]);
        assert_string_equal(x->addr.text, y->addr.text);
    }
    bth_flow_table_destroy(ta);
    bth_flow_table_destroy(tb);
    unref_all(a, 10);
    unref_all(b, 10);
}

static void test_unhealthy_failover(void **state)
{
    struct bth_target *v[10];
    mk_targets(v, 10);
    struct bth_flow_table *t = build(v, 10);
    static struct bth_target *before[NFLOWS];
    for (size_t i = 0; i < NFLOWS; i++)
        before[i] = pick(t, v, 10, flow_hashes[i]);

    atomic_store(&v[2]->state, BTH_TARGET_UNHEALTHY);
    size_t spread[10] = {0}, orphaned = 0;
    for (size_t i = 0; i < NFLOWS; i++) {
        struct bth_target *now = pick(t, v, 10, flow_hashes[i]);
        assert_ptr_not_equal(now, v[2]);
        if (before[i] == v[2]) {
            orphaned++;
            spread[index_of(v, 10, now)]++;
        } else {
            assert_ptr_equal(now, before[i]); /* others' flows stay put */
        }
    }
    /* the orphans spread evenly over the nine others */
    for (size_t i = 0; i < 10; i++)
        if (i != 2)
            assert_in_range(spread[i], orphaned / 9 / 2, orphaned / 9 * 3 / 2);

    /* recovery: every flow goes back to where it was */
    atomic_store(&v[2]->state, BTH_TARGET_HEALTHY);
    for (size_t i = 0; i < NFLOWS; i++)
        assert_ptr_equal(pick(t, v, 10, flow_hashes[i]), before[i]);

    /* ejection by passive checks counts as out too */
    atomic_store(&v[5]->ejected, true);
    for (size_t i = 0; i < NFLOWS; i++)
        assert_ptr_not_equal(pick(t, v, 10, flow_hashes[i]), v[5]);
    atomic_store(&v[5]->ejected, false);

    /* most of the group out: still an answer for every flow, and the survivors keep theirs */
    for (size_t i = 0; i < 8; i++)
        atomic_store(&v[i]->state, BTH_TARGET_UNHEALTHY);
    for (size_t i = 0; i < NFLOWS; i++) {
        struct bth_target *now = pick(t, v, 10, flow_hashes[i]);
        assert_true(now == v[8] || now == v[9]);
        if (before[i] == v[8] || before[i] == v[9])
            assert_ptr_equal(now, before[i]);
    }
    /* all out: nothing */
    atomic_store(&v[8]->state, BTH_TARGET_DRAINING);
    atomic_store(&v[9]->state, BTH_TARGET_INITIAL);
    for (size_t i = 0; i < 1000; i++)
        assert_null(pick(t, v, 10, flow_hashes[i]));
    bth_flow_table_destroy(t);
    unref_all(v, 10);
}

static void test_weights(void **state)
{
    struct bth_target *v[4] = {
        mk_target("10.0.2.1:80", 1),
        mk_target("10.0.2.2:80", 2),
        mk_target("10.0.2.3:80", 0), /* no slots */
        mk_target("10.0.2.4:80", 1),
    };
    struct bth_flow_table *t = build(v, 4);
    size_t count[4] = {0};
    for (size_t i = 0; i < NFLOWS; i++)
        count[index_of(v, 4, pick(t, v, 4, flow_hashes[i]))]++;
    assert_int_equal(count[2], 0);
    assert_in_range(count[1], NFLOWS / 2 * 95 / 100, NFLOWS / 2 * 105 / 100);
    assert_in_range(count[0], NFLOWS / 4 * 9 / 10, NFLOWS / 4 * 11 / 10);
    /* the weight-0 target is never a fallback either */
    atomic_store(&v[0]->state, BTH_TARGET_UNHEALTHY);
    atomic_store(&v[1]->state, BTH_TARGET_UNHEALTHY);
    atomic_store(&v[3]->state, BTH_TARGET_UNHEALTHY);
    for (size_t i = 0; i < 1000; i++)
        assert_null(pick(t, v, 4, flow_hashes[i]));
    bth_flow_table_destroy(t);

    /* weights {2, 2} build the same table as {1, 1} */
    struct bth_target *x[2] = {mk_target("10.0.3.1:80", 1), mk_target("10.0.3.2:80", 1)};
    struct bth_target *y[2] = {mk_target("10.0.3.1:80", 2), mk_target("10.0.3.2:80", 2)};
    struct bth_flow_table *tx = build(x, 2), *ty = build(y, 2);
    for (size_t i = 0; i < NFLOWS; i++)
        assert_string_equal(pick(tx, x, 2, flow_hashes[i])->addr.text,
                            pick(ty, y, 2, flow_hashes[i])->addr.text);
    bth_flow_table_destroy(tx);
    bth_flow_table_destroy(ty);

    /* all weights 0: a table that picks nothing */
    bth_target_unref(v[2]);
    v[2] = mk_target("10.0.2.3:80", 0);
    struct bth_flow_table *tz = build(&v[2], 1);
    assert_null(pick(tz, &v[2], 1, flow_hashes[0]));
    bth_flow_table_destroy(tz);
    unref_all(v, 4);
    unref_all(x, 2);
    unref_all(y, 2);
}

static void test_edges(void **state)
{
    assert_null(bth_flow_table_build(NULL, 0));
    bth_flow_table_destroy(NULL);

    struct bth_target *one = mk_target("[fd00::1]:443", 1);
    struct bth_flow_table *t = build(&one, 1);
    for (size_t i = 0; i < 1000; i++)
        assert_ptr_equal(pick(t, &one, 1, flow_hashes[i]), one);
    /* not the array it was built from */
    assert_null(pick(t, &one, 2, flow_hashes[0]));
    bth_flow_table_destroy(t);
    bth_target_unref(one);

    /* table sizes step up with the group, at 100 targets per step */
    struct bth_target **v = bth_calloc(101, sizeof(*v));
    assert_non_null(v);
    for (size_t i = 0; i < 101; i++) {
        char buf[64];
        snprintf(buf, sizeof(buf), "10.1.%zu.%zu:80", i / 200, i % 200 + 1);
        v[i] = mk_target(buf, 1);
    }
    t = build(v, 100);
    assert_int_equal(bth_flow_table_size(t), 10007);
    bth_flow_table_destroy(t);
    t = build(v, 101);
    assert_int_equal(bth_flow_table_size(t), 65537);
    /* each target's share is even to within one slot per round */
    size_t *slots = bth_calloc(101, sizeof(*slots));
    assert_non_null(slots);
    for (uint64_t h = 0; h < 65537; h++)
        slots[index_of(v, 101, pick(t, v, 101, h))]++;
    for (size_t i = 0; i < 101; i++)
        assert_in_range(slots[i], 65537 / 101, 65537 / 101 + 1);
    bth_free(slots);
    bth_flow_table_destroy(t);
    unref_all(v, 101);
    bth_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_vectors),
        cmocka_unit_test(test_5tuple_inputs),
        cmocka_unit_test(test_source_ignores_port),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_add_target),
        cmocka_unit_test(test_remove_target),
        cmocka_unit_test(test_instances_agree),
        cmocka_unit_test(test_unhealthy_failover),
        cmocka_unit_test(test_weights),
        cmocka_unit_test(test_edges),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
