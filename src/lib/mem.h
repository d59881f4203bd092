/* SPDX-License-Identifier: MIT */
/* Any thread. Allocation wrappers over the process allocator (jemalloc when linked).
 * All project allocations go through these so libevent, OpenSSL and berth share one
 * allocator and one place to count failures. */
#ifndef BERTH_MEM_H
#define BERTH_MEM_H

#include <stddef.h>

void *bth_malloc(size_t size);
void *bth_calloc(size_t n, size_t size);
void *bth_realloc(void *p, size_t size);
void bth_free(void *p);
/* Returns a heap copy of <s> (NULL in, NULL out), or NULL when out of memory. */
char *bth_strdup(const char *s);
char *bth_strndup(const char *s, size_t n);

/* Routes libevent's and OpenSSL's allocations through the wrappers above.
 * Main thread, before any other library call. */
void bth_mem_init(void);

#endif /* BERTH_MEM_H */
