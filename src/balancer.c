/* SPDX-License-Identifier: MIT */
/* Balancing: weighted group choice and round robin over a group's targets. */
#include "balancer.h"

#include <stdbool.h>

#include "snapshot.h"
#include "target.h"
#include "worker.h"

struct bth_snap_group *bth_lb_pick_group(struct bth_worker *w, const struct bth_snap_action *a)
{
    if (a->nforwards == 1)
        return a->forwards[0].weight > 0 || a->total_weight == 0 ? a->forwards[0].group : NULL;
    if (a->total_weight == 0)
        return NULL;
    unsigned r = (unsigned)(bth_worker_random(w) % a->total_weight);
    for (size_t i = 0; i < a->nforwards; i++) {
        if (r < a->forwards[i].weight)
            return a->forwards[i].group;
        r -= a->forwards[i].weight;
    }
    return NULL;
}

static bool was_tried(const struct bth_target *t, struct bth_target *const *tried, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (tried[i] == t)
            return true;
    }
    return false;
}

struct bth_target *bth_lb_pick_target(struct bth_worker *w, struct bth_snap_group *g,
                                      struct bth_target *const *tried, size_t ntried)
{
    size_t n = g->ntargets;
    if (n == 0)
        return NULL;
    unsigned start = atomic_fetch_add_explicit(&g->rr_next, 1, memory_order_relaxed);
    for (size_t k = 0; k < n; k++) {
        struct bth_target *t = g->targets[(start + k) % n];
        if (bth_target_takes_traffic(t) && !was_tried(t, tried, ntried))
            return t;
    }
    return NULL;
}
