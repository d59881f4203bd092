/* SPDX-License-Identifier: MIT */
/* Worker threads. NLB-mode UDP: a per-worker flow table keyed by the client's address and
 * port. The first datagram of a flow picks a target (flow hash); later datagrams go to the
 * same target through the flow's connected socket; replies return to the client from the
 * listener's socket. Datagrams move in batches (recvmmsg/sendmmsg). */
#ifndef BERTH_UDP_PROXY_H
#define BERTH_UDP_PROXY_H

struct bth_worker;
struct bth_worker_listener;
struct bth_udp_listener;

/* Starts serving <wl>'s UDP socket (the socket stays owned by <wl>). NULL on OOM. */
struct bth_udp_listener *bth_udp_listener_create(struct bth_worker *w,
                                                 struct bth_worker_listener *wl);
/* Ends every flow and frees the table. */
void bth_udp_listener_destroy(struct bth_udp_listener *u);
/* Once a second: expires idle flows and ends flows whose target was removed (with
 * connection termination) or turned unhealthy. */
void bth_udp_sweep(struct bth_udp_listener *u);

#endif /* BERTH_UDP_PROXY_H */
