/* SPDX-License-Identifier: MIT */
/* Worker threads. NLB-mode UDP: a per-worker flow table keyed by the client's address and
 * port. The first datagram of a flow picks a target (flow hash); later datagrams go to the
 * same target through the flow's connected socket; replies return to the client from the
 * listener's socket. Datagrams move in batches (recvmmsg/sendmmsg). */
#ifndef BERTH_UDP_PROXY_H
#define BERTH_UDP_PROXY_H

struct bth_config;
struct bth_worker;
struct bth_worker_listener;
struct bth_udp_listener;

/* Each flow holds a connected socket for up to idle_timeout, so a flood of datagrams from
 * many source ports could take every descriptor and starve TCP clients, health checks and
 * the control socket. Half the open file limit goes to flows, shared by every UDP socket of
 * every one of <nworkers> workers under <cfg>. Returns the flows one worker's socket may
 * hold (0: no UDP listener, no cap) and warns about each listener whose udp_max_flows is
 * higher. Main thread, at start and reload: the registry hands the cap to the snapshots. */
unsigned bth_udp_flow_budget(const struct bth_config *cfg, unsigned nworkers);

/* Starts serving <wl>'s UDP socket (the socket stays owned by <wl>). NULL on OOM. */
struct bth_udp_listener *bth_udp_listener_create(struct bth_worker *w,
                                                 struct bth_worker_listener *wl);
/* Ends every flow and frees the table. */
void bth_udp_listener_destroy(struct bth_udp_listener *u);
/* Once a second: expires idle flows and ends flows whose target was removed (with
 * connection termination) or turned unhealthy. */
void bth_udp_sweep(struct bth_udp_listener *u);

#endif /* BERTH_UDP_PROXY_H */
