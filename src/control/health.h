/* SPDX-License-Identifier: MIT */
/* Main thread only. Active health checks (HTTP, HTTPS, TCP) with ELB's state machine and
 * reason codes, and passive checks (outlier ejection from the counts workers keep on each
 * target). Checks run on the main event loop with fresh, non-blocking connections that are
 * closed afterwards; no data-plane connection is ever used. Workers see the results through
 * each target's atomic state and through the snapshots the app publishes on changes. A
 * group entering or leaving fail open (balancer.h) is logged here, once per transition. */
#ifndef BERTH_HEALTH_H
#define BERTH_HEALTH_H

struct event_base;
struct bth_registry;
struct bth_target;
struct bth_health;

/* Called (at most once per loop iteration) when target states changed, so the caller can
 * publish a snapshot. */
typedef void (*bth_health_changed_cb)(void *arg);

struct bth_health *bth_health_create(struct event_base *base, struct bth_registry *reg,
                                     unsigned stats_row, bth_health_changed_cb cb, void *arg);
void bth_health_destroy(struct bth_health *h);

/* Brings the checks in line with the registry: new targets get a check (state initial,
 * first probe at once with a little jitter), removed ones lose theirs, groups with checks
 * disabled put their targets in state unavailable. Call after every registry change. */
void bth_health_sync(struct bth_health *h);

/* ELBv2 reason code and description of <t>'s current state; NULL reason when healthy. */
void bth_health_describe(const struct bth_target *t, const char **reason, const char **desc);

#endif /* BERTH_HEALTH_H */
