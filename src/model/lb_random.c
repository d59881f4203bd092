/* SPDX-License-Identifier: MIT */
/* Weighted random: each target with probability proportional to its (slow-start) weight. A
 * draw is a binary search over prefix sums of the configured weights built with the
 * snapshot, then thinning: a target in slow start is kept with probability weight now /
 * configured weight, and an ineligible one is redrawn. Accepted draws are exactly
 * proportional to the current weights; after a few rejections a scan decides instead. */
#include "balancer.h"

#include "mem.h"
#include "snapshot_types.h"
#include "target.h"

/* With half the configured weight ineligible, one pick in sixteen ends in the scan. */
#define WR_DRAWS 4

static int wr_init(struct bth_lb_state *st, const struct bth_snap_group *g, unsigned nworkers)
{
    if (g->ntargets == 0)
        return 0;
    st->wr_prefix = bth_calloc(g->ntargets, sizeof(*st->wr_prefix));
    if (st->wr_prefix == NULL)
        return -1;
    uint64_t sum = 0;
    for (size_t i = 0; i < g->ntargets; i++) {
        sum += g->targets[i]->weight;
        st->wr_prefix[i] = sum;
    }
    st->wr_total = sum;
    return 0;
}

/* The first index whose prefix sum exceeds <r> (< total): the target owning point r. */
static size_t find(const uint64_t *prefix, size_t n, uint64_t r)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (prefix[mid] > r)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static struct bth_target *wr_pick(const struct bth_snap_group *g, const struct bth_lb_ctx *c)
{
    const struct bth_lb_state *st = g->lb;
    for (int k = 0; st->wr_total > 0 && k < WR_DRAWS; k++) {
        struct bth_target *t =
            g->targets[find(st->wr_prefix, g->ntargets, bth_rand_next(c->rand) % st->wr_total)];
        if (!bth_lb_eligible(t, c))
            continue;
        if (c->slow_start_ms > 0) {
            uint64_t full = (uint64_t)t->weight * BTH_LB_WEIGHT_SCALE;
            uint64_t now = bth_lb_weight(t, c);
            if (now < full && bth_rand_next(c->rand) % full >= now)
                continue;
        }
        return t;
    }
    return bth_lb_pick_weighted_scan(g, c);
}

static void wr_destroy(struct bth_lb_state *st)
{
    bth_free(st->wr_prefix);
    st->wr_prefix = NULL;
}

const struct bth_lb_ops bth_lb_weighted_random_ops = {
    .name = "weighted_random",
    .init = wr_init,
    .pick = wr_pick,
    .destroy = wr_destroy,
};
