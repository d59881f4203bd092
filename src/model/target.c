/* SPDX-License-Identifier: MIT */
/* Target objects: allocation and reference counting. */
#include "target.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "clock.h"
#include "mem.h"

struct bth_target *bth_target_create(const struct bth_addr *addr, unsigned weight,
                                     unsigned nworkers, bool dynamic)
{
    size_t size = sizeof(struct bth_target) + nworkers * sizeof(struct bth_upstream_pool);
    struct bth_target *t = aligned_alloc(64, (size + 63) & ~(size_t)63);
    if (t == NULL)
        return NULL;
    memset(t, 0, size);
    atomic_init(&t->refcnt, 1);
    atomic_init(&t->outstanding, 0);
    atomic_init(&t->active_conns, 0);
    atomic_init(&t->state, BTH_TARGET_UNAVAILABLE);
    atomic_init(&t->removed, false);
    /* Created able to take traffic (BTH_TARGET_UNAVAILABLE): slow start begins now. */
    atomic_init(&t->ready_since_ms, bth_clock_mono_ms());
    t->addr = *addr;
    t->weight = weight;
    t->dynamic = dynamic;
    t->npools = nworkers;
    return t;
}

void bth_target_ref(struct bth_target *t)
{
    atomic_fetch_add_explicit(&t->refcnt, 1, memory_order_relaxed);
}

void bth_target_unref(struct bth_target *t)
{
    if (t == NULL)
        return;
    if (atomic_fetch_sub_explicit(&t->refcnt, 1, memory_order_acq_rel) == 1) {
        for (unsigned i = 0; i < t->npools; i++)
            SSL_SESSION_free(t->pools[i].tls_session);
        bth_free(t);
    }
}

static bool state_takes_traffic(int s)
{
    return s == BTH_TARGET_HEALTHY || s == BTH_TARGET_UNAVAILABLE;
}

void bth_target_set_state(struct bth_target *t, enum bth_target_state st)
{
    int old = atomic_load_explicit(&t->state, memory_order_relaxed);
    /* Stamp before publishing the state; a worker that still reads the old stamp with the
     * new state gives the target its full weight for that one pick, which is harmless. */
    if (!state_takes_traffic(old) && state_takes_traffic((int)st))
        atomic_store_explicit(&t->ready_since_ms, bth_clock_mono_ms(), memory_order_relaxed);
    atomic_store_explicit(&t->state, (int)st, memory_order_release);
}

const char *bth_target_state_name(enum bth_target_state s)
{
    static const char *const names[] = {"initial", "healthy",  "unhealthy",
                                        "unused",  "draining", "unavailable"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}
