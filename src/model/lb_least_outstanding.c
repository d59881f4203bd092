/* SPDX-License-Identifier: MIT */
/* Least outstanding requests: the target with the fewest requests in flight (one atomic per
 * target, shared by all workers) per unit of weight. Small groups are scanned, with ties
 * broken at random; larger ones use the power of two choices (Mitzenmacher), which is O(1)
 * and keeps workers that read the same counters from all herding onto one target. Stateless. */
#include "balancer.h"

#include "snapshot_types.h"
#include "target.h"

/* Draws for one P2C candidate before giving up on sampling and scanning instead: with half
 * the targets ineligible, sixteen misses in a row happen once in 65536 picks. */
#define P2C_DRAWS 16

struct load {
    uint64_t inflight_plus_one; /* +1: with nothing in flight, weight still decides */
    uint64_t weight;            /* BTH_LB_WEIGHT_SCALE units, > 0 */
};

static struct load load_of(const struct bth_target *t, const struct bth_lb_ctx *c)
{
    int n = atomic_load_explicit(&t->outstanding, memory_order_relaxed);
    struct load l = {(uint64_t)(n > 0 ? n : 0) + 1, bth_lb_weight(t, c)};
    return l;
}

/* -1, 0 or 1 as a carries less, as much or more load per weight than b. Cross-multiplied to
 * stay in integers: at most 2^31 requests times 2^20 weight units. */
static int compare(struct load a, struct load b)
{
    uint64_t x = a.inflight_plus_one * b.weight, y = b.inflight_plus_one * a.weight;
    return x < y ? -1 : x > y;
}

static struct bth_target *scan(const struct bth_snap_group *g, const struct bth_lb_ctx *c)
{
    struct bth_target *best = NULL;
    struct load best_load = {0, 0};
    unsigned ties = 0;
    for (size_t i = 0; i < g->ntargets; i++) {
        struct bth_target *t = g->targets[i];
        if (!bth_lb_eligible(t, c))
            continue;
        struct load l = load_of(t, c);
        int cmp = best == NULL ? -1 : compare(l, best_load);
        /* Reservoir sampling over the tied: each of k ties wins with probability 1/k. */
        if (cmp < 0 || (cmp == 0 && bth_rand_next(c->rand) % ++ties == 0)) {
            if (cmp < 0)
                ties = 1;
            best = t;
            best_load = l;
        }
    }
    return best;
}

/* An eligible target index other than <other> (-1: any), by rejection sampling; -1 when
 * P2C_DRAWS draws found none. */
static ptrdiff_t draw(const struct bth_snap_group *g, const struct bth_lb_ctx *c, ptrdiff_t other)
{
    size_t n = g->ntargets - (other >= 0);
    for (int k = 0; k < P2C_DRAWS; k++) {
        size_t i = (size_t)(bth_rand_next(c->rand) % n);
        if (other >= 0 && i >= (size_t)other)
            i++; /* uniform over the n - 1 indexes that are not <other> */
        if (bth_lb_eligible(g->targets[i], c))
            return (ptrdiff_t)i;
    }
    return -1;
}

static struct bth_target *lor_pick(const struct bth_snap_group *g, const struct bth_lb_ctx *c)
{
    if (g->ntargets <= BTH_LB_LOR_SCAN_MAX)
        return scan(g, c);
    /* Sampling finds two candidates when most targets are eligible; a group that is mostly
     * unhealthy, tried or failing open over a few survivors is scanned instead. */
    ptrdiff_t a = draw(g, c, -1);
    ptrdiff_t b = a >= 0 ? draw(g, c, a) : -1;
    if (b < 0)
        return scan(g, c);
    /* The draw order is random, so keeping a on a tie breaks ties at random. */
    struct bth_target *ta = g->targets[a], *tb = g->targets[b];
    return compare(load_of(tb, c), load_of(ta, c)) < 0 ? tb : ta;
}

const struct bth_lb_ops bth_lb_least_outstanding_ops = {
    .name = "least_outstanding_requests",
    .pick = lor_pick,
};
