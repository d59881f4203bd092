/* SPDX-License-Identifier: MIT */
/* The one fast random generator (xorshift64*): request ids, weighted choices, tie breaks,
 * health-check jitter. Not for secrets (sticky.c's keys come from getrandom). Each thread
 * keeps its own state, so no call ever locks or shares a cache line. */
#ifndef BERTH_RAND_H
#define BERTH_RAND_H

#include <stdint.h>

struct bth_rand {
    uint64_t s; /* never 0 */
};

/* Seeds <r> from getrandom(); <salt> only matters when that fails. Any thread. */
void bth_rand_seed(struct bth_rand *r, uint64_t salt);

/* The next number. The thread that owns <r>. */
static inline uint64_t bth_rand_next(struct bth_rand *r)
{
    uint64_t x = r->s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    r->s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

#endif /* BERTH_RAND_H */
