/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: PROXY protocol v2. bth_pp2_decode on arbitrary bytes; then addresses
 * built from the input bytes go through bth_pp2_encode and must decode back to what was
 * encoded (an IPv4 end next to an IPv6 one comes back IPv4-mapped). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "proxy_protocol.h"

static size_t take(const uint8_t **d, size_t *n, void *out, size_t want)
{
    size_t k = *n < want ? *n : want;
    memset(out, 0, want);
    memcpy(out, *d, k);
    *d += k;
    *n -= k;
    return k;
}

static void make_addr(const uint8_t **d, size_t *n, int fam, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (fam == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)ss;
        s->sin_family = AF_INET;
        take(d, n, &s->sin_addr, 4);
        take(d, n, &s->sin_port, 2);
    } else if (fam == AF_INET6) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
        s->sin6_family = AF_INET6;
        take(d, n, &s->sin6_addr, 16);
        take(d, n, &s->sin6_port, 2);
    } else {
        ss->ss_family = (sa_family_t)fam;
    }
}

/* The IPv6 view of an inet address (IPv4 mapped). */
static void as6(const struct sockaddr_storage *ss, uint8_t a[16], uint8_t port[2])
{
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
        memcpy(a, &s->sin6_addr, 16);
        memcpy(port, &s->sin6_port, 2);
    } else {
        const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
        memset(a, 0, 10);
        a[10] = a[11] = 0xff;
        memcpy(a + 12, &s->sin_addr, 4);
        memcpy(port, &s->sin_port, 2);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sockaddr_storage src, dst;
    int transport;
    int r = bth_pp2_decode(data, size, &src, &dst, &transport);
    if (r != -1 && (r < BTH_PP2_HEADER_LEN || (size_t)r > size))
        __builtin_trap();

    /* round trip */
    const uint8_t *d = data;
    size_t n = size;
    uint8_t sel = 0;
    take(&d, &n, &sel, 1);
    static const int fams[4] = {AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC};
    static const int trans[4] = {SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, 0};
    int sf = fams[sel & 3], df = fams[(sel >> 2) & 3], tr = trans[(sel >> 4) & 3];
    struct sockaddr_storage in_src, in_dst;
    make_addr(&d, &n, sf, &in_src);
    make_addr(&d, &n, df, &in_dst);
    uint8_t out[BTH_PP2_MAX + 1];
    out[BTH_PP2_MAX] = 0xA5;
    size_t len = bth_pp2_encode((struct sockaddr *)&in_src, (struct sockaddr *)&in_dst, tr, out);
    if (len > BTH_PP2_MAX || out[BTH_PP2_MAX] != 0xA5)
        __builtin_trap();
    /* decode from an exact-size heap copy */
    uint8_t *enc = malloc(len);
    if (enc == NULL)
        return 0;
    memcpy(enc, out, len);
    r = bth_pp2_decode(enc, len, &src, &dst, &transport);
    if (r != (int)len)
        __builtin_trap();
    /* truncated copies must be refused */
    for (size_t cut = 0; cut < len; cut++) {
        struct sockaddr_storage s2, d2;
        int t2;
        if (bth_pp2_decode(enc, cut, &s2, &d2, &t2) != -1)
            __builtin_trap();
    }
    free(enc);

    int inet_s = sf == AF_INET || sf == AF_INET6, inet_d = df == AF_INET || df == AF_INET6;
    int is_tr = tr == SOCK_STREAM || tr == SOCK_DGRAM;
    if (!inet_s || !inet_d || !is_tr) {
        if (len != BTH_PP2_HEADER_LEN || src.ss_family != AF_UNSPEC || dst.ss_family != AF_UNSPEC ||
            transport != 0)
            __builtin_trap();
        return 0;
    }
    if (transport != tr)
        __builtin_trap();
    if (sf == AF_INET && df == AF_INET) {
        if (len != 28 || src.ss_family != AF_INET || dst.ss_family != AF_INET)
            __builtin_trap();
        const struct sockaddr_in *a = (const struct sockaddr_in *)&src,
                                 *b = (const struct sockaddr_in *)&in_src,
                                 *c = (const struct sockaddr_in *)&dst,
                                 *e = (const struct sockaddr_in *)&in_dst;
        if (memcmp(&a->sin_addr, &b->sin_addr, 4) || a->sin_port != b->sin_port ||
            memcmp(&c->sin_addr, &e->sin_addr, 4) || c->sin_port != e->sin_port)
            __builtin_trap();
        return 0;
    }
    if (len != 52 || src.ss_family != AF_INET6 || dst.ss_family != AF_INET6)
        __builtin_trap();
    uint8_t a1[16], p1[2], a2[16], p2[2];
    as6(&in_src, a1, p1);
    as6(&src, a2, p2);
    if (memcmp(a1, a2, 16) || memcmp(p1, p2, 2))
        __builtin_trap();
    as6(&in_dst, a1, p1);
    as6(&dst, a2, p2);
    if (memcmp(a1, a2, 16) || memcmp(p1, p2, 2))
        __builtin_trap();
    return 0;
}
