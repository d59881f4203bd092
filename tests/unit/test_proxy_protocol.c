/* SPDX-License-Identifier: MIT */
/* PROXY protocol v2: headers byte for byte as written out by hand from the HAProxy spec
 * (section 2.2), decode(encode(x)) == x, and the decoder's rejection of bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "proxy_protocol.h"

#define SIG 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A

static struct sockaddr_storage v4(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    memset(&ss, 0, sizeof(ss));
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &s->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    memset(&ss, 0, sizeof(ss));
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &s->sin6_addr), 1);
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static void check_encode(const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
                         int transport, const uint8_t *want, size_t want_len)
{
    uint8_t out[BTH_PP2_MAX + 8];
    memset(out, 0xAA, sizeof(out));
    size_t n = bth_pp2_encode(SA(*src), SA(*dst), transport, out);
    assert_int_equal(n, want_len);
    assert_memory_equal(out, want, want_len);
    /* nothing written past the header */
    for (size_t i = n; i < sizeof(out); i++)
        assert_int_equal(out[i], 0xAA);
}

/* 192.0.2.1:56324 -> 198.51.100.7:443 */
static void test_tcp4(void **state)
{
    /* clang-format off */
    static const uint8_t want[] = {
        SIG,  0x21, 0x11, 0x00, 0x0C, /* PROXY, TCP over IPv4, 12 bytes follow */
        192,  0,    2,    1,          /* source address */
        198,  51,   100,  7,          /* destination address */
        0xDC, 0x04,                   /* source port 56324 */
        0x01, 0xBB,                   /* destination port 443 */
    };
    /* clang-format on */
    struct sockaddr_storage s = v4("192.0.2.1", 56324), d = v4("198.51.100.7", 443);
    check_encode(&s, &d, SOCK_STREAM, want, sizeof(want));
    assert_int_equal(sizeof(want), 28);
}

/* 203.0.113.9:5353 -> 10.0.0.53:53 */
static void test_udp4(void **state)
{
    /* clang-format off */
    static const uint8_t want[] = {
        SIG,  0x21, 0x12, 0x00, 0x0C, /* PROXY, UDP over IPv4, 12 bytes follow */
        203,  0,    113,  9,          /* source address */
        10,   0,    0,    53,         /* destination address */
        0x14, 0xE9,                   /* source port 5353 */
        0x00, 0x35,                   /* destination port 53 */
    };
    /* clang-format on */
    struct sockaddr_storage s = v4("203.0.113.9", 5353), d = v4("10.0.0.53", 53);
    check_encode(&s, &d, SOCK_DGRAM, want, sizeof(want));
}

/* [2001:db8::1]:40000 -> [2001:db8:0:1::2]:443 */
static void test_tcp6(void **state)
{
    /* clang-format off */
    static const uint8_t want[] = {
        SIG,  0x21, 0x21, 0x00, 0x24, /* PROXY, TCP over IPv6, 36 bytes follow */
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, /* source address */
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x02, /* destination address */
        0x9C, 0x40,                                                    /* source port 40000 */
        0x01, 0xBB,                                                    /* destination port 443 */
    };
    /* clang-format on */
    struct sockaddr_storage s = v6("2001:db8::1", 40000), d = v6("2001:db8:0:1::2", 443);
    check_encode(&s, &d, SOCK_STREAM, want, sizeof(want));
    assert_int_equal(sizeof(want), BTH_PP2_MAX);
}

/* [fd00::a]:1 -> [fd00::b]:65535 */
static void test_udp6(void **state)
{
    /* clang-format off */
    static const uint8_t want[] = {
        SIG,  0x21, 0x22, 0x00, 0x24, /* PROXY, UDP over IPv6, 36 bytes follow */
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, /* source address */
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b, /* destination address */
        0x00, 0x01,                                           /* source port 1 */
        0xFF, 0xFF,                                           /* destination port 65535 */
    };
    /* clang-format on */
    struct sockaddr_storage s = v6("fd00::a", 1), d = v6("fd00::b", 65535);
    check_encode(&s, &d, SOCK_DGRAM, want, sizeof(want));
}

