/* SPDX-License-Identifier: MIT */
/* Balancing algorithms over fake groups: nginx's smooth round-robin sequence and exact
 * shares, per-worker phases, least outstanding requests with random tie-breaks and the power
 * of two choices, weighted random proportions, the slow-start ramp, ELB fail-open, and that
 * draining, removed, weight-0 and already-tried targets are never picked. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balancer.h"
#include "clock.h"
#include "config.h"
#include "mem.h"
#include "registry.h"
#include "snapshot.h"
#include "target.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_TARGETS   256

/* What a worker hands the balancer: its row of per-worker state and its generator. */
struct picker {
    unsigned id;
    struct bth_rand rand;
};

/* A group as a snapshot would hold it, with its own config and one picker per row. */
struct fixture {
    struct bth_cfg_target_group cfg;
    struct bth_snap_group g;
    struct bth_target *t[MAX_TARGETS];
    size_t n;
    struct picker *w[4];
    unsigned nworkers;
    size_t count[MAX_TARGETS]; /* picks per target, filled by pick_many */
};

static struct fixture *fixture_new(enum bth_algorithm alg, const unsigned *weights, size_t n,
                                   unsigned nworkers, uint64_t slow_start_ms)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_true(n <= MAX_TARGETS && nworkers <= ARRAY_SIZE(f->w));
    f->cfg.name = "tg";
    f->cfg.algorithm = alg;
    f->cfg.slow_start_ms = slow_start_ms;
    for (size_t i = 0; i < n; i++) {
        char text[32];
        struct bth_addr addr;
        snprintf(text, sizeof(text), "10.0.%zu.%zu:8080", i / 200, i % 200 + 1);
        assert_int_equal(bth_parse_addr(text, &addr), 0);
        f->t[i] = bth_target_create(&addr, weights[i], nworkers, false);
        assert_non_null(f->t[i]);
        /* Ready long ago, so slow start (when a test turns it on) is over for it. */
        atomic_store(&f->t[i]->ready_since_ms, 0);
    }
    f->n = n;
    f->g.cfg = &f->cfg;
    f->g.targets = f->t;
    f->g.ntargets = n;
    f->nworkers = nworkers;
    for (unsigned k = 0; k < nworkers; k++) {
        f->w[k] = calloc(1, sizeof(*f->w[k]));
        assert_non_null(f->w[k]);
        f->w[k]->id = k;
        f->w[k]->rand.s = 0x9E3779B97F4A7C15ULL + k; /* xorshift: any non-zero seed */
    }
    assert_int_equal(bth_lb_group_init(&f->g, nworkers), 0);
    assert_non_null(f->g.lb);
    return f;
}

static struct fixture *fixture_equal(enum bth_algorithm alg, size_t n)
{
    unsigned weights[MAX_TARGETS] = {0};
    for (size_t i = 0; i < n; i++)
        weights[i] = 1;
    return fixture_new(alg, weights, n, 1, 0);
}

static void fixture_free(struct fixture *f)
{
    bth_lb_group_fini(&f->g);
    assert_null(f->g.lb);
    for (size_t i = 0; i < f->n; i++)
        bth_target_unref(f->t[i]);
    for (unsigned k = 0; k < f->nworkers; k++)
        free(f->w[k]);
    free(f);
}

static ptrdiff_t index_of(const struct fixture *f, const struct bth_target *t)
{
    for (size_t i = 0; i < f->n; i++) {
        if (f->t[i] == t)
            return (ptrdiff_t)i;
    }
    return -1;
}

/* Index of the target worker <k> picks; fails the test on NULL. */
static size_t pick_idx(struct fixture *f, unsigned k)
{
    struct bth_target *t = bth_lb_pick_target(f->w[k]->id, &f->w[k]->rand, &f->g, NULL, 0);
    assert_non_null(t);
    ptrdiff_t i = index_of(f, t);
    assert_true(i >= 0);
    return (size_t)i;
}

/* Counts <n> picks of worker 0 into f->count (reset first). */
static void pick_many(struct fixture *f, size_t n)
{
    memset(f->count, 0, sizeof(f->count));
    for (size_t i = 0; i < n; i++)
        f->count[pick_idx(f, 0)]++;
}

static void set_state(struct fixture *f, size_t i, enum bth_target_state st)
{
    atomic_store(&f->t[i]->state, (int)st);
}

