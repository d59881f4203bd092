/* SPDX-License-Identifier: MIT */
/* PROXY protocol v2 encoder and decoder (HAProxy spec, section 2.2). Any thread; pure.
 * The encoder only ever writes the four forms berth needs (TCP/UDP over IPv4/IPv6) plus
 * LOCAL and UNSPEC; the decoder accepts everything the spec defines so tests and tools can
 * check headers written by others too. */
#include "proxy_protocol.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

/* Chosen by the spec so it can never start a valid v1 header, HTTP request or TLS record. */
static const uint8_t pp2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Byte 13: version 2 in the high nibble, command in the low one. */
#define PP2_VER_LOCAL 0x20
#define PP2_VER_PROXY 0x21
/* Byte 14: address family in the high nibble, transport in the low one. */
#define PP2_AF_UNSPEC    0x00
#define PP2_AF_INET      0x10
#define PP2_AF_INET6     0x20
#define PP2_AF_UNIX      0x30
#define PP2_TRANS_STREAM 0x01
#define PP2_TRANS_DGRAM  0x02

/* Address block sizes per family: two addresses then (for inet) two ports. */
#define PP2_INET_LEN  12
#define PP2_INET6_LEN 36
#define PP2_UNIX_LEN  216

static size_t put_header(uint8_t *out, uint8_t ver_cmd, uint8_t fam, uint16_t len)
{
    memcpy(out, pp2_sig, sizeof(pp2_sig));
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(len >> 8); /* network byte order, as every multi-byte field */
    out[15] = (uint8_t)len;
    return BTH_PP2_HEADER_LEN;
}

/* The 16-byte IPv6 form of <sa> (AF_INET or AF_INET6): IPv4 becomes ::ffff:a.b.c.d
 * (RFC 4291 §2.5.5.2), the form a dual-stack socket would have reported for it. */
static void put_addr16(uint8_t *p, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET6) {
        memcpy(p, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else {
        memset(p, 0, 10);
        p[10] = 0xff;
        p[11] = 0xff;
        memcpy(p + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    }
}

/* The port of an AF_INET or AF_INET6 address, copied as stored: already network order. */
static void put_port(uint8_t *p, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET6)
        memcpy(p, &((const struct sockaddr_in6 *)sa)->sin6_port, 2);
    else
        memcpy(p, &((const struct sockaddr_in *)sa)->sin_port, 2);
}

static int is_inet(const struct sockaddr *sa)
{
    return sa != NULL && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6);
}

size_t bth_pp2_encode(const struct sockaddr *src, const struct sockaddr *dst, int transport,
                      uint8_t *out)
{
    uint8_t trans;
    if (transport == SOCK_STREAM)
        trans = PP2_TRANS_STREAM;
    else if (transport == SOCK_DGRAM)
        trans = PP2_TRANS_DGRAM;
    else
        trans = 0;
    /* The spec allows UNSPEC only as family and transport together (byte 0x00). */
    if (trans == 0 || !is_inet(src) || !is_inet(dst))
        return put_header(out, PP2_VER_PROXY, PP2_AF_UNSPEC, 0);

    if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
        uint8_t *p = out + put_header(out, PP2_VER_PROXY, PP2_AF_INET | trans, PP2_INET_LEN);
        memcpy(p, &((const struct sockaddr_in *)src)->sin_addr, 4);
        memcpy(p + 4, &((const struct sockaddr_in *)dst)->sin_addr, 4);
        put_port(p + 8, src);
        put_port(p + 10, dst);
        return BTH_PP2_HEADER_LEN + PP2_INET_LEN;
    }
    /* Both IPv6, or mixed (a dual-stack listener in front of an IPv4 target, say): the block
     * has one family for both ends, so the IPv4 end is mapped into IPv6. */
    uint8_t *p = out + put_header(out, PP2_VER_PROXY, PP2_AF_INET6 | trans, PP2_INET6_LEN);
    put_addr16(p, src);
    put_addr16(p + 16, dst);
    put_port(p + 32, src);
    put_port(p + 34, dst);
    return BTH_PP2_HEADER_LEN + PP2_INET6_LEN;
}

size_t bth_pp2_encode_local(uint8_t *out)
{
    /* LOCAL carries no addresses; the spec says senders should use UNSPEC with it. */
    return put_header(out, PP2_VER_LOCAL, PP2_AF_UNSPEC, 0);
}

int bth_pp2_decode(const uint8_t *buf, size_t len, struct sockaddr_storage *src,
                   struct sockaddr_storage *dst, int *transport)
{
    memset(src, 0, sizeof(*src));
    memset(dst, 0, sizeof(*dst));
    *transport = 0;
    if (len < BTH_PP2_HEADER_LEN || memcmp(buf, pp2_sig, sizeof(pp2_sig)) != 0)
        return -1;
    uint8_t ver_cmd = buf[12], fam = buf[13];
    size_t body = (size_t)buf[14] << 8 | buf[15];
    if (ver_cmd != PP2_VER_LOCAL && ver_cmd != PP2_VER_PROXY)
        return -1;
    if (len < BTH_PP2_HEADER_LEN + body)
        return -1;
    int total = (int)(BTH_PP2_HEADER_LEN + body);

    /* Valid bytes are 0x00 and 0x11..0x32 with transport 1 or 2; the spec says receivers
     * must reject anything else. */
    uint8_t af = fam & 0xf0, trans = fam & 0x0f;
    if (fam != PP2_AF_UNSPEC && (af < PP2_AF_INET || af > PP2_AF_UNIX ||
                                 (trans != PP2_TRANS_STREAM && trans != PP2_TRANS_DGRAM)))
        return -1;
    /* A LOCAL header's addresses, if any, must be ignored (spec §2.2): the connection is
     * the sender's own. UNSPEC carries none either. */
    if (ver_cmd == PP2_VER_LOCAL || fam == PP2_AF_UNSPEC)
        return total;
    *transport = trans == PP2_TRANS_STREAM ? SOCK_STREAM : SOCK_DGRAM;

    const uint8_t *p = buf + BTH_PP2_HEADER_LEN;
    switch (af) {
    case PP2_AF_INET: {
        if (body < PP2_INET_LEN)
            return -1;
        struct sockaddr_in *s = (struct sockaddr_in *)src, *d = (struct sockaddr_in *)dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, p, 4);
        memcpy(&d->sin_addr, p + 4, 4);
        memcpy(&s->sin_port, p + 8, 2);
        memcpy(&d->sin_port, p + 10, 2);
        return total;
    }
    case PP2_AF_INET6: {
        if (body < PP2_INET6_LEN)
            return -1;
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)src, *d = (struct sockaddr_in6 *)dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, p, 16);
        memcpy(&d->sin6_addr, p + 16, 16);
        memcpy(&s->sin6_port, p + 32, 2);
        memcpy(&d->sin6_port, p + 34, 2);
        return total;
    }
    case PP2_AF_UNIX: {
        if (body < PP2_UNIX_LEN)
            return -1;
        struct sockaddr_un *s = (struct sockaddr_un *)src, *d = (struct sockaddr_un *)dst;
        _Static_assert(sizeof(s->sun_path) >= PP2_UNIX_LEN / 2, "sun_path holds 108 bytes");
        s->sun_family = d->sun_family = AF_UNIX;
        memcpy(s->sun_path, p, PP2_UNIX_LEN / 2);
        memcpy(d->sun_path, p + PP2_UNIX_LEN / 2, PP2_UNIX_LEN / 2);
        return total;
    }
    default:
        return -1;
    }
}
