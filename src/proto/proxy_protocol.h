/* SPDX-License-Identifier: MIT */
/* PROXY protocol version 2 (HAProxy's "PROXY protocol" spec, section 2.2): the binary header
 * berth sends first on a connection to a target so the target learns the client's address.
 * Pure functions over caller-owned buffers: any thread, no state, no allocation. */
#ifndef BERTH_PROXY_PROTOCOL_H
#define BERTH_PROXY_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* 12-byte signature + version/command + family/transport + 2-byte length. */
#define BTH_PP2_HEADER_LEN 16
/* Longest header the encoder writes: the fixed part plus the IPv6 address block (2 * 16 bytes
 * of address + 2 * 2 bytes of port). The encoder adds no TLVs. */
#define BTH_PP2_MAX (BTH_PP2_HEADER_LEN + 36)

/* Writes a PROXY (command 0x1) header for a connection from <src> to <dst> into <out>, which
 * must hold at least BTH_PP2_MAX bytes. Both AF_INET: the IPv4 form; both AF_INET6: the IPv6
 * form; one of each: the IPv4 one is written as IPv4-mapped IPv6 (::ffff:a.b.c.d) so both fit
 * the IPv6 block. <transport> is SOCK_STREAM (TCP) or SOCK_DGRAM (UDP). Any other family or
 * transport gives the UNSPEC form (family/transport 0x00, no addresses), which the spec says
 * the receiver may accept using the real connection endpoints. Returns the header length
 * (16, 28 or 52). */
size_t bth_pp2_encode(const struct sockaddr *src, const struct sockaddr *dst, int transport,
                      uint8_t *out);

/* Writes a LOCAL command header (no addresses) into <out> (at least BTH_PP2_HEADER_LEN bytes):
 * for connections berth makes on its own behalf, such as health checks, which the target must
 * treat as coming from berth itself. Returns BTH_PP2_HEADER_LEN. */
size_t bth_pp2_encode_local(uint8_t *out);

/* Parses a v2 header at the start of <buf> (<len> bytes available). On success returns the
 * whole header length including any TLVs (which are skipped, not checked), and fills <src>
 * and <dst> (ss_family AF_INET, AF_INET6 or AF_UNIX; AF_UNSPEC for LOCAL or an UNSPEC
 * family) and <transport> (SOCK_STREAM, SOCK_DGRAM, or 0 for UNSPEC). Returns -1 on a bad
 * signature, version, command or family/transport byte, an address block shorter than its
 * family needs, or when <len> does not cover the whole header (truncation). Any thread. */
int bth_pp2_decode(const uint8_t *buf, size_t len, struct sockaddr_storage *src,
                   struct sockaddr_storage *dst, int *transport);

#endif /* BERTH_PROXY_PROTOCOL_H */
