/* SPDX-License-Identifier: MIT */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

#include "mem.h"

void bth_err_init(struct bth_err *err)
{
    err->msgs = NULL;
    err->n = 0;
}

void bth_err_add(struct bth_err *err, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL)
        return;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0)
        return;
    char *msg = bth_malloc((size_t)len + 1);
    char **msgs = bth_realloc(err->msgs, (err->n + 1) * sizeof(*msgs));
    if (msgs != NULL)
        err->msgs = msgs;
    /* Out of memory: losing one message beats failing differently than the caller expects. */
    if (msg == NULL || msgs == NULL) {
        bth_free(msg);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)len + 1, fmt, ap);
    va_end(ap);
    err->msgs[err->n++] = msg;
}

void bth_err_fini(struct bth_err *err)
{
    for (size_t i = 0; i < err->n; i++)
        bth_free(err->msgs[i]);
    bth_free(err->msgs);
    bth_err_init(err);
}
