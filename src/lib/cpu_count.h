/* SPDX-License-Identifier: MIT */
/* Main thread, at start-up. How many CPUs berth may really use, for `workers: auto`: the
 * CPUs of its affinity mask, bounded by a cgroup CPU quota (v2 cpu.max, v1 cfs_quota_us)
 * rounded up, so a 0.5-CPU container task gets one worker, not one per host CPU. */
#ifndef BERTH_CPU_COUNT_H
#define BERTH_CPU_COUNT_H

/* The CPUs this process may use (at least 1). */
unsigned bth_cpu_count(void);

/* The CPU quota of the cgroup that <self_cgroup> (a /proc/self/cgroup file) names, under the
 * cgroup mount <root> ("/sys/fs/cgroup"), rounded up to whole CPUs; 0 when there is none.
 * The smallest quota on the way up to the root counts. For tests: any files will do. */
unsigned bth_cgroup_cpu_limit(const char *self_cgroup, const char *root);

#endif /* BERTH_CPU_COUNT_H */
