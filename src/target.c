/* SPDX-License-Identifier: MIT */
/* Target objects: allocation and reference counting. */
#include "target.h"

#include <stdlib.h>
#include <string.h>

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
    if (atomic_fetch_sub_explicit(&t->refcnt, 1, memory_order_acq_rel) == 1)
        bth_free(t);
}

const char *bth_target_state_name(enum bth_target_state s)
{
    static const char *const names[] = {"initial",  "healthy",     "unhealthy",
                                        "unused",   "draining",    "unavailable"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}
