/* SPDX-License-Identifier: MIT */
/* Labelled counter blocks. */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

#include "mem.h"

const double bth_stats_rt_bounds[BTH_RT_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                    0.1,   0.25,   0.5,   1,    2.5,   10};

struct bth_stats *bth_stats_create(const char *name, unsigned nworkers)
{
    unsigned nrows = nworkers + 1; /* the last row is the main thread's */
    size_t size = sizeof(struct bth_stats) + nrows * sizeof(struct bth_stats_row);
    struct bth_stats *st = aligned_alloc(64, (size + 63) & ~(size_t)63);
    if (st == NULL)
        return NULL;
    memset(st, 0, size);
    st->name = bth_strdup(name);
    if (st->name == NULL) {
        bth_free(st);
        return NULL;
    }
    atomic_init(&st->refcnt, 1);
    st->nrows = nrows;
    return st;
}

void bth_stats_ref(struct bth_stats *st)
{
    atomic_fetch_add_explicit(&st->refcnt, 1, memory_order_relaxed);
}

void bth_stats_unref(struct bth_stats *st)
{
    if (st != NULL && atomic_fetch_sub_explicit(&st->refcnt, 1, memory_order_acq_rel) == 1) {
        bth_free(st->name);
        bth_free(st);
    }
}

void bth_stats_observe_rt(struct bth_stats *st, unsigned row, uint64_t us)
{
    bth_stats_add(st, row, BTH_ST_RT_SUM_US, us);
    bth_stats_add(st, row, BTH_ST_RT_COUNT, 1);
    for (int i = 0; i < BTH_RT_BUCKETS; i++) {
        if ((double)us <= bth_stats_rt_bounds[i] * 1e6) {
            bth_stats_add(st, row, (enum bth_stat)(BTH_ST_RT_BUCKET0 + i), 1);
            break;
        }
    }
}

uint64_t bth_stats_sum(const struct bth_stats *st, enum bth_stat k)
{
    uint64_t acc = 0;
    for (unsigned i = 0; i < st->nrows; i++)
        acc += atomic_load_explicit(&st->rows[i].v[k], memory_order_relaxed);
    return acc;
}