/* One end IPv4, the other IPv6: the IPv4 end becomes ::ffff:a.b.c.d. */
static void test_mixed(void **state)
{
    /* clang-format off */
    static const uint8_t want_v4_src[] = {
        SIG,  0x21, 0x21, 0x00, 0x24,
        0,    0,    0,    0,    0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0,  2,   1, /* mapped src */
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0,    0,    0,   0,  0,   2, /* 2001:db8::2 */
        0xDC, 0x04, 0x01, 0xBB,                                              /* ports */
    };
    static const uint8_t want_v4_dst[] = {
        SIG,  0x21, 0x22, 0x00, 0x24,
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0,    0,    0,   0,  0,   2, /* 2001:db8::2 */
        0,    0,    0,    0,    0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 7, /* mapped dst */
        0x01, 0xBB, 0xDC, 0x04,                                              /* ports */
    };
    /* clang-format on */
    struct sockaddr_storage a = v4("192.0.2.1", 56324), b = v6("2001:db8::2", 443);
    check_encode(&a, &b, SOCK_STREAM, want_v4_src, sizeof(want_v4_src));
    struct sockaddr_storage c = v6("2001:db8::2", 443), d = v4("198.51.100.7", 56324);
    check_encode(&c, &d, SOCK_DGRAM, want_v4_dst, sizeof(want_v4_dst));

    /* decodes as IPv6 with the mapped address */
    uint8_t buf[BTH_PP2_MAX];
    struct sockaddr_storage s, t;
    int tr;
    size_t n = bth_pp2_encode(SA(a), SA(b), SOCK_STREAM, buf);
    assert_int_equal(bth_pp2_decode(buf, n, &s, &t, &tr), (int)n);
    struct sockaddr_storage mapped = v6("::ffff:192.0.2.1", 56324);
    assert_memory_equal(&s, &mapped, sizeof(struct sockaddr_in6));
    assert_memory_equal(&t, &b, sizeof(struct sockaddr_in6));
}

static void test_local_and_unspec(void **state)
{
    static const uint8_t want_local[] = {SIG, 0x20, 0x00, 0x00, 0x00};
    static const uint8_t want_unspec[] = {SIG, 0x21, 0x00, 0x00, 0x00};
    uint8_t out[BTH_PP2_MAX];
    assert_int_equal(bth_pp2_encode_local(out), 16);
    assert_memory_equal(out, want_local, sizeof(want_local));

    struct sockaddr_storage s, d;
    int tr = 99;
    assert_int_equal(bth_pp2_decode(out, 16, &s, &d, &tr), 16);
    assert_int_equal(s.ss_family, AF_UNSPEC);
    assert_int_equal(d.ss_family, AF_UNSPEC);
    assert_int_equal(tr, 0);

    /* an unsupported transport or family gives PROXY with UNSPEC: the receiver uses the real
     * endpoints or refuses */
    struct sockaddr_storage a = v4("192.0.2.1", 1), b = v4("192.0.2.2", 2);
    assert_int_equal(bth_pp2_encode(SA(a), SA(b), SOCK_RAW, out), 16);
    assert_memory_equal(out, want_unspec, sizeof(want_unspec));
    struct sockaddr_storage u;
    memset(&u, 0, sizeof(u));
    u.ss_family = AF_UNIX;
    assert_int_equal(bth_pp2_encode(SA(u), SA(b), SOCK_STREAM, out), 16);
    assert_memory_equal(out, want_unspec, sizeof(want_unspec));
    assert_int_equal(bth_pp2_decode(out, 16, &s, &d, &tr), 16);
    assert_int_equal(s.ss_family, AF_UNSPEC);
    assert_int_equal(tr, 0);
}

static void check_round_trip(struct sockaddr_storage src, struct sockaddr_storage dst,
                             int transport)
{
    uint8_t buf[BTH_PP2_MAX];
    size_t n = bth_pp2_encode(SA(src), SA(dst), transport, buf);
    struct sockaddr_storage s, d;
    int tr = -1;
    assert_int_equal(bth_pp2_decode(buf, n, &s, &d, &tr), (int)n);
    size_t len =
        src.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    assert_int_equal(s.ss_family, src.ss_family);
    assert_memory_equal(&s, &src, len);
    assert_memory_equal(&d, &dst, len);
    assert_int_equal(tr, transport);
    /* trailing payload after the header is not consumed */
    uint8_t more[BTH_PP2_MAX + 5];
    memcpy(more, buf, n);
    memcpy(more + n, "hello", 5);
    assert_int_equal(bth_pp2_decode(more, n + 5, &s, &d, &tr), (int)n);
}

static void test_round_trip(void **state)
{
    int transports[] = {SOCK_STREAM, SOCK_DGRAM};
    for (size_t i = 0; i < 2; i++) {
        check_round_trip(v4("192.0.2.1", 56324), v4("198.51.100.7", 443), transports[i]);
        check_round_trip(v4("0.0.0.0", 1), v4("255.255.255.255", 65535), transports[i]);
        check_round_trip(v6("2001:db8::1", 40000), v6("2001:db8:0:1::2", 443), transports[i]);
        check_round_trip(v6("::1", 65535), v6("fe80::1:2:3:4", 1), transports[i]);
    }
}

