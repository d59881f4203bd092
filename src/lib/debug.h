/* SPDX-License-Identifier: MIT */
/* Checks of internal invariants (state machine transitions and the like) that debug builds
 * (CMAKE_BUILD_TYPE=Debug, which CI's sanitizer build is) abort on, and release builds
 * compile away: input can never reach them, only a bug can, and berth must not die in
 * production for a check. */
#ifndef BERTH_DEBUG_H
#define BERTH_DEBUG_H

#ifdef BTH_DEBUG
#include <assert.h>
#define bth_debug_assert(cond) assert(cond)
#else
#define bth_debug_assert(cond) ((void)0)
#endif

#endif /* BERTH_DEBUG_H */
