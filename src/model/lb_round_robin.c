/* SPDX-License-Identifier: MIT */
/* Smooth weighted round robin (nginx ngx_http_upstream_get_peer): each pick adds every
 * eligible target's weight to its counter, takes the largest counter and takes the total off
 * it, so weights 5,1,1 give a a b a c a a instead of a burst of five. Counters are per worker
 * (one cache-line-aligned row each): workers never share a line and never lock. With equal
 * weights and no slow start a per-worker cursor replaces the counters (O(1) per pick); a
 * weighted group of EDF_MIN_TARGETS or more uses an earliest-deadline-first heap per worker
 * instead (O(log n) per pick, the scheduler Envoy uses for weighted round robin): each target
 * is due again EDF_UNIT / weight after its turn, so its share follows its weight and its
 * turns spread evenly. */
#include "balancer.h"

#include <string.h>

#include "mem.h"
#include "snapshot_types.h"
#include "target.h"

#define CACHE_LINE      64u
#define EDF_MIN_TARGETS 64 /* smaller weighted groups keep nginx's exact smooth sequence */
#define EDF_UNIT        (UINT64_C(1) << 32)
#define EDF_REBASE      (UINT64_C(1) << 62)

/* One smooth round-robin step over the counters <cur> of <g>; returns the index picked or
 * -1 when no target is eligible. */
static ptrdiff_t step(int64_t *cur, const struct bth_snap_group *g, const struct bth_lb_ctx *c)
{
    int64_t total = 0;
    ptrdiff_t best = -1;
    for (size_t i = 0; i < g->ntargets; i++) {
        const struct bth_target *t = g->targets[i];
        if (!bth_lb_eligible(t, c))
            continue;
        int64_t wt = (int64_t)bth_lb_weight(t, c);
        cur[i] += wt;
        total += wt;
        if (best < 0 || cur[i] > cur[best])
            best = (ptrdiff_t)i;
    }
    if (best >= 0)
        cur[best] -= total;
    return best;
}

/* Equal weights and no slow start, the common case for container tasks: smooth round robin
 * degenerates to plain rotation, which a cursor gives in O(1) (skipping ineligible targets)
 * instead of a pass over every target per request. Worker k starts at target k. */
static bool uniform(const struct bth_snap_group *g)
{
    if (g->cfg->slow_start_ms != 0)
        return false;
    for (size_t i = 1; i < g->ntargets; i++) {
        if (g->targets[i]->weight != g->targets[0]->weight)
            return false;
    }
    return true;
}

static struct bth_target *cursor_pick(int64_t *cursor, const struct bth_snap_group *g,
                                      const struct bth_lb_ctx *c)
{
    size_t n = g->ntargets, i = (size_t)*cursor < n ? (size_t)*cursor : 0;
    for (size_t seen = 0; seen < n; seen++) {
        struct bth_target *t = g->targets[i];
        if (++i == n)
            i = 0;
        if (bth_lb_eligible(t, c)) {
            *cursor = (int64_t)i;
            return t;
        }
    }
    return NULL;
}

/* ---- earliest deadline first, for large weighted groups -------------------------------- */

static bool edf_before(const struct bth_edf_entry *a, const struct bth_edf_entry *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->idx < b->idx);
}

static void edf_sift_down(struct bth_edf_entry *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && edf_before(&h[l], &h[m]))
            m = l;
        if (r < n && edf_before(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        struct bth_edf_entry tmp = h[i];
        h[i] = h[m];
        h[m] = tmp;
        i = m;
    }
}

/* The gap to a target's next turn: ineligible targets (weight 0, draining, unhealthy) move
 * on by their configured weight, so they come up again in turn but never take one. */
static uint64_t edf_step(const struct bth_target *t, const struct bth_lb_ctx *c, bool eligible)
{
    uint64_t w = eligible ? bth_lb_weight(t, c) : (uint64_t)t->weight * BTH_LB_WEIGHT_SCALE;
    return EDF_UNIT / (w ? w : 1);
}

/* Gives the turn to the first eligible target due; NULL after a whole round of none. */
static struct bth_target *edf_pick(struct bth_edf_entry *h, const struct bth_snap_group *g,
                                   const struct bth_lb_ctx *c)
{
    size_t n = g->ntargets;
    for (size_t tries = 0; tries < n; tries++) {
        if (h[0].deadline >= EDF_REBASE) {
            uint64_t base = h[0].deadline; /* the minimum: keep the order, shed the past */
            for (size_t i = 0; i < n; i++)
                h[i].deadline -= base;
        }
        struct bth_target *t = g->targets[h[0].idx];
        bool ok = bth_lb_eligible(t, c);
        h[0].deadline += edf_step(t, c, ok);
        edf_sift_down(h, n, 0);
        if (ok)
            return t;
    }
    return NULL;
}

