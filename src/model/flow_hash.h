/* SPDX-License-Identifier: MIT */
/* Flow hashing for NLB-mode groups: Maglev consistent hashing (Eisenbud et al., NSDI 2016).
 * A table is built on the main thread when a snapshot is built, is immutable afterwards,
 * and is read by workers without locks. It depends only on the targets' address text and
 * weights, never on array order or on anything local, so every berth instance with the same
 * targets builds the same table and sends a flow to the same target; adding or removing one
 * of N targets moves about 1/N of the flows. */
#ifndef BERTH_FLOW_HASH_H
#define BERTH_FLOW_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct bth_target;
struct bth_flow_table;

/* Builds a table over <targets>[0..n). Only targets with weight > 0 get slots, in proportion
 * to their weight; a table where all have weight 0 is valid and picks nothing. The table
 * keeps no reference on the targets: it stores array indices, and the caller (the snapshot,
 * which owns <targets>) passes the same array to every pick. Returns NULL when n == 0,
 * n >= 65535 (indices are 16-bit), or out of memory. Main thread. */
struct bth_flow_table *bth_flow_table_build(struct bth_target *const *targets, size_t n);
/* Frees <t> (NULL is fine). Only once no worker can pick from it any more, that is when the
 * snapshot holding it is freed. */
void bth_flow_table_destroy(struct bth_flow_table *t);

/* Number of lookup slots (the prime M) in <t>: exposed for tests and stats. */
size_t bth_flow_table_size(const struct bth_flow_table *t);

/* The 64-bit hash of a flow's 5-tuple: <src> and <dst> (AF_INET or AF_INET6; IPv4 is hashed
 * in its IPv4-mapped IPv6 form, so a flow seen on a dual-stack socket hashes as on an IPv4
 * one) and <proto> (IPPROTO_TCP or IPPROTO_UDP). SipHash-1-3 with a fixed key, so every
 * instance computes the same value. Any thread; pure. */
uint64_t bth_flow_hash_5tuple(const struct sockaddr *src, const struct sockaddr *dst, int proto);
/* The hash of <src>'s IP address alone (port ignored): all flows of one client go to one
 * target (source-IP stickiness). Any thread; pure. */
uint64_t bth_flow_hash_source(const struct sockaddr *src);

/* The target for <hash>: its table slot's target if that one takes traffic
 * (bth_target_takes_traffic); otherwise a fixed sequence of further slots derived from
 * <hash>, then a scan of the targets in address order, so while a target is out its flows
 * spread over the others and every other flow stays where it was. <targets>/<n> must be the
 * array the table was built from. Returns a borrowed pointer (the caller takes its own
 * reference if the target must outlive the snapshot), or NULL when no target takes traffic.
 * Any thread; reads target state with relaxed atomics only. */
struct bth_target *bth_flow_table_pick(const struct bth_flow_table *t,
                                       struct bth_target *const *targets, size_t n, uint64_t hash);

/* SipHash-c-d (Aumasson & Bernstein) of <len> bytes at <data> under the 16-byte <key>, as
 * the reference implementation computes it (the 64-bit result of its little-endian output).
 * The flow hashes use c = 1, d = 3; exposed so tests can check it against the reference
 * vectors. Any thread; pure. */
uint64_t bth_siphash(const uint8_t key[16], const void *data, size_t len, unsigned crounds,
                     unsigned drounds);

#endif /* BERTH_FLOW_HASH_H */