static void assert_share(size_t got, size_t total, double want, double tol, size_t i)
{
    double share = (double)got / (double)total;
    if (share < want - tol || share > want + tol)
        fail_msg("target %zu: share %.4f, want %.4f +- %.4f", i, share, want, tol);
}

static const enum bth_algorithm all_algs[] = {BTH_ALG_ROUND_ROBIN, BTH_ALG_LEAST_OUTSTANDING,
                                              BTH_ALG_WEIGHTED_RANDOM, BTH_ALG_FLOW_HASH};

/* ------------------------------------------------------------------------------------ */
/* Smooth weighted round robin */

static void test_rr_nginx_sequence(void **state)
{
    static const unsigned weights[] = {5, 1, 1};
    struct fixture *f = fixture_new(BTH_ALG_ROUND_ROBIN, weights, 3, 1, 0);
    static const char want[] = "aabacaa"; /* nginx ngx_http_upstream_round_robin.c */
    size_t run = 0, max_run = 0, last = SIZE_MAX;
    memset(f->count, 0, sizeof(f->count));
    for (size_t i = 0; i < 7000; i++) {
        size_t k = pick_idx(f, 0);
        if (i < 70 && (char)('a' + k) != want[i % 7])
            fail_msg("pick %zu: %c, want %c", i, (char)('a' + k), want[i % 7]);
        run = k == last ? run + 1 : 1;
        last = k;
        if (run > max_run)
            max_run = run;
        f->count[k]++;
    }
    /* Smooth: the cycle a a b a c a a repeats, so at most four a in a row across cycles,
     * where classic weighted round robin sends a a a a a. */
    assert_true(max_run <= 4);
    assert_int_equal(f->count[0], 5000);
    assert_int_equal(f->count[1], 1000);
    assert_int_equal(f->count[2], 1000);
    fixture_free(f);
}

static void test_rr_weights_exact(void **state)
{
    static const unsigned weights[] = {3, 0, 1, 2, 0, 4};
    struct fixture *f = fixture_new(BTH_ALG_ROUND_ROBIN, weights, 6, 1, 0);
    pick_many(f, 10000);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(f->count[i], weights[i] * 1000);
    fixture_free(f);
}

/* Smoothness for any weights: after t picks, target i has had t * w_i / W picks give or
 * take less than two (the counters stay within one total of zero), and a whole cycle of W
 * picks gives exactly w_i each. */
static void test_rr_smooth_random(void **state)
{
    srand(7);
    for (int trial = 0; trial < 200; trial++) {
        unsigned weights[20];
        size_t n = 2 + (size_t)rand() % 19;
        int64_t total = 0;
        for (size_t i = 0; i < n; i++) {
            weights[i] = (unsigned)(rand() % 101);
            total += weights[i];
        }
        if (total == 0)
            continue;
        struct fixture *f = fixture_new(BTH_ALG_ROUND_ROBIN, weights, n, 1, 0);
        memset(f->count, 0, sizeof(f->count));
        for (int64_t t = 1; t <= 2 * total; t++) {
            f->count[pick_idx(f, 0)]++;
            for (size_t i = 0; i < n; i++) {
                int64_t d = (int64_t)f->count[i] * total - t * (int64_t)weights[i];
                if (d <= -2 * total || d >= 2 * total)
                    fail_msg("trial %d: target %zu has %zu picks after %lld", trial, i, f->count[i],
                             (long long)t);
            }
            if (t == total) {
                for (size_t i = 0; i < n; i++)
                    assert_int_equal(f->count[i], weights[i]);
            }
        }
        fixture_free(f);
    }
}

/* Each worker has its own counters, starting one step further into the sequence than the
 * previous worker, so a new snapshot does not send every worker's first request to one
 * target; each worker alone still gets exact shares. */
static void test_rr_per_worker(void **state)
{
    static const unsigned weights[] = {1, 1, 1, 1};
    struct fixture *f = fixture_new(BTH_ALG_ROUND_ROBIN, weights, 4, 4, 0);
    assert_true(f->g.lb->rr_nrows == 4);
    assert_true(f->g.lb->rr_stride * sizeof(int64_t) % 64 == 0);
    assert_true((uintptr_t)f->g.lb->rr_rows % 64 == 0);
    size_t first[4];
    for (unsigned k = 0; k < 4; k++)
        first[k] = pick_idx(f, k);
    for (unsigned k = 0; k < 4; k++)
        assert_int_equal(first[k], k);
    size_t count[4][4] = {{0}};
    for (size_t i = 0; i < 400; i++) {
        for (unsigned k = 0; k < 4; k++)
            count[k][pick_idx(f, k)]++;
    }
    for (unsigned k = 0; k < 4; k++) {
        for (size_t i = 0; i < 4; i++)
            assert_int_equal(count[k][i], 100);
    }
    fixture_free(f);

    /* A worker id the state was not sized for still gets a fair, valid pick. */
    f = fixture_new(BTH_ALG_ROUND_ROBIN, weights, 4, 1, 0);
    f->w[0]->id = 7;
    pick_many(f, 4000);
    for (size_t i = 0; i < 4; i++)
        assert_share(f->count[i], 4000, 0.25, 0.05, i);
    fixture_free(f);
}

