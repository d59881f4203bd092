/* SPDX-License-Identifier: MIT */
/* Worker threads; lock-free. Choosing a target group for a forward action (by weight) and
 * a target inside a group. Round robin for now; the algorithm table of STYLE.md section 5
 * arrives with least-outstanding-requests and weighted random. */
#ifndef BERTH_BALANCER_H
#define BERTH_BALANCER_H

#include <stddef.h>

struct bth_worker;
struct bth_snap_action;
struct bth_snap_group;
struct bth_target;

/* The group a forward action sends this request to (weighted), or NULL when the action
 * has none with a non-zero weight. */
struct bth_snap_group *bth_lb_pick_group(struct bth_worker *w, const struct bth_snap_action *a);

/* A target of <g> that takes traffic and is not among the <ntried> in <tried>; NULL when
 * none is left. The caller takes its own reference. */
struct bth_target *bth_lb_pick_target(struct bth_worker *w, struct bth_snap_group *g,
                                      struct bth_target *const *tried, size_t ntried);

#endif /* BERTH_BALANCER_H */
