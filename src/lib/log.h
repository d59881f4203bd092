/* SPDX-License-Identifier: MIT */
/* Any thread. Operational log to stderr with levels; one line per call, written with a
 * single write(2) so lines from workers never interleave. */
#ifndef BERTH_LOG_H
#define BERTH_LOG_H

enum bth_log_level {
    BTH_LOG_ERR = 0,
    BTH_LOG_WARN,
    BTH_LOG_NOTICE,
    BTH_LOG_INFO,
    BTH_LOG_DEBUG,
};

extern enum bth_log_level bth_log_threshold;

void bth_log_write(enum bth_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Cheap level test first, so debug lines cost nothing when off. */
#define bth_log(level, ...)                                                                        \
    do {                                                                                           \
        if ((level) <= bth_log_threshold)                                                          \
            bth_log_write((level), __VA_ARGS__);                                                   \
    } while (0)

/* Parses "err|warn|notice|info|debug"; returns 0 or -1. */
int bth_log_set_level(const char *name);

/* Sends libevent's own messages through bth_log. Main thread, at start. */
void bth_log_init(void);

#endif /* BERTH_LOG_H */
