/* SPDX-License-Identifier: MIT */
#include "clock.h"

uint64_t bth_clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void bth_clock_mono(struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
}

double bth_clock_seconds_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

void bth_clock_wall(struct timeval *tv)
{
    gettimeofday(tv, NULL);
}

int64_t bth_clock_unix_s(void)
{
    return (int64_t)time(NULL);
}
