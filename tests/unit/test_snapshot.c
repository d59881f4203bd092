/* SPDX-License-Identifier: MIT */
/* Snapshot lifetime: with a reaper, the last unref on another thread hands the snapshot to
 * the reaper instead of freeing it there (a worker's request never pays for the teardown);
 * without one it is freed where it is dropped. ASan checks that nothing is freed twice or
 * leaked. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "registry.h"
#include "snapshot.h"

static const char yaml[] = "listeners:\n"
                           "  - name: web\n"
                           "    protocol: HTTP\n"
                           "    bind: 127.0.0.1:8080\n"
                           "    rules:\n"
                           "      - priority: 1\n"
                           "        conditions: {path: [\"/api/*\"]}\n"
                           "        action: {forward: {target_group: web}}\n"
                           "    default_action: {forward: {target_group: web}}\n"
                           "target_groups:\n"
                           "  - name: web\n"
                           "    targets: [\"10.0.0.1:80\", \"10.0.0.2:80\"]\n";

struct reaped {
    struct bth_snapshot *snap;
    pthread_t thread;
    int calls;
};

static void reap(struct bth_snapshot *s, void *arg)
{
    struct reaped *r = arg;
    r->snap = s;
    r->thread = pthread_self();
    r->calls++;
}

static void registry_setup(struct bth_registry *reg)
{
    struct bth_err err;
    bth_err_init(&err);
    struct bth_config *cfg = bth_config_load_buffer("t.yaml", yaml, strlen(yaml), &err);
    assert_non_null(cfg);
    bth_err_fini(&err);
    struct bth_config_ref *ref = bth_config_ref_create(cfg);
    bth_registry_init(reg, 1);
    assert_int_equal(bth_registry_apply_config(reg, ref), 0);
    bth_config_ref_unref(ref);
}

static void *drop(void *arg)
{
    bth_snapshot_unref(arg);
    return NULL;
}

static void test_last_release_goes_to_the_reaper(void **state)
{
    struct bth_registry reg;
    registry_setup(&reg);
    struct reaped r = {0};
    reg.snapshot_reap = reap;
    reg.snapshot_reap_arg = &r;
    struct bth_snapshot *s = bth_registry_build_snapshot(&reg);
    assert_non_null(s);
    bth_snapshot_ref(s); /* a worker's reference, besides the builder's */
    bth_snapshot_unref(s);
    assert_int_equal(r.calls, 0); /* not the last one */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drop, s), 0);
    pthread_join(t, NULL);
    assert_int_equal(r.calls, 1);
    assert_ptr_equal(r.snap, s);
    assert_true(pthread_equal(r.thread, t));
    /* Still whole: the reaper's thread frees it. */
    assert_non_null(bth_snapshot_find_group(s, "web"));
    bth_snapshot_destroy(s);
    bth_registry_fini(&reg);
}

static void test_without_reaper_freed_where_dropped(void **state)
{
    struct bth_registry reg;
    registry_setup(&reg);
    struct bth_snapshot *s = bth_registry_build_snapshot(&reg);
    assert_non_null(s);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drop, s), 0);
    pthread_join(t, NULL); /* freed on that thread; ASan reports a leak otherwise */
    bth_registry_fini(&reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_release_goes_to_the_reaper),
        cmocka_unit_test(test_without_reaper_freed_where_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