/* An unhealthy target drops out of the rotation and the others keep smooth shares. */
static void test_rr_health_change(void **state)
{
    static const unsigned weights[] = {2, 1, 1};
    struct fixture *f = fixture_new(BTH_ALG_ROUND_ROBIN, weights, 3, 1, 0);
    pick_many(f, 40);
    set_state(f, 0, BTH_TARGET_UNHEALTHY);
    pick_many(f, 1000);
    assert_int_equal(f->count[0], 0);
    assert_int_equal(f->count[1], 500);
    assert_int_equal(f->count[2], 500);
    set_state(f, 0, BTH_TARGET_HEALTHY);
    pick_many(f, 4000);
    assert_share(f->count[0], 4000, 0.5, 0.01, 0);
    fixture_free(f);
}

/* Equal weights (no slow start) rotate with a cursor: target order, exact shares, and an
 * unhealthy target skipped without disturbing the others. */
static void test_rr_cursor_rotation(void **state)
{
    struct fixture *f = fixture_equal(BTH_ALG_ROUND_ROBIN, 200);
    for (size_t i = 0; i < 400; i++)
        assert_int_equal(pick_idx(f, 0), i % 200);
    set_state(f, 7, BTH_TARGET_UNHEALTHY);
    pick_many(f, 199 * 5);
    for (size_t i = 0; i < 200; i++)
        assert_int_equal(f->count[i], i == 7 ? 0 : 5);
    fixture_free(f);
}

/* Weighted groups of 64 targets or more use the earliest-deadline-first heap: shares follow
 * the weights exactly over whole cycles, and stay within two picks of them all along. */
static void test_rr_edf_shares(void **state)
{
    unsigned weights[MAX_TARGETS];
    int64_t total = 0;
    for (size_t i = 0; i < 200; i++) {
        weights[i] = 1 + (unsigned)(i * 7 % 5);
        total += weights[i];
    }
    struct fixture *f = fixture_new(BTH_ALG_ROUND_ROBIN, weights, 200, 1, 0);
    assert_non_null(f->g.lb->rr_heap);
    memset(f->count, 0, sizeof(f->count));
    for (int64_t t = 1; t <= 3 * total; t++) {
        f->count[pick_idx(f, 0)]++;
        for (size_t i = 0; i < 200 && t % 97 == 0; i++) {
            int64_t d = (int64_t)f->count[i] * total - t * (int64_t)weights[i];
            if (d <= -2 * total || d >= 2 * total)
                fail_msg("target %zu has %zu picks after %lld", i, f->count[i], (long long)t);
        }
    }
    for (size_t i = 0; i < 200; i++) {
        int64_t d = (int64_t)f->count[i] - 3 * (int64_t)weights[i];
        if (d < -1 || d > 1)
            fail_msg("target %zu: %zu picks, want %u", i, f->count[i], 3 * weights[i]);
    }
    fixture_free(f);
}

/* An unhealthy or zero-weight target never gets a turn; the rest keep their shares. Each
 * worker starts at another point of the schedule. */
static void test_rr_edf_skips_and_workers(void **state)
{
    unsigned weights[MAX_TARGETS];
    for (size_t i = 0; i < 100; i++)
        weights[i] = i == 3 ? 0 : (i % 2 ? 2 : 1);
    struct fixture *f = fixture_new(BTH_ALG_ROUND_ROBIN, weights, 100, 4, 0);
    set_state(f, 10, BTH_TARGET_UNHEALTHY);
    size_t total = 0;
    for (size_t i = 0; i < 100; i++)
        total += (i == 3 || i == 10) ? 0 : weights[i];
    pick_many(f, total * 10);
    for (size_t i = 0; i < 100; i++) {
        size_t want = (i == 3 || i == 10) ? 0 : weights[i] * 10;
        if (f->count[i] + 2 < want || f->count[i] > want + 2)
            fail_msg("target %zu: %zu picks, want %zu", i, f->count[i], want);
    }
    size_t first[4];
    for (unsigned k = 1; k < 4; k++)
        first[k] = pick_idx(f, k);
    assert_true(first[1] != first[2] && first[2] != first[3] && first[1] != first[3]);
    fixture_free(f);
}