/* Row <h> with every target due after one step of its configured weight. */
static void edf_init(struct bth_edf_entry *h, const struct bth_snap_group *g)
{
    struct bth_lb_ctx c = {.fail_open = true};
    size_t n = g->ntargets;
    for (size_t i = 0; i < n; i++)
        h[i] = (struct bth_edf_entry){edf_step(g->targets[i], &c, false), (uint32_t)i};
    for (size_t i = n / 2; i-- > 0;)
        edf_sift_down(h, n, i);
}

/* <nrows> rows of <per_row> entries of <size> bytes, each row a whole number of cache lines
 * so no two workers share one. Sets <*mem> (to free) and returns the first aligned row, or
 * NULL when out of memory; <*stride> is the row length in entries. */
static void *alloc_rows(unsigned nrows, size_t per_row, size_t size, size_t *stride, void **mem)
{
    size_t per_line = CACHE_LINE / size;
    *stride = (per_row + per_line - 1) / per_line * per_line;
    *mem = bth_calloc(1, (size_t)nrows * *stride * size + CACHE_LINE);
    if (*mem == NULL)
        return NULL;
    return (void *)(((uintptr_t)*mem + CACHE_LINE - 1) & ~(uintptr_t)(CACHE_LINE - 1));
}

/* One heap per worker; worker k starts k turns in. */
static int edf_alloc(struct bth_lb_state *st, const struct bth_snap_group *g, unsigned nworkers)
{
    size_t stride;
    void *mem;
    struct bth_edf_entry *rows = alloc_rows(nworkers, g->ntargets, sizeof(*rows), &stride, &mem);
    if (rows == NULL)
        return -1;
    struct bth_lb_ctx c = {.fail_open = true};
    for (unsigned k = 0; k < nworkers; k++) {
        struct bth_edf_entry *row = rows + (size_t)k * stride;
        edf_init(row, g);
        for (unsigned j = 0; j < k; j++)
            edf_pick(row, g, &c);
    }
    st->rr_mem = mem;
    st->rr_heap = rows;
    st->rr_stride = stride;
    st->rr_nrows = nworkers;
    return 0;
}

/* Every worker starting from zeroed counters would send its first request after each new
 * snapshot to the same heaviest target. Worker k starts k steps into the sequence instead:
 * with equal weights, worker k begins at target k. Steps use the configured weights and
 * count every target of non-zero weight. */
static int rr_init(struct bth_lb_state *st, const struct bth_snap_group *g, unsigned nworkers)
{
    if (g->ntargets == 0 || nworkers == 0)
        return 0;
    bool cursor = uniform(g);
    if (!cursor && g->ntargets >= EDF_MIN_TARGETS)
        return edf_alloc(st, g, nworkers);
    size_t stride;
    void *mem;
    int64_t *rows = alloc_rows(nworkers, cursor ? 1 : g->ntargets, sizeof(*rows), &stride, &mem);
    if (rows == NULL)
        return -1;
    /* Failing open counts every target that is not draining, whatever its health: health
     * changes without a new snapshot, so the phase should not depend on it. */
    struct bth_lb_ctx c = {.fail_open = true};
    for (unsigned k = 0; cursor && k < nworkers; k++)
        rows[(size_t)k * stride] = (int64_t)(k % g->ntargets);
    for (unsigned k = 1; !cursor && k < nworkers; k++) {
        int64_t *row = rows + (size_t)k * stride;
        memcpy(row, row - stride, g->ntargets * sizeof(int64_t));
        step(row, g, &c);
    }
    st->rr_mem = mem;
    st->rr_rows = rows;
    st->rr_stride = stride;
    st->rr_nrows = nworkers;
    st->rr_cursor = cursor;
    return 0;
}

static struct bth_target *rr_pick(const struct bth_snap_group *g, const struct bth_lb_ctx *c)
{
    const struct bth_lb_state *st = g->lb;
    /* A worker the snapshot was not sized for must not share another worker's row. */
    if (c->row >= st->rr_nrows)
        return bth_lb_pick_weighted_scan(g, c);
    if (st->rr_heap != NULL)
        return edf_pick(st->rr_heap + (size_t)c->row * st->rr_stride, g, c);
    int64_t *cur = st->rr_rows + (size_t)c->row * st->rr_stride;
    if (st->rr_cursor)
        return cursor_pick(cur, g, c);
    ptrdiff_t i = step(cur, g, c);
    return i >= 0 ? g->targets[i] : NULL;
}

static void rr_destroy(struct bth_lb_state *st)
{
    bth_free(st->rr_mem);
    st->rr_mem = NULL;
    st->rr_rows = NULL;
    st->rr_heap = NULL;
}

const struct bth_lb_ops bth_lb_round_robin_ops = {
    .name = "round_robin",
    .init = rr_init,
    .pick = rr_pick,
    .destroy = rr_destroy,
};
