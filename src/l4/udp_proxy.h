/* SPDX-License-Identifier: MIT */
/* Worker threads. NLB-mode UDP: a per-worker flow table keyed by the client's address and
 * port. The first datagram of a flow picks a target (flow hash); later datagrams go to the
 * same target through the flow's connected socket; replies return to the client from the
 * listener's socket. Datagrams move in batches (recvmmsg/sendmmsg). */
#ifndef BERTH_UDP_PROXY_H
#define BERTH_UDP_PROXY_H

struct bth_config;
struct bth_listener_ops;

/* Each flow holds a connected socket for up to idle_timeout, so a flood of datagrams from
 * many source ports could take every descriptor and starve TCP clients, health checks and
 * the control socket. Half the open file limit goes to flows, shared by every UDP socket of
 * every one of <nworkers> workers under <cfg>. Returns the flows one worker's socket may
 * hold (0: no UDP listener, no cap) and warns about each listener whose udp_max_flows is
 * higher. Main thread, at start and reload: the registry hands the cap to the snapshots. */
unsigned bth_udp_flow_budget(const struct bth_config *cfg, unsigned nworkers);

/* The worker's handler for UDP listeners (and the datagram half of TCP_UDP). */
extern const struct bth_listener_ops bth_udp_listener_ops;

#endif /* BERTH_UDP_PROXY_H */
