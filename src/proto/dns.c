/* SPDX-License-Identifier: MIT */
/* DNS query building and answer reading for service discovery. */
#include "dns.h"

#include <string.h>
#include <strings.h>

#define HEADER_LEN 12
#define MAX_HOPS   16 /* compression pointers followed per name */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

size_t bth_dns_build_query(uint16_t id, const char *name, uint16_t qtype, uint8_t *buf, size_t cap)
{
    size_t nlen = strlen(name);
    if (nlen > 0 && name[nlen - 1] == '.')
        nlen--;
    /* header + labels (nlen + 2) + qtype/qclass + OPT record (11); one trailing dot only */
    if (nlen == 0 || nlen > 253 || name[nlen - 1] == '.' || cap < HEADER_LEN + nlen + 2 + 4 + 11)
        return 0;
    memset(buf, 0, HEADER_LEN);
    put16(buf, id);
    buf[2] = 0x01;      /* RD */
    put16(buf + 4, 1);  /* QDCOUNT */
    put16(buf + 10, 1); /* ARCOUNT: the OPT record */
    size_t o = HEADER_LEN;
    const char *label = name, *end = name + nlen;
    while (label < end) {
        const char *dot = memchr(label, '.', (size_t)(end - label));
        size_t l = (size_t)((dot ? dot : end) - label);
        if (l == 0 || l > 63)
            return 0;
        buf[o++] = (uint8_t)l;
        memcpy(buf + o, label, l);
        o += l;
        label += l + 1;
    }
    buf[o++] = 0;
    put16(buf + o, qtype);
    put16(buf + o + 2, 1); /* IN */
    o += 4;
    /* EDNS0 OPT: root name, type 41, class = UDP payload size, TTL 0, no options */
    buf[o++] = 0;
    put16(buf + o, 41);
    put16(buf + o + 2, BTH_DNS_UDP_MAX);
    memset(buf + o + 4, 0, 6);
    o += 10;
    return o;
}

/* Reads the (possibly compressed) name at <*off> into <out> (lowercase, dotted, no trailing
 * dot) and moves <*off> past it. Returns 0 or -1. */
static int read_name(const uint8_t *msg, size_t len, size_t *off, char *out)
{
    size_t o = *off, w = 0;
    bool jumped = false;
    for (int hops = 0;;) {
        if (o >= len)
            return -1;
        uint8_t l = msg[o];
        if (l == 0) {
            if (!jumped)
                *off = o + 1;
            break;
        }
        if ((l & 0xc0) == 0xc0) {
            if (o + 1 >= len || ++hops > MAX_HOPS)
                return -1;
            if (!jumped)
                *off = o + 2;
            jumped = true;
            o = (size_t)(l & 0x3f) << 8 | msg[o + 1];
            continue;
        }
        if ((l & 0xc0) != 0 || o + 1 + l > len || w + l + 2 > BTH_DNS_NAME_MAX)
            return -1;
        if (w > 0)
            out[w++] = '.';
        for (size_t i = 0; i < l; i++) {
            char ch = (char)msg[o + 1 + i];
            out[w++] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
        }
        o += 1 + l;
    }
    out[w] = '\0';
    return 0;
}

static bool same_name(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 0 && a[la - 1] == '.')
        la--;
    if (lb > 0 && b[lb - 1] == '.')
        lb--;
    return la == lb && strncasecmp(a, b, la) == 0;
}

/* Reads one resource record at <*off>; keeps it in <out> when it is A, AAAA or SRV. */
static int read_record(const uint8_t *msg, size_t len, size_t *off, struct bth_dns_answer *out)
{
    struct bth_dns_record r;
    memset(&r, 0, sizeof(r));
    if (read_name(msg, len, off, r.name) != 0 || *off + 10 > len)
        return -1;
    const uint8_t *p = msg + *off;
    uint16_t type = get16(p), class = get16(p + 2), rdlen = get16(p + 8);
    r.ttl = get32(p + 4);
    size_t rd = *off + 10;
    if (rd + rdlen > len)
        return -1;
    *off = rd + rdlen;
    if (class != 1)
        return 0;
    r.type = type;
    if (type == BTH_DNS_TYPE_A && rdlen == 4) {
        memcpy(r.addr, msg + rd, 4);
    } else if (type == BTH_DNS_TYPE_AAAA && rdlen == 16) {
        memcpy(r.addr, msg + rd, 16);
    } else if (type == BTH_DNS_TYPE_SRV && rdlen >= 7) {
        r.priority = get16(msg + rd);
        r.weight = get16(msg + rd + 2);
        r.port = get16(msg + rd + 4);
        size_t t = rd + 6;
        /* The target must lie inside this record's data. */
        if (read_name(msg, rd + rdlen, &t, r.target) != 0)
            return -1;
    } else {
        return 0; /* CNAME, OPT, ...: the resolver followed CNAMEs for us */
    }
    if (r.ttl > 0x7fffffff)
        r.ttl = 0; /* RFC 2181 8: treat as zero */
    if (out->n < out->cap)
        out->records[out->n++] = r;
    return 0;
}

int bth_dns_parse_answer(const uint8_t *msg, size_t len, uint16_t id, const char *name,
                         uint16_t qtype, struct bth_dns_answer *out)
{
    out->n = 0;
    if (len < HEADER_LEN || get16(msg) != id || !(msg[2] & 0x80))
        return -1; /* not a response to our query */
    out->rcode = msg[3] & 0x0f;
    out->truncated = (msg[2] & 0x02) != 0;
    uint16_t qd = get16(msg + 4), an = get16(msg + 6), ns = get16(msg + 8), ar = get16(msg + 10);
    if (qd != 1)
        return -1;
    size_t off = HEADER_LEN;
    char qname[BTH_DNS_NAME_MAX];
    if (read_name(msg, len, &off, qname) != 0 || off + 4 > len || get16(msg + off) != qtype ||
        !same_name(qname, name))
        return -1;
    off += 4;
    unsigned total = (unsigned)an + ns + ar;
    for (unsigned i = 0; i < total; i++) {
        size_t before = out->n;
        if (read_record(msg, len, &off, out) != 0)
            return out->truncated ? 0 : -1; /* a cut message keeps what was whole */
        if (i >= an && i < (unsigned)an + ns)
            out->n = before; /* authority records are not answers */
    }
    return 0;
}