/* ------------------------------------------------------------------------------------ */
/* Least outstanding requests */

static void test_lor_fewest(void **state)
{
    struct fixture *f = fixture_equal(BTH_ALG_LEAST_OUTSTANDING, 4);
    static const int inflight[] = {3, 1, 2, 7};
    for (size_t i = 0; i < 4; i++)
        atomic_store(&f->t[i]->outstanding, inflight[i]);
    pick_many(f, 1000);
    assert_int_equal(f->count[1], 1000);

    /* Per unit of weight, counting the new request: weight 3 with 5 in flight ((5 + 1) / 3 =
     * 2) beats weight 1 with 2 ((2 + 1) / 1 = 3). */
    fixture_free(f);
    static const unsigned weights[] = {1, 3, 1};
    f = fixture_new(BTH_ALG_LEAST_OUTSTANDING, weights, 3, 1, 0);
    atomic_store(&f->t[0]->outstanding, 2);
    atomic_store(&f->t[1]->outstanding, 5);
    atomic_store(&f->t[2]->outstanding, 4);
    pick_many(f, 1000);
    assert_int_equal(f->count[1], 1000);
    fixture_free(f);
}

static void test_lor_ties_random(void **state)
{
    struct fixture *f = fixture_equal(BTH_ALG_LEAST_OUTSTANDING, 3);
    atomic_store(&f->t[2]->outstanding, 5);
    pick_many(f, 10000);
    assert_int_equal(f->count[2], 0);
    assert_share(f->count[0], 10000, 0.5, 0.03, 0);
    assert_share(f->count[1], 10000, 0.5, 0.03, 1);

    /* Three-way tie: reservoir sampling gives each a third. */
    atomic_store(&f->t[2]->outstanding, 0);
    pick_many(f, 30000);
    for (size_t i = 0; i < 3; i++)
        assert_share(f->count[i], 30000, 1.0 / 3, 0.03, i);
    fixture_free(f);
}

/* Past BTH_LB_LOR_SCAN_MAX targets, two random candidates: the busiest target loses every
 * comparison, so it is never picked, and an idle target wins about twice its fair share. */
static void test_lor_p2c(void **state)
{
    struct fixture *f = fixture_equal(BTH_ALG_LEAST_OUTSTANDING, 50);
    for (size_t i = 0; i < 50; i++)
        atomic_store(&f->t[i]->outstanding, (int)(i % 4) + 1);
    atomic_store(&f->t[17]->outstanding, 1000000);
    atomic_store(&f->t[31]->outstanding, 0);
    pick_many(f, 100000);
    assert_int_equal(f->count[17], 0);
    for (size_t i = 0; i < 50; i++) {
        if (i != 17 && f->count[i] == 0)
            fail_msg("target %zu never picked", i);
    }
    /* Target 31 wins whenever it is a candidate: P = 1 - 49/50 * 48/49 = 2/50. */
    assert_share(f->count[31], 100000, 2.0 / 50, 0.005, 31);

    /* Mostly ineligible: sampling gives up and the scan still finds the survivors. */
    for (size_t i = 0; i < 50; i++) {
        if (i != 5 && i != 40)
            set_state(f, i, BTH_TARGET_UNHEALTHY);
    }
    atomic_store(&f->t[5]->outstanding, 3);
    atomic_store(&f->t[40]->outstanding, 2);
    pick_many(f, 1000);
    assert_int_equal(f->count[40], 1000);
    fixture_free(f);
}

/* ------------------------------------------------------------------------------------ */
/* Weighted random */

static void test_wr_proportions(void **state)
{
    static const unsigned weights[] = {1, 2, 0, 3, 4};
    struct fixture *f = fixture_new(BTH_ALG_WEIGHTED_RANDOM, weights, 5, 1, 0);
    pick_many(f, 100000);
    assert_int_equal(f->count[2], 0);
    for (size_t i = 0; i < 5; i++)
        assert_share(f->count[i], 100000, weights[i] / 10.0, 0.01, i);

    /* An unhealthy target's weight is shared out in proportion among the rest. */
    set_state(f, 4, BTH_TARGET_UNHEALTHY);
    pick_many(f, 100000);
    assert_int_equal(f->count[4], 0);
    for (size_t i = 0; i < 4; i++)
        assert_share(f->count[i], 100000, weights[i] / 6.0, 0.01, i);
    fixture_free(f);
}

