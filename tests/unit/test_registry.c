/* SPDX-License-Identifier: MIT */
/* The registry's address index and drains: lookups stay right through appends,
 * deregistrations and index rebuilds; 100k registrations one by one stay fast (a scan per
 * target took minutes); drains ending together leave their group in one pass and answer
 * every waiter; re-registering cancels a drain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "config.h"
#include "mem.h"
#include "registry.h"
#include "target.h"

static struct bth_cfg_target_group group_cfg; /* deregistration_delay_ms 0 unless set */

/* A registry with one empty group "app". */
static void setup(struct bth_registry *reg)
{
    bth_registry_init(reg, 1);
    reg->groups = bth_calloc(1, sizeof(*reg->groups));
    reg->groups[0].name = bth_strdup("app");
    reg->groups[0].cfg = &group_cfg;
    reg->ngroups = 1;
}

/* The <i>-th distinct address: IPv4 for even <i>, IPv6 for odd. */
static struct bth_addr addr_n(unsigned i)
{
    char ip[64];
    if (i % 2 == 0)
        snprintf(ip, sizeof(ip), "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    else
        snprintf(ip, sizeof(ip), "fd00::%x:%x", i >> 16, i & 0xffff);
    struct bth_addr a;
    assert_int_equal(bth_addr_from_ip_port(ip, 80 + i % 7, &a), 0);
    return a;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void test_many_registrations(void **state)
{
    struct bth_registry reg;
    setup(&reg);
    struct bth_reg_group *g = &reg.groups[0];
    const unsigned n = 100000;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 0; i < n; i++) {
        struct bth_addr a = addr_n(i);
        assert_int_equal(bth_registry_register(&reg, g, &a, 1), 0);
    }
    for (unsigned i = 0; i < n; i += 3) { /* idempotent */
        struct bth_addr a = addr_n(i);
        assert_int_equal(bth_registry_register(&reg, g, &a, 1), 0);
    }
    double took = seconds_since(&t0);
    assert_int_equal(g->ntargets, n);
    assert_true(took < 3.0); /* about 0.05 s; a scan per target: tens of seconds */
    for (unsigned i = 0; i < n; i++) {
        struct bth_addr a = addr_n(i);
        struct bth_target *t = bth_registry_find_target(g, &a);
        assert_non_null(t);
        assert_true(bth_addr_equal(&t->addr, &a));
        assert_ptr_equal(g->targets[i], t);
    }
    struct bth_addr missing = addr_n(n + 2);
    assert_null(bth_registry_find_target(g, &missing));
    bth_registry_fini(&reg);
}

static void test_deregister_keeps_lookups_right(void **state)
{
    struct bth_registry reg;
    setup(&reg);
    struct bth_reg_group *g = &reg.groups[0];
    const unsigned n = 2000;
    for (unsigned i = 0; i < n; i++) {
        struct bth_addr a = addr_n(i);
        bth_registry_register(&reg, g, &a, 1);
    }
    for (unsigned i = 0; i < n; i += 3) {
        struct bth_addr a = addr_n(i);
        assert_int_equal(bth_registry_deregister(&reg, g, &a), 1);
        assert_int_equal(bth_registry_deregister(&reg, g, &a), 0);
        struct bth_addr b = addr_n(i + 1);
        assert_non_null(bth_registry_find_target(g, &b));
    }
    for (unsigned i = 0; i < n; i++) {
        struct bth_addr a = addr_n(i);
        struct bth_target *t = bth_registry_find_target(g, &a);
        if (i % 3 == 0)
            assert_null(t);
        else
            assert_true(t != NULL && bth_addr_equal(&t->addr, &a));
    }
    bth_registry_fini(&reg);
}

static int waiter_calls;

static void on_done(void *arg)
{
    waiter_calls++;
}

static void test_drains_end_together(void **state)
{
    struct bth_registry reg;
    setup(&reg);
    struct bth_reg_group *g = &reg.groups[0];
    const unsigned n = 6000;
    group_cfg.deregistration_delay_ms = 0;
    for (unsigned i = 0; i < n; i++) {
        struct bth_addr a = addr_n(i);
        bth_registry_register(&reg, g, &a, 1);
    }
    waiter_calls = 0;
    for (unsigned i = 0; i < n; i += 2) {
        struct bth_addr a = addr_n(i);
        assert_int_equal(bth_registry_drain(&reg, g, &a, 1000), 1);
        assert_int_equal(bth_registry_drain(&reg, g, &a, 1000), 1); /* under way already */
        struct bth_target *t = bth_registry_find_target(g, &a);
        atomic_store(&t->outstanding, 1); /* busy: its waiter waits for the deadline */
        assert_int_equal(bth_registry_drain_wait(&reg, g, &a, on_done, NULL), 0);
        assert_non_null(bth_registry_find_drain(&reg, t));
    }
    assert_int_equal(waiter_calls, 0);
    assert_int_equal(bth_registry_drain_tick(&reg, 1000), (int)n / 2);
    assert_int_equal(waiter_calls, (int)n / 2);
    assert_int_equal(g->ntargets, n / 2);
    assert_null(reg.drains);
    for (unsigned i = 0; i < n; i++) {
        struct bth_addr a = addr_n(i);
        struct bth_target *t = bth_registry_find_target(g, &a);
        if (i % 2 == 0) {
            assert_null(t);
        } else {
            assert_non_null(t);
            assert_null(bth_registry_find_drain(&reg, t));
            assert_false(atomic_load(&t->removed));
        }
    }
    assert_int_equal(bth_registry_drain_tick(&reg, 2000), 0);
    bth_registry_fini(&reg);
}

static void test_register_cancels_drain(void **state)
{
    struct bth_registry reg;
    setup(&reg);
    struct bth_reg_group *g = &reg.groups[0];
    group_cfg.deregistration_delay_ms = 300000;
    struct bth_addr a = addr_n(1), b = addr_n(2);
    bth_registry_register(&reg, g, &a, 1);
    bth_registry_register(&reg, g, &b, 1);
    struct bth_target *t = bth_registry_find_target(g, &a);
    atomic_store(&t->outstanding, 1); /* busy: only the deadline would end it */
    assert_int_equal(bth_registry_drain(&reg, g, &a, 1000), 1);
    assert_int_equal(bth_registry_drain(&reg, g, &b, 1000), 1);
    waiter_calls = 0;
    bth_registry_drain_wait(&reg, g, &a, on_done, NULL);
    assert_int_equal(atomic_load(&t->state), BTH_TARGET_DRAINING);
    assert_int_equal(bth_registry_register(&reg, g, &a, 1), 0);
    assert_int_equal(waiter_calls, 1);
    assert_null(bth_registry_find_drain(&reg, t));
    assert_int_equal(atomic_load(&t->state), BTH_TARGET_UNAVAILABLE);
    /* b is idle but, as ELB, stays draining until its delay; a waiter on it is answered
     * at once; at the deadline b leaves and a stays */
    waiter_calls = 0;
    assert_int_equal(bth_registry_drain_wait(&reg, g, &b, on_done, NULL), 0);
    assert_int_equal(waiter_calls, 1);
    assert_int_equal(bth_registry_drain_tick(&reg, 2000), 0);
    assert_int_equal(g->ntargets, 2);
    assert_int_equal(bth_registry_drain_tick(&reg, 301000), 1);
    assert_int_equal(g->ntargets, 1);
    assert_ptr_equal(g->targets[0], t);
    atomic_store(&t->outstanding, 0);
    bth_registry_fini(&reg);
}

/* A waiter on a busy target is answered at the tick that finds it idle, before the delay
 * ends; the target stays draining until then. */
static void test_wait_answers_when_idle(void **state)
{
    struct bth_registry reg;
    setup(&reg);
    struct bth_reg_group *g = &reg.groups[0];
    group_cfg.deregistration_delay_ms = 10000;
    struct bth_addr a = addr_n(1);
    bth_registry_register(&reg, g, &a, 1);
    struct bth_target *t = bth_registry_find_target(g, &a);
    atomic_store(&t->outstanding, 2);
    assert_int_equal(bth_registry_drain(&reg, g, &a, 1000), 1);
    waiter_calls = 0;
    bth_registry_drain_wait(&reg, g, &a, on_done, NULL);
    assert_int_equal(bth_registry_drain_tick(&reg, 2000), 0);
    assert_int_equal(waiter_calls, 0);
    atomic_store(&t->outstanding, 0);
    assert_int_equal(bth_registry_drain_tick(&reg, 3000), 0);
    assert_int_equal(waiter_calls, 1);
    assert_int_equal(atomic_load(&t->state), BTH_TARGET_DRAINING);
    assert_int_equal(bth_registry_drain_tick(&reg, 4000), 0);
    assert_int_equal(waiter_calls, 1); /* once */
    assert_int_equal(bth_registry_drain_tick(&reg, 11000), 1);
    assert_null(bth_registry_find_target(g, &a));
    bth_registry_fini(&reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_registrations),
        cmocka_unit_test(test_deregister_keeps_lookups_right),
        cmocka_unit_test(test_drains_end_together),
        cmocka_unit_test(test_register_cancels_drain),
        cmocka_unit_test(test_wait_answers_when_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
