/* SPDX-License-Identifier: MIT */
/* Build: main thread. Match: worker threads; lock-free, no allocation.
 * Listener rules (README "Rules and actions") compiled into an immutable index: the main
 * thread builds a router per listener when it prepares a snapshot, workers match requests
 * against it concurrently. Invariant: the answer is always the first matching rule in ascending
 * priority, exactly as a linear scan of the rules would give it. */
#ifndef BERTH_ROUTER_H
#define BERTH_ROUTER_H

#include <stddef.h>

struct bth_cfg_listener;
struct bth_http_head;
struct sockaddr;

struct bth_router;

/* Compiles the rules of <l> (l->rules, l->nrules; any order, ties keep array order).
 * <l> is only read: the router copies what it needs and does not keep pointers into it.
 * Returns a router the caller owns (free with bth_router_destroy), or NULL when out of
 * memory. Main thread (any thread that owns <l>). */
struct bth_router *bth_router_build(const struct bth_cfg_listener *l);

/* Frees <r>; NULL is allowed. No worker may still be matching against it. */
void bth_router_destroy(struct bth_router *r);

/* What a request offers to the conditions. All pointers are borrowed for the call. */
struct bth_route_input {
    const char *host; /* Host value without port, as received; matched case-insensitively */
    size_t host_len;
    const char *path; /* percent-decoded path, no query */
    size_t path_len;
    const char *query; /* raw query after '?', without the '?'; may be empty */
    size_t query_len;
    const char *method; /* "GET", ...; matched case-sensitively */
    size_t method_len;
    const struct bth_http_head *head; /* request headers; NULL: header conditions fail */
    const struct sockaddr *src;       /* client, AF_INET or AF_INET6; NULL: source_ip fails */
};

/* Returns the index into l->rules (the listener <r> was built from) of the first rule, in
 * ascending priority, whose conditions all match <in>, or -1 when none does (the default
 * action applies). Conditions are AND-ed and the values of one condition OR-ed, as in ALB:
 * host is case-insensitive, path case-sensitive (both with '*' = any run, possibly empty,
 * and '?' = one byte), method exact; header names and header values case-insensitive;
 * query keys and values case-insensitive and percent-decoded ('+' stays '+'), a key
 * pattern "*" matches any key; source_ip by CIDR, an IPv4-mapped IPv6 client also matches
 * IPv4 CIDRs. Worker threads, concurrently on one router; no allocation, no locks. */
int bth_router_match(const struct bth_router *r, const struct bth_route_input *in);

#endif /* BERTH_ROUTER_H */
