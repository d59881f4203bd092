/* SPDX-License-Identifier: MIT */
/* Worker threads. NLB-mode TCP: each accepted connection is pinned to one target (flow hash
 * by default) and bytes move with splice(2) through a pipe per direction, so they never
 * enter user space. Half-closes are propagated, backpressure holds (a direction stops
 * reading while its pipe cannot drain), and an idle timeout closes both ends. */
#ifndef BERTH_TCP_PROXY_H
#define BERTH_TCP_PROXY_H

struct bth_worker;
struct bth_worker_listener;
struct bth_tcp_session;

/* Takes ownership of the accepted, non-blocking <fd>. */
void bth_tcp_session_start(struct bth_worker *w, struct bth_worker_listener *wl, int fd);

/* Periodic sweep (once a second per worker): resets connections whose target turned
 * unhealthy (unless the group fails open or keeps them), and closes those whose target's
 * drain ended when the group asks for connection termination. */
void bth_tcp_sweep(struct bth_worker *w);

/* Worker stop: close every TCP session now. */
void bth_tcp_close_all(struct bth_worker *w);

#endif /* BERTH_TCP_PROXY_H */