/* ------------------------------------------------------------------------------------ */
/* Slow start */

/* Share of target 1 (ready <ready_ago_ms> ago) next to target 0 (ready long ago), both of
 * weight 1, over <n> picks. */
static double slow_start_share(enum bth_algorithm alg, uint64_t ready_ago_ms, size_t n)
{
    static const unsigned weights[] = {1, 1};
    const uint64_t window = 60000;
    struct fixture *f = fixture_new(alg, weights, 2, 1, window);
    uint64_t now = bth_clock_mono_ms();
    atomic_store(&f->t[1]->ready_since_ms, now - ready_ago_ms);
    pick_many(f, n);
    double share = (double)f->count[1] / (double)n;
    fixture_free(f);
    return share;
}

static void test_slow_start_ramp(void **state)
{
    if (bth_clock_mono_ms() <= 60000)
        skip(); /* ready_since_ms = now - 60 s must not wrap */
    static const enum bth_algorithm algs[] = {BTH_ALG_ROUND_ROBIN, BTH_ALG_WEIGHTED_RANDOM};
    for (size_t a = 0; a < ARRAY_SIZE(algs); a++) {
        /* Just ready: only the floor (1/32 of its weight), share 1/33. */
        double s = slow_start_share(algs[a], 0, 20000);
        if (s <= 0.0 || s > 0.10)
            fail_msg("%s: share %.4f just after becoming ready", bth_algorithm_name(algs[a]), s);
        /* Half the window: half its weight, so 0.5 / 1.5 of the picks. */
        s = slow_start_share(algs[a], 30000, 30000);
        if (s < 1.0 / 3 - 0.02 || s > 1.0 / 3 + 0.02)
            fail_msg("%s: share %.4f at half the window", bth_algorithm_name(algs[a]), s);
        /* A quarter: 0.25 / 1.25. */
        s = slow_start_share(algs[a], 15000, 30000);
        if (s < 0.2 - 0.02 || s > 0.2 + 0.02)
            fail_msg("%s: share %.4f at a quarter", bth_algorithm_name(algs[a]), s);
        /* Window over: full share. */
        s = slow_start_share(algs[a], 60000, 20000);
        if (s < 0.5 - 0.02 || s > 0.5 + 0.02)
            fail_msg("%s: share %.4f after the window", bth_algorithm_name(algs[a]), s);
    }
    /* Least outstanding: with nothing in flight, the ramping target loses to the full one,
     * until its window is over, when both tie. */
    double s = slow_start_share(BTH_ALG_LEAST_OUTSTANDING, 1000, 1000);
    assert_true(s == 0.0);
    s = slow_start_share(BTH_ALG_LEAST_OUTSTANDING, 60000, 10000);
    assert_true(s > 0.4 && s < 0.6);
}

static void test_slow_start_weight(void **state)
{
    static const unsigned weights[] = {4, 0};
    struct fixture *f = fixture_new(BTH_ALG_ROUND_ROBIN, weights, 2, 1, 1000);
    struct bth_lb_ctx c = {.slow_start_ms = 1000, .now_ms = 50000};
    const uint64_t full = 4 * BTH_LB_WEIGHT_SCALE;
    atomic_store(&f->t[0]->ready_since_ms, 50000);
    assert_true(bth_lb_weight(f->t[0], &c) == full / BTH_LB_SLOW_START_FLOOR);
    atomic_store(&f->t[0]->ready_since_ms, 50100); /* stamped after now was read */
    assert_true(bth_lb_weight(f->t[0], &c) == full / BTH_LB_SLOW_START_FLOOR);
    atomic_store(&f->t[0]->ready_since_ms, 49500);
    assert_true(bth_lb_weight(f->t[0], &c) == full / 2);
    atomic_store(&f->t[0]->ready_since_ms, 49250);
    assert_true(bth_lb_weight(f->t[0], &c) == full * 3 / 4);
    atomic_store(&f->t[0]->ready_since_ms, 40000);
    assert_true(bth_lb_weight(f->t[0], &c) == full);
    assert_true(bth_lb_weight(f->t[1], &c) == 0);
    c.slow_start_ms = 0;
    atomic_store(&f->t[0]->ready_since_ms, 50000);
    assert_true(bth_lb_weight(f->t[0], &c) == full);

    /* Turning healthy again restarts the ramp; staying healthy does not. */
    set_state(f, 0, BTH_TARGET_UNHEALTHY);
    atomic_store(&f->t[0]->ready_since_ms, 0);
    bth_target_set_state(f->t[0], BTH_TARGET_HEALTHY);
    uint64_t since = atomic_load(&f->t[0]->ready_since_ms);
    assert_true(since > 0 && since <= bth_clock_mono_ms());
    atomic_store(&f->t[0]->ready_since_ms, 1);
    bth_target_set_state(f->t[0], BTH_TARGET_HEALTHY);
    assert_true(atomic_load(&f->t[0]->ready_since_ms) == 1);
    bth_target_set_state(f->t[0], BTH_TARGET_DRAINING);
    assert_true(atomic_load(&f->t[0]->ready_since_ms) == 1);
    fixture_free(f);
}

