/* SPDX-License-Identifier: MIT */
/* The `berth ctl` client: one control-API call over the Unix socket per invocation (two or
 * more for `health` without a group). Runs in its own short-lived process; no threads. */
#ifndef BERTH_CTL_H
#define BERTH_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Most columns bth_ctl_print_table() lays out. */
#define BTH_CTL_TABLE_MAX_COLS 8

/* One HTTP response as the client keeps it. */
struct bth_ctl_resp {
    int status;      /* 100..999 */
    char *body;      /* owned (bth_malloc), NUL-terminated, chunked framing removed */
    size_t body_len; /* without the NUL */
};

/* Runs `berth ctl ARGS`; <argv> starts after "ctl". Returns the process exit status: 0, 1
 * when the call failed (berth unreachable or an API error), 2 on a usage error. */
int bth_ctl_main(int argc, char **argv);

/* Parses "10.0.1.5:8080", "[fd00::5]:8080" or "Id=10.0.1.5,Port=8080" into an id and a
 * port. Returns 0 or -1. */
int bth_ctl_parse_target(const char *s, char *id, unsigned idsz, unsigned *port);

/* Parses the HTTP/1.1 response held in <buf>[0, <len>). <eof> says the server has closed the
 * connection, which ends a body framed by neither Content-Length nor chunked encoding. The
 * body may be chunked (RFC 9112 §7.1). Returns 1 with <resp> filled (the caller then owns
 * resp->body; free with bth_ctl_resp_fini), 0 when more bytes are needed, -1 when the
 * response is malformed or, at <eof>, truncated. */
int bth_ctl_parse_response(const char *buf, size_t len, bool eof, struct bth_ctl_resp *resp);

/* Frees what bth_ctl_parse_response() left in <resp>; idempotent. */
void bth_ctl_resp_fini(struct bth_ctl_resp *resp);

/* Writes a table to <out>: the header <head> then <nrows> rows of <ncols> cells taken
 * row-major from <cells> (a NULL cell prints "-"). Columns are as wide as their widest cell
 * and two spaces apart; the last one is not padded, so lines carry no trailing blanks.
 * Returns 0, or -1 when <ncols> is 0 or above BTH_CTL_TABLE_MAX_COLS. */
int bth_ctl_print_table(FILE *out, const char *const *head, size_t ncols, const char *const *cells,
                        size_t nrows);

#endif /* BERTH_CTL_H */
