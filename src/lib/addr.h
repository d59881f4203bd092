/* SPDX-License-Identifier: MIT */
/* Numeric socket addresses (IPv4 and IPv6, never names): parsing from config and API text,
 * canonical "ip:port" text so equal addresses compare equal as strings, and the rule for
 * which addresses can be targets. Any thread; no state. */
#ifndef BERTH_ADDR_H
#define BERTH_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct bth_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64]; /* "10.0.1.5:8080" or "[fd00::5]:8080" */
};

/* "10.0.1.5:8080", "[fd00::5]:8080"; numeric addresses only (no DNS). 0 or -1. */
int bth_parse_addr(const char *s, struct bth_addr *out);

/* An address without port ("10.0.1.5", "fd00::5", "[fd00::5]") plus a port, as the ELBv2
 * API gives them. 0 or -1. */
int bth_addr_from_ip_port(const char *ip, unsigned port, struct bth_addr *out);

/* Splits <a> into the ELBv2 target Id (the IP, without brackets) and port. */
void bth_addr_split(const struct bth_addr *a, char *ip, size_t ipsz, unsigned *port);

/* Same IP and port. */
bool bth_addr_equal(const struct bth_addr *a, const struct bth_addr *b);

/* Whether berth can send traffic to <a>, as ELB decides for its IP targets: refused are
 * 0.0.0.0/8 (0.0.0.0 and "this network"), 255.255.255.255, IPv4 multicast 224.0.0.0/4, ::,
 * IPv6 multicast ff00::/8 and IPv4-mapped IPv6 ::ffff:0:0/96 (register the IPv4 address).
 * Loopback stays allowed. On false, <*why> (when not NULL) names the range, static. Used for
 * the control API, config files, the state file and DNS answers alike. */
bool bth_addr_usable(const struct bth_addr *a, const char **why);

#endif /* BERTH_ADDR_H */
