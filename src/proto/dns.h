/* SPDX-License-Identifier: MIT */
/* DNS messages for service discovery (RFC 1035, RFC 2782, EDNS0 from RFC 6891): builds a
 * query and reads the A, AAAA and SRV records of an answer. Pure functions on caller
 * buffers; any thread. libevent's evdns has no SRV queries, and one small codec for all
 * three record types keeps one code path (and gives every record's TTL). */
#ifndef BERTH_DNS_H
#define BERTH_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BTH_DNS_TYPE_A    1
#define BTH_DNS_TYPE_AAAA 28
#define BTH_DNS_TYPE_SRV  33
#define BTH_DNS_NAME_MAX  256  /* presentation form, with the terminating NUL */
#define BTH_DNS_UDP_MAX   4096 /* the UDP payload size the queries advertise (EDNS0) */

struct bth_dns_record {
    uint16_t type;                   /* BTH_DNS_TYPE_* */
    uint32_t ttl;                    /* seconds */
    char name[BTH_DNS_NAME_MAX];     /* owner, lowercase, no trailing dot */
    uint8_t addr[16];                /* A: the first 4 bytes; AAAA: all 16 */
    uint16_t priority, weight, port; /* SRV */
    char target[BTH_DNS_NAME_MAX];   /* SRV: target host, lowercase, no trailing dot */
};

struct bth_dns_answer {
    int rcode;                      /* 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, ... */
    bool truncated;                 /* TC: the records that fit are given */
    struct bth_dns_record *records; /* caller's array */
    size_t cap;
    size_t n; /* A, AAAA and SRV records of the answer and additional sections */
};

/* Writes a recursive query for <name> and <qtype> with id <id> into <buf>. Returns its
 * length, or 0 when the name is invalid or <cap> too small. */
size_t bth_dns_build_query(uint16_t id, const char *name, uint16_t qtype, uint8_t *buf, size_t cap);

/* Reads a response to the query (<id>, <name>, <qtype>) into <out> (records beyond out->cap
 * are dropped). Returns 0, or -1 when <msg> is not a well-formed answer to that query. */
int bth_dns_parse_answer(const uint8_t *msg, size_t len, uint16_t id, const char *name,
                         uint16_t qtype, struct bth_dns_answer *out);

#endif /* BERTH_DNS_H */