/* ELB: targets ramp only while a full-weight target takes traffic; a group whose targets
 * all arrive at once (start-up, first registration) skips slow start. */
static void test_slow_start_entry(void **state)
{
    static const unsigned weights[] = {1, 1, 1};
    struct fixture *f = fixture_new(BTH_ALG_ROUND_ROBIN, weights, 3, 1, 30000);
    uint64_t now = bth_clock_mono_ms();
    struct bth_target **t = f->t;

    /* All fresh: nobody ramps. */
    for (size_t i = 0; i < 3; i++)
        atomic_store(&t[i]->ready_since_ms, now);
    bth_lb_group_fini(&f->g);
    assert_int_equal(bth_lb_group_init(&f->g, 1), 0);
    for (size_t i = 0; i < 3; i++)
        assert_true(atomic_load(&t[i]->ready_since_ms) == 0);

    /* One exempt target takes traffic: the fresh ones keep ramping. */
    atomic_store(&t[1]->ready_since_ms, now);
    atomic_store(&t[2]->ready_since_ms, now);
    bth_lb_slow_start_settle(t, 3, 30000);
    assert_true(atomic_load(&t[1]->ready_since_ms) == now);
    assert_true(atomic_load(&t[2]->ready_since_ms) == now);

    /* Ramp over for another: it anchors too. */
    atomic_store(&t[1]->ready_since_ms, now - 30000);
    set_state(f, 0, BTH_TARGET_UNHEALTHY);
    bth_lb_slow_start_settle(t, 3, 30000);
    assert_true(atomic_load(&t[2]->ready_since_ms) == now);

    /* The only anchors unhealthy or removed: the ramp ends. */
    atomic_store(&t[1]->removed, true);
    bth_lb_slow_start_settle(t, 3, 30000);
    assert_true(atomic_load(&t[2]->ready_since_ms) == 0);

    /* Slow start off: untouched. */
    atomic_store(&t[2]->ready_since_ms, now);
    bth_lb_slow_start_settle(t, 3, 0);
    assert_true(atomic_load(&t[2]->ready_since_ms) == now);
    fixture_free(f);
}

/* ------------------------------------------------------------------------------------ */
/* Eligibility, for every algorithm */

static void test_fail_open(void **state)
{
    for (size_t a = 0; a < ARRAY_SIZE(all_algs); a++) {
        struct fixture *f = fixture_equal(all_algs[a], 12);
        for (size_t i = 0; i < 12; i++)
            set_state(f, i, i % 2 ? BTH_TARGET_UNHEALTHY : BTH_TARGET_INITIAL);
        set_state(f, 3, BTH_TARGET_DRAINING);
        atomic_store(&f->t[4]->removed, true);
        pick_many(f, 5000);
        for (size_t i = 0; i < 12; i++) {
            bool never = i == 3 || i == 4;
            if (never != (f->count[i] == 0))
                fail_msg("%s: target %zu picked %zu times", bth_algorithm_name(all_algs[a]), i,
                         f->count[i]);
        }
        /* One target taking traffic ends failing open, even once it has been tried. */
        set_state(f, 7, BTH_TARGET_HEALTHY);
        pick_many(f, 100);
        assert_int_equal(f->count[7], 100);
        struct bth_target *tried[] = {f->t[7]};
        assert_null(bth_lb_pick_target(f->w[0]->id, &f->w[0]->rand, &f->g, tried, 1));
        /* Only draining and removed targets left: nothing at all. */
        for (size_t i = 0; i < 12; i++)
            set_state(f, i, BTH_TARGET_DRAINING);
        set_state(f, 4, BTH_TARGET_HEALTHY);
        assert_null(bth_lb_pick_target(f->w[0]->id, &f->w[0]->rand, &f->g, NULL, 0));
        fixture_free(f);
    }
}

