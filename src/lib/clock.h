/* SPDX-License-Identifier: MIT */
/* The one clock. Every deadline, duration and timestamp in berth is read here: the
 * monotonic clock for deadlines and durations (it never jumps), the wall clock only for what
 * people and other hosts read (log lines, access log times, cookie expiry, file names). Any
 * thread; no state. */
#ifndef BERTH_CLOCK_H
#define BERTH_CLOCK_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

/* Milliseconds on the monotonic clock. */
uint64_t bth_clock_mono_ms(void);

/* The monotonic clock at full precision (the durations of an exchange). */
void bth_clock_mono(struct timespec *ts);

/* Seconds from <a> to <b>, both from bth_clock_mono. */
double bth_clock_seconds_between(const struct timespec *a, const struct timespec *b);

/* The wall clock, to the microsecond (log lines, access log). */
void bth_clock_wall(struct timeval *tv);

/* Unix time in seconds (cookie expiry, names of set-aside files). */
int64_t bth_clock_unix_s(void);

#endif /* BERTH_CLOCK_H */
