/* SPDX-License-Identifier: MIT */
/* The one error type: a list of messages, each "FILE:LINE:COL: message" (or "FILE: message"),
 * collected whole so a config check or a reload reports every problem at once, not the
 * first. The thread that owns the list. */
#ifndef BERTH_ERR_H
#define BERTH_ERR_H

#include <stddef.h>

struct bth_err {
    char **msgs; /* owned */
    size_t n;
};

void bth_err_init(struct bth_err *err);
/* Appends one formatted message (dropped when out of memory). <err> may be NULL. */
void bth_err_add(struct bth_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void bth_err_fini(struct bth_err *err);

#endif /* BERTH_ERR_H */
