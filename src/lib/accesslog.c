/* SPDX-License-Identifier: MIT */
/* Access log formatting. Lines are built in a per-worker buffer without allocation per
 * request and flushed with write(2) in whole lines, so workers never interleave a line. */
#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mem.h"

#define FLUSH_AT 4096

int bth_accesslog_open(struct bth_accesslog *log, const char *spec)
{
    log->fd = -1;
    if (spec == NULL || strcmp(spec, "stdout") == 0) {
        log->fd = STDOUT_FILENO;
        return 0;
    }
    if (strcmp(spec, "off") == 0)
        return 0;
    int fd = open(spec, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd == -1)
        return -errno;
    log->fd = fd;
    return 0;
}

void bth_accesslog_close(struct bth_accesslog *log)
{
    if (log->fd > STDERR_FILENO)
        close(log->fd);
    log->fd = -1;
}

int bth_accesslog_reopen(struct bth_accesslog *log, const char *spec)
{
    if (log->fd <= STDERR_FILENO || spec == NULL || strcmp(spec, "stdout") == 0 ||
        strcmp(spec, "off") == 0)
        return 0;
    int fd = open(spec, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd == -1)
        return -errno;
    int rc = dup2(fd, log->fd) == -1 ? -errno : 0;
    close(fd);
    return rc;
}

void bth_accesslog_buf_init(struct bth_accesslog_buf *b, struct bth_accesslog *sink)
{
    memset(b, 0, sizeof(*b));
    b->sink = sink;
}

void bth_accesslog_buf_fini(struct bth_accesslog_buf *b)
{
    bth_accesslog_flush(b);
    bth_free(b->data);
    b->data = NULL;
}

static int reserve(struct bth_accesslog_buf *b, size_t need)
{
    if (b->len + need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 8192;
    while (cap < b->len + need)
        cap *= 2;
    char *d = bth_realloc(b->data, cap);
    if (d == NULL)
        return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

static void put(struct bth_accesslog_buf *b, const char *s, size_t n)
{
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

/* A JSON string (quoted, escaped); NULL becomes "-" as in ALB logs. Reserves 6 bytes per
 * input byte in the worst case. */
static void put_str(struct bth_accesslog_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (s == NULL) {
        s = "-";
        n = 1;
    }
    if (reserve(b, n * 6 + 2) != 0)
        return;
    b->data[b->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            b->data[b->len++] = '\\';
            b->data[b->len++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(b, e, 6);
        } else {
            b->data[b->len++] = (char)c;
        }
    }
    b->data[b->len++] = '"';
}

static void put_cstr(struct bth_accesslog_buf *b, const char *s)
{
    put_str(b, s, s ? strlen(s) : 0);
}

static void put_fmt(struct bth_accesslog_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put_fmt(struct bth_accesslog_buf *b, const char *fmt, ...)
{
    if (reserve(b, 128) != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < b->cap - b->len)
        b->len += (size_t)n;
}

static void put_seconds(struct bth_accesslog_buf *b, double s)
{
    if (s < 0)
        put_fmt(b, "-1");
    else
        put_fmt(b, "%.6f", s);
}

void bth_accesslog_append(struct bth_accesslog_buf *b, const struct bth_accesslog_entry *e)
{
    if (b->sink == NULL || b->sink->fd < 0)
        return;
    if (reserve(b, 512) != 0)
        return;
    time_t sec = (time_t)(e->time_us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    put_fmt(b, "{\"type\":");
    put_cstr(b, e->type);
    put_fmt(b, ",\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%06dZ\",\"client\":", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
            (int)(e->time_us % 1000000));
    put_cstr(b, e->client);
    put_fmt(b, ",\"target\":");
    put_cstr(b, e->target);
    put_fmt(b, ",\"request_processing_time\":");
    put_seconds(b, e->request_processing_time);
    put_fmt(b, ",\"target_processing_time\":");
    put_seconds(b, e->target_processing_time);
    put_fmt(b, ",\"response_processing_time\":");
    put_seconds(b, e->response_processing_time);
    put_fmt(b, ",\"elb_status_code\":%d,\"target_status_code\":", e->elb_status_code);
    if (e->target_status_code < 0)
        put_fmt(b, "\"-\"");
    else
        put_fmt(b, "%d", e->target_status_code);
    put_fmt(b, ",\"received_bytes\":%llu,\"sent_bytes\":%llu,\"request\":",
            (unsigned long long)e->received_bytes, (unsigned long long)e->sent_bytes);
    /* ALB writes the request as "METHOD scheme://host:port/uri VERSION". */
    if (e->method != NULL) {
        char pre[384];
        /* The Host header usually carries the port already. */
        const char *host = e->host ? e->host : "-";
        const char *rb = strrchr(host, ']'), *colon = strrchr(host, ':');
        bool has_port = colon != NULL && (rb == NULL || colon > rb);
        int n = has_port ? snprintf(pre, sizeof(pre), "%s %s://%s", e->method, e->scheme, host)
                         : snprintf(pre, sizeof(pre), "%s %s://%s:%u", e->method, e->scheme, host,
                                    e->port);
        if (n < 0 || (size_t)n >= sizeof(pre))
            n = (int)strlen(pre);
        size_t ulen = e->uri_len, vlen = strlen(e->version);
        size_t total = (size_t)n + ulen + 1 + vlen;
        char *tmp = bth_malloc(total);
        if (tmp != NULL) {
            memcpy(tmp, pre, (size_t)n);
            memcpy(tmp + n, e->uri, ulen);
            tmp[(size_t)n + ulen] = ' ';
            memcpy(tmp + n + ulen + 1, e->version, vlen);
            put_str(b, tmp, total);
            bth_free(tmp);
        }
    } else {
        put_str(b, "- - -", 5);
    }
    put_fmt(b, ",\"user_agent\":");
    put_str(b, e->user_agent, e->user_agent_len);
    put_fmt(b, ",\"target_group\":");
    put_cstr(b, e->target_group);
    put_fmt(b, ",\"request_id\":");
    put_cstr(b, e->request_id);
    put_fmt(b, ",\"matched_rule\":");
    put_cstr(b, e->matched_rule);
    put_fmt(b, ",\"error_reason\":");
    put_cstr(b, e->error_reason);
    if (e->grpc_status >= 0)
        put_fmt(b, ",\"grpc_status\":%d", e->grpc_status);
    else
        put_fmt(b, ",\"grpc_status\":\"-\"");
    if (reserve(b, 2) == 0)
        put(b, "}\n", 2);
    if (b->len >= FLUSH_AT)
        bth_accesslog_flush(b);
}

void bth_accesslog_flush(struct bth_accesslog_buf *b)
{
    size_t off = 0;
    while (b->sink != NULL && b->sink->fd >= 0 && off < b->len) {
        ssize_t n = write(b->sink->fd, b->data + off, b->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* a full or broken log must not stall the data path */
        off += (size_t)n;
    }
    b->len = 0;
}
