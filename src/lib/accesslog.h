/* SPDX-License-Identifier: MIT */
/* The access log: one JSON object per request, fields named as in ALB access logs.
 * The sink (struct bth_accesslog) is created by the main thread; each worker formats into
 * its own buffer (struct bth_accesslog_buf) and writes whole lines with one write(2). */
#ifndef BERTH_ACCESSLOG_H
#define BERTH_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

struct bth_accesslog {
    int fd; /* owned unless it is stdout; -1 when off */
};

struct bth_accesslog_buf {
    struct bth_accesslog *sink; /* borrowed */
    char *data;                 /* owned */
    size_t len;
    size_t cap;
};

/* One request's record; every string is borrowed for the call only and may be NULL. */
struct bth_accesslog_entry {
    const char *type; /* "http" */
    int64_t time_us;  /* wall clock at request end */
    const char *client;
    const char *target;
    double request_processing_time; /* seconds, -1 when not applicable */
    double target_processing_time;
    double response_processing_time;
    int elb_status_code;
    int target_status_code; /* -1 when none */
    uint64_t received_bytes;
    uint64_t sent_bytes;
    const char *method;
    const char *scheme;
    const char *host;
    unsigned port;
    const char *uri;
    size_t uri_len;
    const char *version;
    const char *user_agent;
    size_t user_agent_len;
    const char *target_group;
    const char *request_id;
    const char *matched_rule;
    const char *error_reason;
    int grpc_status; /* a gRPC call's grpc-status, -1 when not a gRPC call or unknown */
};

/* <spec> is "stdout", "off" or a file path (opened for append). Returns 0 or -errno. */
int bth_accesslog_open(struct bth_accesslog *log, const char *spec);
void bth_accesslog_close(struct bth_accesslog *log);
/* Reopens a file log in place (SIGUSR1, after rotation): the new file takes over the same
 * descriptor number with dup2, so workers never see a closed fd. Main thread. Returns 0 or
 * -errno. */
int bth_accesslog_reopen(struct bth_accesslog *log, const char *spec);

void bth_accesslog_buf_init(struct bth_accesslog_buf *b, struct bth_accesslog *sink);
void bth_accesslog_buf_fini(struct bth_accesslog_buf *b);
/* Formats <e> into the buffer; writes out when the buffer passes a few KiB. Worker. */
void bth_accesslog_append(struct bth_accesslog_buf *b, const struct bth_accesslog_entry *e);
/* Writes buffered lines (called once per loop iteration batch and at exit). Worker. */
void bth_accesslog_flush(struct bth_accesslog_buf *b);

#endif /* BERTH_ACCESSLOG_H */
