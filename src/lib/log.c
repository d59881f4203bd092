/* SPDX-License-Identifier: MIT */
/* Operational logging: "2026-11-26T11:00:00.123Z warn: message" on stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"

enum bth_log_level bth_log_threshold = BTH_LOG_INFO;

static const char *const level_names[] = {"err", "warn", "notice", "info", "debug"};

void bth_log_write(enum bth_log_level level, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    bth_clock_wall(&tv);
    gmtime_r(&tv.tv_sec, &tm);
    int n =
        snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s: ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000), level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

int bth_log_set_level(const char *name)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            bth_log_threshold = (enum bth_log_level)i;
            return 0;
        }
    }
    return -1;
}

static void on_libevent_log(int severity, const char *msg)
{
    enum bth_log_level level = severity >= EVENT_LOG_ERR    ? BTH_LOG_ERR
                               : severity >= EVENT_LOG_WARN ? BTH_LOG_WARN
                                                            : BTH_LOG_DEBUG;
    bth_log(level, "libevent: %s", msg);
}

void bth_log_init(void)
{
    event_set_log_callback(on_libevent_log);
}