static void test_decode_rejects(void **state)
{
    uint8_t buf[BTH_PP2_MAX + 32];
    struct sockaddr_storage s, d;
    int tr;
    struct sockaddr_storage a = v6("2001:db8::1", 40000), b = v6("2001:db8::2", 443);
    size_t n = bth_pp2_encode(SA(a), SA(b), SOCK_STREAM, buf);

    /* every signature byte matters */
    for (size_t i = 0; i < 12; i++) {
        uint8_t bad[BTH_PP2_MAX];
        memcpy(bad, buf, n);
        bad[i] ^= 0x01;
        assert_int_equal(bth_pp2_decode(bad, n, &s, &d, &tr), -1);
    }
    /* truncated anywhere, including inside the address block */
    for (size_t len = 0; len < n; len++)
        assert_int_equal(bth_pp2_decode(buf, len, &s, &d, &tr), -1);
    /* a v1 text header is not v2 */
    const char *v1 = "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n";
    assert_int_equal(bth_pp2_decode((const uint8_t *)v1, strlen(v1), &s, &d, &tr), -1);

    /* version 1 or 3 in the binary form, unknown command 0x2 */
    uint8_t vc[] = {0x11, 0x31, 0x22, 0x2F, 0x01};
    for (size_t i = 0; i < sizeof(vc); i++) {
        uint8_t bad[BTH_PP2_MAX];
        memcpy(bad, buf, n);
        bad[12] = vc[i];
        assert_int_equal(bth_pp2_decode(bad, n, &s, &d, &tr), -1);
    }
    /* family/transport bytes the spec does not define */
    uint8_t ft[] = {0x01, 0x02, 0x10, 0x20, 0x13, 0x23, 0x40, 0x41, 0xF1};
    for (size_t i = 0; i < sizeof(ft); i++) {
        uint8_t bad[BTH_PP2_MAX];
        memcpy(bad, buf, n);
        bad[13] = ft[i];
        assert_int_equal(bth_pp2_decode(bad, n, &s, &d, &tr), -1);
    }
    /* an address block shorter than the family needs: IPv6 declared with 12 bytes */
    {
        uint8_t bad[BTH_PP2_MAX];
        memcpy(bad, buf, n);
        bad[15] = 12;
        assert_int_equal(bth_pp2_decode(bad, n, &s, &d, &tr), -1);
    }
}

static void test_decode_tlvs_and_local_addresses(void **state)
{
    /* IPv4 block followed by a PP2_TYPE_AUTHORITY TLV (0x02, length 4, "a.io"): the length
     * covers it and the decoder skips it */
    /* clang-format off */
    static const uint8_t hdr[] = {
        SIG,  0x21, 0x11, 0x00, 0x13,           /* 12 address bytes + 7 TLV bytes */
        10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0x00, 0x50, /* 10.0.0.1:12345 -> 10.0.0.2:80 */
        0x02, 0x00, 0x04, 'a', '.', 'i', 'o',             /* type, length 4, value */
    };
    /* clang-format on */
    struct sockaddr_storage s, d;
    int tr;
    assert_int_equal(bth_pp2_decode(hdr, sizeof(hdr), &s, &d, &tr), (int)sizeof(hdr));
    struct sockaddr_storage ws = v4("10.0.0.1", 12345), wd = v4("10.0.0.2", 80);
    assert_memory_equal(&s, &ws, sizeof(struct sockaddr_in));
    assert_memory_equal(&d, &wd, sizeof(struct sockaddr_in));
    assert_int_equal(tr, SOCK_STREAM);
    assert_int_equal(bth_pp2_decode(hdr, sizeof(hdr) - 1, &s, &d, &tr), -1);

    /* LOCAL with addresses: valid, and the addresses are ignored */
    uint8_t local[sizeof(hdr)];
    memcpy(local, hdr, sizeof(hdr));
    local[12] = 0x20;
    assert_int_equal(bth_pp2_decode(local, sizeof(local), &s, &d, &tr), (int)sizeof(local));
    assert_int_equal(s.ss_family, AF_UNSPEC);
    assert_int_equal(tr, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp4),
        cmocka_unit_test(test_udp4),
        cmocka_unit_test(test_tcp6),
        cmocka_unit_test(test_udp6),
        cmocka_unit_test(test_mixed),
        cmocka_unit_test(test_local_and_unspec),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_decode_tlvs_and_local_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
