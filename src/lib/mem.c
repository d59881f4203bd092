/* SPDX-License-Identifier: MIT */
/* Allocation wrappers. With BERTH_WITH_JEMALLOC the binary links jemalloc, which replaces
 * malloc() itself, so these are thin and inlinable by LTO; they exist so there is one
 * allocation seam for libevent and OpenSSL too. */
#include "mem.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/crypto.h>

#ifdef BERTH_WITH_JEMALLOC
/* jemalloc reads this at its first allocation. A burst of connections leaves freed pages
 * behind; the background thread purges them (dirty pages after 5 s, then straight back to
 * the kernel), so RSS returns to its baseline once load ends, without a request having to
 * come along and trigger the purge. */
const char *malloc_conf = "background_thread:true,dirty_decay_ms:5000,muzzy_decay_ms:0";
#endif

void *bth_malloc(size_t size)
{
    return malloc(size);
}

void *bth_calloc(size_t n, size_t size)
{
    return calloc(n, size);
}

void *bth_realloc(void *p, size_t size)
{
    return realloc(p, size);
}

void bth_free(void *p)
{
    free(p);
}

char *bth_strndup(const char *s, size_t n)
{
    if (s == NULL)
        return NULL;
    char *d = malloc(n + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *bth_strdup(const char *s)
{
    return s == NULL ? NULL : bth_strndup(s, strlen(s));
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
    return malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    return realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
    free(p);
}

void bth_mem_init(void)
{
    event_set_mem_functions(bth_malloc, bth_realloc, bth_free);
    CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free);
}
