/* SPDX-License-Identifier: MIT */
/* A container's CPU limit is a quota (so much CPU time per period), not a CPU set: both
 * count. The files are read once, at start; a reload keeps the workers it has. */
#include "cpu_count.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Whole CPUs for <quota> per <period> (both in the same unit), rounded up; 0 for none. */
static unsigned quota_cpus(long long quota, long long period)
{
    if (quota <= 0 || period <= 0)
        return 0;
    return (unsigned)((quota + period - 1) / period);
}

/* Reads "QUOTA PERIOD" (v2 cpu.max; "max" means none). 0 when absent or unlimited. */
static unsigned read_cpu_max(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char q[32] = "";
    long long period = 0, quota = 0;
    int n = fscanf(f, "%31s %lld", q, &period);
    fclose(f);
    if (n != 2 || strcmp(q, "max") == 0 || sscanf(q, "%lld", &quota) != 1)
        return 0;
    return quota_cpus(quota, period);
}

static long long read_number(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long long v = -1;
    if (fscanf(f, "%lld", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

/* v1: cpu.cfs_quota_us (-1 means none) over cpu.cfs_period_us in <dir>. */
static unsigned read_cfs(const char *dir)
{
    char qp[4096], pp[4096];
    /* A path that does not fit names no file berth could read: no limit from it. */
    if (snprintf(qp, sizeof(qp), "%s/cpu.cfs_quota_us", dir) >= (int)sizeof(qp) ||
        snprintf(pp, sizeof(pp), "%s/cpu.cfs_period_us", dir) >= (int)sizeof(pp))
        return 0;
    return quota_cpus(read_number(qp), read_number(pp));
}

static unsigned smaller_limit(unsigned a, unsigned b)
{
    if (a == 0)
        return b;
    if (b == 0)
        return a;
    return a < b ? a : b;
}

/* The smallest limit <read> finds in <base><path> and each of its parents up to <base>. */
static unsigned limit_up_the_tree(const char *base, const char *path, const char *file,
                                  unsigned (*read)(const char *))
{
    char rel[2048];
    snprintf(rel, sizeof(rel), "%s", path);
    unsigned best = 0;
    for (;;) {
        char p[4096];
        size_t n = strlen(rel);
        while (n > 0 && rel[n - 1] == '/')
            rel[--n] = '\0';
        if (file != NULL)
            snprintf(p, sizeof(p), "%s%s/%s", base, rel, file);
        else
            snprintf(p, sizeof(p), "%s%s", base, rel);
        best = smaller_limit(best, read(p));
        char *slash = strrchr(rel, '/');
        if (n == 0 || slash == NULL)
            break;
        *slash = '\0';
    }
    return best;
}

unsigned bth_cgroup_cpu_limit(const char *self_cgroup, const char *root)
{
    FILE *f = fopen(self_cgroup, "r");
    if (f == NULL)
        return 0;
    char line[2048], base[2048];
    unsigned best = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        /* "hierarchy-id:controllers:path" */
        char *c1 = strchr(line, ':');
        char *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
        if (c2 == NULL)
            continue;
        *c2 = '\0';
        const char *controllers = c1 + 1, *path = c2 + 1;
        if (*controllers == '\0') { /* v2: "0::/path" */
            best = smaller_limit(best, limit_up_the_tree(root, path, "cpu.max", read_cpu_max));
            continue;
        }
        char list[256];
        snprintf(list, sizeof(list), ",%s,", controllers);
        if (strstr(list, ",cpu,") == NULL)
            continue;
        /* v1: the cpu controller is mounted as "cpu", "cpu,cpuacct" or "cpuacct,cpu"; in a
         * container its root is the container's own cgroup, so "/" counts too. */
        static const char *const mounts[] = {"cpu", "cpu,cpuacct", "cpuacct,cpu"};
        for (size_t i = 0; i < sizeof(mounts) / sizeof(mounts[0]); i++) {
            snprintf(base, sizeof(base), "%s/%s", root, mounts[i]);
            best = smaller_limit(best, limit_up_the_tree(base, path, NULL, read_cfs));
        }
    }
    fclose(f);
    return best;
}

unsigned bth_cpu_count(void)
{
    unsigned n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = (unsigned)CPU_COUNT(&set);
    if (n == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online > 0 ? (unsigned)online : 1;
    }
    unsigned quota = bth_cgroup_cpu_limit("/proc/self/cgroup", "/sys/fs/cgroup");
    if (quota > 0 && quota < n)
        n = quota;
    return n;
}
