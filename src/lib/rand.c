/* SPDX-License-Identifier: MIT */
#include "rand.h"

#include <sys/random.h>

void bth_rand_seed(struct bth_rand *r, uint64_t salt)
{
    if (getrandom(&r->s, sizeof(r->s), 0) != sizeof(r->s) || r->s == 0)
        r->s = 0x9E3779B97F4A7C15ULL ^ salt;
    if (r->s == 0)
        r->s = 0x243F6A8885A308D3ULL;
}
