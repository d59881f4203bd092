/* SPDX-License-Identifier: MIT */
/* Worker threads. NLB-mode TCP: each accepted connection is pinned to one target (flow hash
 * by default) and bytes move with splice(2) through a pipe per direction, so they never
 * enter user space. Half-closes are propagated, backpressure holds (a direction stops
 * reading while its pipe cannot drain), and an idle timeout closes both ends. */
#ifndef BERTH_TCP_PROXY_H
#define BERTH_TCP_PROXY_H

struct bth_listener_ops;

/* The worker's handler for TCP and TLS listeners (and the stream half of TCP_UDP). */
extern const struct bth_listener_ops bth_tcp_listener_ops;

#endif /* BERTH_TCP_PROXY_H */
