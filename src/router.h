/* SPDX-License-Identifier: MIT */
/* Build: main thread. Match: worker threads; lock-free, no allocation.
 * Listener rules (SPEC.md "rules") compiled into an immutable index: the main thread builds
 * a router per listener when it prepares a snapshot, workers match requests against it
 * concurrently. Invariant: the answer is always the first matching rule in ascending
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
    const char *path; /* percent-decoded path, no query (bth_router_split_target) */
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

/* Splits the request-target <target> (<len> bytes) into a percent-decoded path and a raw
 * query. Origin-form "/a%20b?x=1" gives path "/a b" and query "x=1"; absolute-form
 * "http://h:8080/p?q" (any scheme, userinfo skipped) gives path "/p" ("/" when empty) and
 * sets *<host> and *<host_len> to the authority's host without port, pointing into <target>;
 * for other forms *<host> is NULL. Asterisk-form "*" gives path "*". The decoded path is
 * written to <out> (<cap> bytes, NUL-terminated) with its length in *<path_len>; *<query>
 * points into <target> (empty, not NULL, when absent). <host> and <host_len> may be NULL.
 * Returns 0, or -1 for a bad escape ("%zz", "%4"), a decoded NUL, an empty or
 * authority-form target, or when <out> is too small: the caller answers 400.
 * Any thread. */
int bth_router_split_target(const char *target, size_t len, char *out, size_t cap, size_t *path_len,
                            const char **query, size_t *query_len, const char **host,
                            size_t *host_len);

/* Sets *<out_len> to the length of the Host value <host> without its ":port"
 * ("example.com:80" -> "example.com", "[fd00::1]:80" -> "[fd00::1]"). A value with two
 * or more colons outside brackets is a bare IPv6 address and is left whole. Any thread. */
void bth_router_host_without_port(const char *host, size_t len, size_t *out_len);

#endif /* BERTH_ROUTER_H */