static void test_never_picked(void **state)
{
    static const unsigned weights[] = {1, 1, 1, 0, 1, 2, 1, 1, 1, 1, 1};
    for (size_t a = 0; a < ARRAY_SIZE(all_algs); a++) {
        struct fixture *f = fixture_new(all_algs[a], weights, ARRAY_SIZE(weights), 1, 0);
        set_state(f, 1, BTH_TARGET_DRAINING);
        set_state(f, 2, BTH_TARGET_UNHEALTHY);
        set_state(f, 6, BTH_TARGET_INITIAL);
        set_state(f, 7, BTH_TARGET_UNUSED);
        atomic_store(&f->t[8]->removed, true);
        pick_many(f, 10000);
        for (size_t i = 0; i < ARRAY_SIZE(weights); i++) {
            bool never = (i >= 1 && i <= 3) || (i >= 6 && i <= 8);
            if (never != (f->count[i] == 0))
                fail_msg("%s: target %zu picked %zu times", bth_algorithm_name(all_algs[a]), i,
                         f->count[i]);
        }
        fixture_free(f);
    }
}

static void test_tried_skipped(void **state)
{
    for (size_t a = 0; a < ARRAY_SIZE(all_algs); a++) {
        for (size_t n = 3; n <= 20; n += 17) { /* scan and P2C sizes */
            struct fixture *f = fixture_equal(all_algs[a], n);
            struct bth_target *tried[MAX_TARGETS];
            size_t ntried = 0;
            /* Retry after retry: each pick is new until the group is used up. */
            for (size_t k = 0; k < n; k++) {
                struct bth_target *t =
                    bth_lb_pick_target(f->w[0]->id, &f->w[0]->rand, &f->g, tried, ntried);
                assert_non_null(t);
                for (size_t j = 0; j < ntried; j++)
                    assert_ptr_not_equal(t, tried[j]);
                tried[ntried++] = t;
            }
            assert_null(bth_lb_pick_target(f->w[0]->id, &f->w[0]->rand, &f->g, tried, ntried));
            /* Tried targets are skipped while failing open too. */
            for (size_t i = 0; i < n; i++)
                set_state(f, i, BTH_TARGET_UNHEALTHY);
            for (size_t k = 0; k < 200; k++) {
                struct bth_target *t =
                    bth_lb_pick_target(f->w[0]->id, &f->w[0]->rand, &f->g, tried, n - 1);
                assert_ptr_equal(t, tried[n - 1]);
            }
            fixture_free(f);
        }
    }
}

static void test_empty_and_stateless(void **state)
{
    struct fixture *f = fixture_equal(BTH_ALG_WEIGHTED_RANDOM, 0);
    assert_null(bth_lb_pick_target(f->w[0]->id, &f->w[0]->rand, &f->g, NULL, 0));
    fixture_free(f);
    /* A group without state (never initialised) still balances. */
    f = fixture_equal(BTH_ALG_ROUND_ROBIN, 3);
    bth_lb_group_fini(&f->g);
    pick_many(f, 3000);
    for (size_t i = 0; i < 3; i++)
        assert_share(f->count[i], 3000, 1.0 / 3, 0.05, i);
    fixture_free(f);
}

/* ------------------------------------------------------------------------------------ */
/* Through the registry and a real snapshot */

