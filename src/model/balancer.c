/* SPDX-License-Identifier: MIT */
/* Balancing: weighted group choice, the algorithm table, slow start and fail-open. The
 * algorithms live in lb_round_robin.c, lb_least_outstanding.c and lb_random.c. */
#include "balancer.h"

#include "clock.h"
#include "mem.h"
#include "snapshot_types.h"
#include "target.h"

/* Indexed by enum bth_algorithm. */
static const struct bth_lb_ops *const lb_ops[] = {
    [BTH_ALG_ROUND_ROBIN] = &bth_lb_round_robin_ops,
    [BTH_ALG_LEAST_OUTSTANDING] = &bth_lb_least_outstanding_ops,
    [BTH_ALG_WEIGHTED_RANDOM] = &bth_lb_weighted_random_ops,
    /* flow_hash is for NLB listeners, whose proxies hash the flow themselves; an HTTP
     * listener forwarding to such a group rotates through it like round robin. */
    [BTH_ALG_FLOW_HASH] = &bth_lb_round_robin_ops,
};

static const struct bth_lb_ops *ops_for(enum bth_algorithm alg)
{
    if ((unsigned)alg < sizeof(lb_ops) / sizeof(lb_ops[0]) && lb_ops[alg] != NULL)
        return lb_ops[alg];
    return &bth_lb_round_robin_ops;
}

struct bth_snap_group *bth_lb_pick_group(struct bth_rand *rand, const struct bth_snap_action *a)
{
    if (a->nforwards == 1)
        return a->forwards[0].weight > 0 || a->total_weight == 0 ? a->forwards[0].group : NULL;
    if (a->total_weight == 0)
        return NULL;
    unsigned r = (unsigned)(bth_rand_next(rand) % a->total_weight);
    for (size_t i = 0; i < a->nforwards; i++) {
        if (r < a->forwards[i].weight)
            return a->forwards[i].group;
        r -= a->forwards[i].weight;
    }
    return NULL;
}

/* Whether some target of <g> takes traffic, tried or not: if so, the group is not failing
 * open, even when every such target was already tried by this request. */
static bool any_takes_traffic(const struct bth_snap_group *g)
{
    for (size_t i = 0; i < g->ntargets; i++) {
        const struct bth_target *t = g->targets[i];
        if (t->weight > 0 && bth_target_takes_traffic(t) &&
            !atomic_load_explicit(&t->removed, memory_order_relaxed))
            return true;
    }
    return false;
}

struct bth_target *bth_lb_pick_target(unsigned row, struct bth_rand *rand, struct bth_snap_group *g,
                                      struct bth_target *const *tried, size_t ntried)
{
    if (g->ntargets == 0)
        return NULL;
    struct bth_lb_ctx c = {
        .row = row,
        .rand = rand,
        .tried = tried,
        .ntried = ntried,
        .slow_start_ms = g->cfg->slow_start_ms,
    };
    if (c.slow_start_ms > 0)
        c.now_ms = bth_clock_mono_ms();
    struct bth_target *(*pick)(const struct bth_snap_group *, const struct bth_lb_ctx *) =
        g->lb != NULL ? g->lb->ops->pick : bth_lb_pick_weighted_scan;
    struct bth_target *t = pick(g, &c);
    /* The second pass costs a scan, but only on the path that would otherwise answer 503. */
    if (t == NULL && !any_takes_traffic(g)) {
        c.fail_open = true;
        t = pick(g, &c);
    }
    return t;
}

struct bth_target *bth_lb_pick_weighted_scan(const struct bth_snap_group *g,
                                             const struct bth_lb_ctx *c)
{
    uint64_t total = 0;
    for (size_t i = 0; i < g->ntargets; i++) {
        if (bth_lb_eligible(g->targets[i], c))
            total += bth_lb_weight(g->targets[i], c);
    }
    if (total == 0)
        return NULL;
    uint64_t r = bth_rand_next(c->rand) % total;
    struct bth_target *last = NULL;
    for (size_t i = 0; i < g->ntargets; i++) {
        struct bth_target *t = g->targets[i];
        /* Health may change between the scans; then r can outrun the total and the last
         * eligible target takes the pick, a bias of one request per health change. */
        if (!bth_lb_eligible(t, c))
            continue;
        uint64_t wt = bth_lb_weight(t, c);
        if (r < wt)
            return t;
        r -= wt;
        last = t;
    }
    return last;
}

/* Whether <t> is still ramping up at <now>; ready_since_ms 0 means it never has to. */
static bool ramping(const struct bth_target *t, uint64_t now, uint64_t slow_start_ms)
{
    uint64_t since = atomic_load_explicit(&t->ready_since_ms, memory_order_relaxed);
    return since != 0 && (now < since || now - since < slow_start_ms);
}

void bth_lb_slow_start_settle(struct bth_target *const *targets, size_t n, uint64_t slow_start_ms)
{
    if (slow_start_ms == 0)
        return;
    uint64_t now = bth_clock_mono_ms();
    for (size_t i = 0; i < n; i++) {
        const struct bth_target *t = targets[i];
        if (t->weight > 0 && bth_target_takes_traffic(t) &&
            !atomic_load_explicit(&t->removed, memory_order_relaxed) &&
            !ramping(t, now, slow_start_ms))
            return; /* a full-weight target carries what the others ramp up from */
    }
    for (size_t i = 0; i < n; i++) {
        if (ramping(targets[i], now, slow_start_ms))
            atomic_store_explicit(&targets[i]->ready_since_ms, 0, memory_order_relaxed);
    }
}

int bth_lb_group_init(struct bth_snap_group *g, unsigned nworkers)
{
    bth_lb_slow_start_settle(g->targets, g->ntargets, g->cfg->slow_start_ms);
    struct bth_lb_state *st = bth_calloc(1, sizeof(*st));
    if (st == NULL)
        return -1;
    st->ops = ops_for(g->cfg->algorithm);
    if (st->ops->init != NULL && st->ops->init(st, g, nworkers) != 0) {
        bth_free(st);
        return -1;
    }
    g->lb = st;
    return 0;
}

void bth_lb_group_fini(struct bth_snap_group *g)
{
    struct bth_lb_state *st = g->lb;
    if (st == NULL)
        return;
    if (st->ops->destroy != NULL)
        st->ops->destroy(st);
    bth_free(st);
    g->lb = NULL;
}

bool bth_lb_group_failing_open(const struct bth_snap_group *g)
{
    return bth_lb_targets_failing_open(g->targets, g->ntargets);
}

bool bth_lb_targets_failing_open(struct bth_target *const *targets, size_t n)
{
    bool unhealthy = false;
    for (size_t i = 0; i < n; i++) {
        if (bth_target_takes_traffic(targets[i]))
            return false;
        unhealthy |=
            atomic_load_explicit(&targets[i]->state, memory_order_relaxed) == BTH_TARGET_UNHEALTHY;
    }
    return unhealthy;
}
