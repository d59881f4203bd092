/* SPDX-License-Identifier: MIT */
/* workers: auto in a container: cgroup v2 cpu.max and v1 cfs quota, read from fake trees
 * (the smallest quota up the hierarchy counts, rounded up to whole CPUs; none means 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cpu_count.h"

static char root[256];

static void put(const char *rel, const char *text)
{
    char p[512], dir[512];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    snprintf(dir, sizeof(dir), "%s", p);
    for (char *s = dir + strlen(root) + 1; (s = strchr(s, '/')) != NULL; s++) {
        *s = '\0';
        mkdir(dir, 0755);
        *s = '/';
    }
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static unsigned limit(void)
{
    char self[512], mount[512];
    snprintf(self, sizeof(self), "%s/self_cgroup", root);
    snprintf(mount, sizeof(mount), "%s/fs", root);
    return bth_cgroup_cpu_limit(self, mount);
}

static int make_root(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/berth-cpu-test.XXXXXX");
    return mkdtemp(root) == NULL ? -1 : 0;
}

static int remove_root(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_v2(void **state)
{
    (void)state;
    put("self_cgroup", "0::/ecs/task/container\n");
    put("fs/ecs/task/container/cpu.max", "max 100000\n");
    put("fs/ecs/task/cpu.max", "50000 100000\n"); /* 0.5 CPU on the task */
    put("fs/ecs/cpu.max", "max 100000\n");
    assert_int_equal(limit(), 1);
    put("fs/ecs/task/container/cpu.max", "250000 100000\n"); /* 2.5 -> 3, but the task caps */
    assert_int_equal(limit(), 1);
    put("fs/ecs/task/cpu.max", "max 100000\n");
    assert_int_equal(limit(), 3);
    put("fs/ecs/task/container/cpu.max", "max 100000\n");
    assert_int_equal(limit(), 0);
}

static void test_v1(void **state)
{
    (void)state;
    put("self_cgroup", "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n1:name=systemd:/\n");
    put("fs/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "150000\n");
    put("fs/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
    assert_int_equal(limit(), 2);
    put("fs/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n");
    assert_int_equal(limit(), 0);
    /* inside the container the controller's root is the container's own cgroup */
    put("fs/cpu,cpuacct/cpu.cfs_quota_us", "100000\n");
    put("fs/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    assert_int_equal(limit(), 1);
}

static void test_no_files(void **state)
{
    (void)state;
    assert_int_equal(bth_cgroup_cpu_limit("/nonexistent/cgroup", "/nonexistent"), 0);
    assert_true(bth_cpu_count() >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_v2, make_root, remove_root),
        cmocka_unit_test_setup_teardown(test_v1, make_root, remove_root),
        cmocka_unit_test(test_no_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