static void test_snapshot_state(void **state)
{
    static const char yaml[] =
        "listeners:\n"
        "  - protocol: HTTP\n"
        "    bind: 127.0.0.1:8080\n"
        "    default_action: {forward: {target_group: web}}\n"
        "target_groups:\n"
        "  - name: web\n"
        "    targets: [\"10.0.0.1:80\", {id: 10.0.0.2, port: 80, weight: 3}]\n"
        "  - name: api\n"
        "    algorithm: weighted_random\n"
        "    targets: [\"10.0.1.1:80\", \"10.0.1.2:80\"]\n"
        "  - name: empty\n"
        "    algorithm: least_outstanding_requests\n"
        "  - name: slow\n"
        "    slow_start: 30s\n"
        "    targets: [\"10.0.2.1:80\", \"10.0.2.2:80\"]\n";
    struct bth_err err;
    bth_err_init(&err);
    struct bth_config *cfg = bth_config_load_buffer("t.yaml", yaml, strlen(yaml), &err);
    for (size_t i = 0; i < err.n; i++)
        print_error("%s\n", err.msgs[i]);
    assert_non_null(cfg);
    bth_err_fini(&err);
    struct bth_config_ref *ref = bth_config_ref_create(cfg);
    assert_non_null(ref);
    struct bth_registry reg;
    bth_registry_init(&reg, 2);
    assert_int_equal(bth_registry_apply_config(&reg, ref), 0);
    bth_config_ref_unref(ref);
    struct bth_snapshot *s = bth_registry_build_snapshot(&reg);
    assert_non_null(s);

    struct bth_snap_group *web = bth_snapshot_find_group(s, "web");
    assert_non_null(web->lb);
    assert_ptr_equal(web->lb->ops, &bth_lb_round_robin_ops);
    assert_true(web->lb->rr_nrows == 2);
    struct picker *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    w->rand.s = 42;
    size_t n1 = 0;
    for (unsigned id = 0; id < 2; id++) {
        w->id = id;
        for (size_t i = 0; i < 400; i++)
            n1 += bth_lb_pick_target(w->id, &w->rand, web, NULL, 0) == web->targets[1];
    }
    assert_int_equal(n1, 600);
    struct bth_snap_group *api = bth_snapshot_find_group(s, "api");
    assert_ptr_equal(api->lb->ops, &bth_lb_weighted_random_ops);
    assert_true(api->lb->wr_total == 2);
    struct bth_snap_group *empty = bth_snapshot_find_group(s, "empty");
    assert_non_null(empty->lb);
    assert_null(bth_lb_pick_target(w->id, &w->rand, empty, NULL, 0));

    /* Slow start: the targets of the first snapshot are exempt; one registered later ramps
     * from its floor (1/32 of its weight: 1 pick in 33 under round robin). */
    struct bth_snap_group *slow = bth_snapshot_find_group(s, "slow");
    for (size_t i = 0; i < slow->ntargets; i++)
        assert_true(atomic_load(&slow->targets[i]->ready_since_ms) == 0);
    struct bth_addr addr;
    assert_int_equal(bth_parse_addr("10.0.2.3:80", &addr), 0);
    struct bth_reg_group *rg = bth_registry_find_group(&reg, "slow");
    assert_int_equal(bth_registry_register(&reg, rg, &addr, 1), 0);
    struct bth_snapshot *s2 = bth_registry_build_snapshot(&reg);
    assert_non_null(s2);
    slow = bth_snapshot_find_group(s2, "slow");
    assert_int_equal(slow->ntargets, 3);
    assert_true(atomic_load(&slow->targets[0]->ready_since_ms) == 0);
    assert_true(atomic_load(&slow->targets[2]->ready_since_ms) != 0);
    w->id = 0;
    size_t fresh = 0;
    for (size_t i = 0; i < 6600; i++)
        fresh += bth_lb_pick_target(w->id, &w->rand, slow, NULL, 0) == slow->targets[2];
    assert_true(fresh >= 90 && fresh <= 110);
    bth_snapshot_unref(s2);

    free(w);
    bth_snapshot_unref(s);
    bth_registry_fini(&reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rr_nginx_sequence),
        cmocka_unit_test(test_rr_weights_exact),
        cmocka_unit_test(test_rr_smooth_random),
        cmocka_unit_test(test_rr_per_worker),
        cmocka_unit_test(test_rr_health_change),
        cmocka_unit_test(test_rr_cursor_rotation),
        cmocka_unit_test(test_rr_edf_shares),
        cmocka_unit_test(test_rr_edf_skips_and_workers),
        cmocka_unit_test(test_lor_fewest),
        cmocka_unit_test(test_lor_ties_random),
        cmocka_unit_test(test_lor_p2c),
        cmocka_unit_test(test_wr_proportions),
        cmocka_unit_test(test_slow_start_ramp),
        cmocka_unit_test(test_slow_start_weight),
        cmocka_unit_test(test_slow_start_entry),
        cmocka_unit_test(test_fail_open),
        cmocka_unit_test(test_never_picked),
        cmocka_unit_test(test_tried_skipped),
        cmocka_unit_test(test_empty_and_stateless),
        cmocka_unit_test(test_snapshot_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
