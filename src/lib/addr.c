/* SPDX-License-Identifier: MIT */
/* Numeric socket addresses: parsing, canonical text, comparison, and which of them traffic
 * can be sent to. */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* Port: 1..65535, decimal digits only. */
static int parse_port(const char *s, unsigned *out)
{
    unsigned long v = 0;
    if (*s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || (v = v * 10 + (unsigned long)(*s - '0')) > 65535)
            return -1;
    }
    if (v < 1)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* Fills <out> from a numeric IPv4 or IPv6 address (<ip>, <iplen> bytes, no brackets) and a
 * port, writing the canonical text so equal addresses always compare equal as strings. */
static int fill_addr(const char *ip, size_t iplen, unsigned port, struct bth_addr *out)
{
    char buf[INET6_ADDRSTRLEN];
    char canon[INET6_ADDRSTRLEN];
    if (iplen == 0 || iplen >= sizeof(buf) || port < 1 || port > 65535)
        return -1;
    memcpy(buf, ip, iplen);
    buf[iplen] = '\0';
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *in4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, buf, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        out->len = sizeof(*in4);
        inet_ntop(AF_INET, &in4->sin_addr, canon, sizeof(canon));
        snprintf(out->text, sizeof(out->text), "%s:%u", canon, port);
    } else if (inet_pton(AF_INET6, buf, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*in6);
        inet_ntop(AF_INET6, &in6->sin6_addr, canon, sizeof(canon));
        snprintf(out->text, sizeof(out->text), "[%s]:%u", canon, port);
    } else {
        memset(out, 0, sizeof(*out));
        return -1;
    }
    return 0;
}

int bth_parse_addr(const char *s, struct bth_addr *out)
{
    const char *ip = s, *colon;
    size_t iplen;
    unsigned port;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':' || strchr(s + 1, '[') != NULL)
            return -1;
        ip = s + 1;
        iplen = (size_t)(close - ip);
        colon = close + 1;
        /* Brackets are for IPv6 only, as in URLs (RFC 3986 §3.2.2). */
        if (memchr(ip, ':', iplen) == NULL)
            return -1;
    } else {
        colon = strchr(s, ':');
        /* An unbracketed address with several colons is IPv6 without brackets: ambiguous. */
        if (colon == NULL || strchr(colon + 1, ':') != NULL)
            return -1;
        iplen = (size_t)(colon - s);
    }
    if (parse_port(colon + 1, &port) < 0)
        return -1;
    return fill_addr(ip, iplen, port, out);
}

int bth_addr_from_ip_port(const char *ip, unsigned port, struct bth_addr *out)
{
    size_t len = strlen(ip);
    if (len >= 2 && ip[0] == '[' && ip[len - 1] == ']') {
        ip++;
        len -= 2;
    }
    return fill_addr(ip, len, port, out);
}

void bth_addr_split(const struct bth_addr *a, char *ip, size_t ipsz, unsigned *port)
{
    ip[0] = '\0';
    *port = 0;
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, (socklen_t)ipsz);
        *port = ntohs(s6->sin6_port);
    } else if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, (socklen_t)ipsz);
        *port = ntohs(s4->sin_port);
    }
}

bool bth_addr_equal(const struct bth_addr *a, const struct bth_addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family)
        return false;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->ss, *y = (const void *)&b->ss;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)&a->ss, *y = (const void *)&b->ss;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

bool bth_addr_usable(const struct bth_addr *a, const char **why)
{
    const char *bad = NULL;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
        uint32_t ip = ntohl(s4->sin_addr.s_addr);
        if ((ip >> 24) == 0)
            bad = "0.0.0.0/8 is not a host address";
        else if (ip == 0xffffffffu)
            bad = "255.255.255.255 is the broadcast address";
        else if ((ip >> 28) == 0xe)
            bad = "224.0.0.0/4 is multicast";
    } else if (a->ss.ss_family == AF_INET6) {
        const struct in6_addr *s6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
        if (IN6_IS_ADDR_UNSPECIFIED(s6))
            bad = ":: is not a host address";
        else if (IN6_IS_ADDR_MULTICAST(s6))
            bad = "ff00::/8 is multicast";
        else if (IN6_IS_ADDR_V4MAPPED(s6))
            bad = "::ffff:0:0/96 is IPv4-mapped; register the IPv4 address";
    } else {
        bad = "not an IP address";
    }
    if (why != NULL)
        *why = bad;
    return bad == NULL;
}
