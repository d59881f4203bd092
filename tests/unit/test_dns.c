/* SPDX-License-Identifier: MIT */
/* DNS codec: a query byte for byte as RFC 1035 4.1 lays it out (with the RFC 6891 OPT
 * record), invalid names, and answers built by hand: A, AAAA, SRV with additional records,
 * compression, CNAME chains, and the malformed messages that must be refused (bad ids,
 * wrong questions, compression loops, pointers and lengths past the end). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include "dns.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Header flags (bytes 2-3): QR | RD | RA, with TC, and with RCODE 3. */
#define F_RESPONSE 0x8180
#define F_TC       0x8380
#define F_NXDOMAIN 0x8183
#define F_QUERY    0x0100
#define QNAME_OFF  12 /* where the question name starts: the target of most pointers */

/* ---- a tiny message builder ---- */

struct msg {
    uint8_t b[1024];
    size_t n;
};

static void u8(struct msg *m, uint8_t v)
{
    assert_true(m->n < sizeof(m->b));
    m->b[m->n++] = v;
}

static void u16(struct msg *m, uint16_t v)
{
    u8(m, (uint8_t)(v >> 8));
    u8(m, (uint8_t)v);
}

static void u32(struct msg *m, uint32_t v)
{
    u16(m, (uint16_t)(v >> 16));
    u16(m, (uint16_t)v);
}

static void raw(struct msg *m, const void *p, size_t n)
{
    assert_true(m->n + n <= sizeof(m->b));
    memcpy(m->b + m->n, p, n);
    m->n += n;
}

/* Labels of <dotted> without the terminating root label (to end with a pointer). */
static void labels(struct msg *m, const char *dotted)
{
    while (*dotted != '\0') {
        const char *dot = strchr(dotted, '.');
        size_t l = dot != NULL ? (size_t)(dot - dotted) : strlen(dotted);
        u8(m, (uint8_t)l);
        raw(m, dotted, l);
        dotted += l + (dot != NULL);
    }
}

/* An uncompressed name. */
static void name(struct msg *m, const char *dotted)
{
    labels(m, dotted);
    u8(m, 0);
}

/* A compression pointer. */
static void ptr(struct msg *m, uint16_t off)
{
    u16(m, (uint16_t)(0xc000 | off));
}

static void header(struct msg *m, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an,
                   uint16_t ns, uint16_t ar)
{
    m->n = 0;
    u16(m, id);
    u16(m, flags);
    u16(m, qd);
    u16(m, an);
    u16(m, ns);
    u16(m, ar);
}

static void question(struct msg *m, const char *qname, uint16_t qtype)
{
    name(m, qname);
    u16(m, qtype);
    u16(m, 1); /* IN */
}

/* The fixed part of a record after its owner name; returns where RDLENGTH is, for
 * rd_end() to fill in once the data is written. */
static size_t rr_begin(struct msg *m, uint16_t type, uint16_t class, uint32_t ttl)
{
    u16(m, type);
    u16(m, class);
    u32(m, ttl);
    size_t at = m->n;
    u16(m, 0);
    return at;
}

static void rd_end(struct msg *m, size_t at)
{
    size_t l = m->n - at - 2;
    m->b[at] = (uint8_t)(l >> 8);
    m->b[at + 1] = (uint8_t)l;
}

/* A record whose owner is the question name (a pointer to it). */
static void rr_a(struct msg *m, uint32_t ttl, const char *ip)
{
    uint8_t a[4];
    assert_int_equal(inet_pton(AF_INET, ip, a), 1);
    ptr(m, QNAME_OFF);
    size_t at = rr_begin(m, BTH_DNS_TYPE_A, 1, ttl);
    raw(m, a, 4);
    rd_end(m, at);
}

static void check_a(const struct bth_dns_record *r, const char *owner, uint32_t ttl, const char *ip)
{
    uint8_t a[4];
    assert_int_equal(inet_pton(AF_INET, ip, a), 1);
    assert_int_equal(r->type, BTH_DNS_TYPE_A);
    assert_string_equal(r->name, owner);
    assert_int_equal(r->ttl, ttl);
    assert_memory_equal(r->addr, a, 4);
}

static struct bth_dns_record recs[16];

static struct bth_dns_answer answer(size_t cap)
{
    struct bth_dns_answer out;
    memset(&out, 0xA5, sizeof(out));
    memset(recs, 0xA5, sizeof(recs));
    out.records = cap > 0 ? recs : NULL;
    out.cap = cap;
    return out;
}

static int parse(const struct msg *m, uint16_t id, const char *qname, uint16_t qtype,
                 struct bth_dns_answer *out)
{
    return bth_dns_parse_answer(m->b, m->n, id, qname, qtype, out);
}

/* ---- queries ---- */

/* clang-format off */
static const uint8_t query_web_a[] = {
    0xbe, 0xef,                         /* ID */
    0x01, 0x00,                         /* QR 0, opcode 0, AA 0, TC 0, RD 1; RA 0, Z 0, RCODE 0 */
    0x00, 0x01,                         /* QDCOUNT 1 */
    0x00, 0x00,                         /* ANCOUNT 0 */
    0x00, 0x00,                         /* NSCOUNT 0 */
    0x00, 0x01,                         /* ARCOUNT 1: the OPT record */
    3, 'w', 'e', 'b',                   /* QNAME */
    3, 's', 'v', 'c',
    4, 't', 'e', 's', 't',
    0,
    0x00, 0x01,                         /* QTYPE A */
    0x00, 0x01,                         /* QCLASS IN */
    0x00,                               /* OPT (RFC 6891 6.1.2): root owner */
    0x00, 0x29,                         /* TYPE 41 */
    0x10, 0x00,                         /* CLASS: UDP payload size 4096 */
    0x00, 0x00, 0x00, 0x00,             /* TTL: extended RCODE, version 0, flags 0 */
    0x00, 0x00,                         /* RDLENGTH 0 */
};
/* clang-format on */

static void check_query(const char *qname, uint16_t qtype, const uint8_t *want, size_t want_len)
{
    uint8_t buf[600];
    memset(buf, 0xAA, sizeof(buf));
    size_t n = bth_dns_build_query(0xbeef, qname, qtype, buf, sizeof(buf));
    assert_int_equal(n, want_len);
    assert_memory_equal(buf, want, want_len);
    for (size_t i = n; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xAA);
}

static void test_query_bytes(void **state)
{
    assert_int_equal(sizeof(query_web_a), 41);
    check_query("web.svc.test", BTH_DNS_TYPE_A, query_web_a, sizeof(query_web_a));
    /* a trailing dot names the same (absolute) name */
    check_query("web.svc.test.", BTH_DNS_TYPE_A, query_web_a, sizeof(query_web_a));

    /* SRV: only QTYPE differs; the case of the name is kept */
    uint8_t want[sizeof(query_web_a)];
    memcpy(want, query_web_a, sizeof(want));
    want[27] = 33;
    check_query("web.svc.test", BTH_DNS_TYPE_SRV, want, sizeof(want));
    want[13] = 'W';
    want[27] = 28;
    check_query("Web.svc.test", BTH_DNS_TYPE_AAAA, want, sizeof(want));

    /* a one-label name */
    /* clang-format off */
    static const uint8_t one[] = {
        0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1,
        1, 'a', 0, 0, 1, 0, 1,
        0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0,
    };
    /* clang-format on */
    check_query("a", BTH_DNS_TYPE_A, one, sizeof(one));
    check_query("a.", BTH_DNS_TYPE_A, one, sizeof(one));
}

/* <n> characters of labels of at most <label> characters, dot-separated. */
static void make_name(char *out, size_t n, size_t label)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (run == label && i + 1 < n) {
            out[i] = '.';
            run = 0;
        } else {
            out[i] = (char)('a' + i % 26);
            run++;
        }
    }
    out[n] = '\0';
}

static void test_query_invalid_names(void **state)
{
    uint8_t buf[600];
    char nm[300];
    static const char *const bad[] = {"",       ".",   "..",  "a..b",          ".a",
                                      "a.b..c", "..a", "a..", "web.svc.test.."};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        if (bth_dns_build_query(1, bad[i], BTH_DNS_TYPE_A, buf, sizeof(buf)) != 0)
            fail_msg("name \"%s\" accepted", bad[i]);
    }

    /* labels: 63 bytes at most */
    memset(nm, 'x', 63);
    strcpy(nm + 63, ".svc");
    assert_int_equal(bth_dns_build_query(1, nm, BTH_DNS_TYPE_A, buf, sizeof(buf)),
                     12 + 69 + 4 + 11);
    assert_int_equal(buf[12], 63);
    memset(nm, 'x', 64);
    strcpy(nm + 64, ".svc");
    assert_int_equal(bth_dns_build_query(1, nm, BTH_DNS_TYPE_A, buf, sizeof(buf)), 0);
    strcpy(nm, "svc.");
    memset(nm + 4, 'x', 64);
    nm[68] = '\0';
    assert_int_equal(bth_dns_build_query(1, nm, BTH_DNS_TYPE_A, buf, sizeof(buf)), 0);

    /* names: 253 characters at most (255 bytes on the wire), plus an optional dot */
    make_name(nm, 253, 63);
    assert_int_equal(strlen(nm), 253);
    assert_int_equal(bth_dns_build_query(1, nm, BTH_DNS_TYPE_A, buf, sizeof(buf)),
                     12 + 255 + 4 + 11);
    strcat(nm, ".");
    assert_int_equal(bth_dns_build_query(1, nm, BTH_DNS_TYPE_A, buf, sizeof(buf)),
                     12 + 255 + 4 + 11);
    make_name(nm, 254, 63);
    assert_int_equal(bth_dns_build_query(1, nm, BTH_DNS_TYPE_A, buf, sizeof(buf)), 0);
    make_name(nm, 290, 20);
    assert_int_equal(bth_dns_build_query(1, nm, BTH_DNS_TYPE_A, buf, sizeof(buf)), 0);
}

static void test_query_small_cap(void **state)
{
    uint8_t buf[64];
    memset(buf, 0xAA, sizeof(buf));
    assert_int_equal(bth_dns_build_query(0xbeef, "web.svc.test", 1, buf, 0), 0);
    assert_int_equal(bth_dns_build_query(0xbeef, "web.svc.test", 1, buf, 12), 0);
    assert_int_equal(bth_dns_build_query(0xbeef, "web.svc.test", 1, buf, 40), 0);
    for (size_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xAA);
    /* exactly enough */
    assert_int_equal(bth_dns_build_query(0xbeef, "web.svc.test", 1, buf, 41), 41);
    assert_memory_equal(buf, query_web_a, 41);
    assert_int_equal(buf[41], 0xAA);
}

/* ---- answers ---- */

static void test_answer_a(void **state)
{
    struct msg m;
    header(&m, 0x1234, F_RESPONSE, 1, 2, 0, 0);
    question(&m, "Web.SVC.test", BTH_DNS_TYPE_A); /* resolvers may echo 0x20 case */
    rr_a(&m, 60, "10.0.0.1");
    rr_a(&m, 300, "10.0.0.2");

    struct bth_dns_answer out = answer(8);
    assert_int_equal(parse(&m, 0x1234, "web.svc.test", BTH_DNS_TYPE_A, &out), 0);
    assert_int_equal(out.rcode, 0);
    assert_false(out.truncated);
    assert_int_equal(out.n, 2);
    check_a(&recs[0], "web.svc.test", 60, "10.0.0.1");
    check_a(&recs[1], "web.svc.test", 300, "10.0.0.2");

    /* the asked name matches whatever its case or trailing dot */
    out = answer(8);
    assert_int_equal(parse(&m, 0x1234, "WEB.svc.Test.", BTH_DNS_TYPE_A, &out), 0);
    assert_int_equal(out.n, 2);
}

static void test_answer_aaaa(void **state)
{
    struct msg m;
    uint8_t a6[16];
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", a6), 1);
    header(&m, 7, F_RESPONSE, 1, 1, 0, 0);
    question(&m, "web.svc.test", BTH_DNS_TYPE_AAAA);
    ptr(&m, QNAME_OFF);
    size_t at = rr_begin(&m, BTH_DNS_TYPE_AAAA, 1, 30);
    raw(&m, a6, 16);
    rd_end(&m, at);

    struct bth_dns_answer out = answer(8);
    assert_int_equal(parse(&m, 7, "web.svc.test", BTH_DNS_TYPE_AAAA, &out), 0);
    assert_int_equal(out.n, 1);
    assert_int_equal(recs[0].type, BTH_DNS_TYPE_AAAA);
    assert_string_equal(recs[0].name, "web.svc.test");
    assert_int_equal(recs[0].ttl, 30);
    assert_memory_equal(recs[0].addr, a6, 16);
}

/* _http._tcp.web.svc.test SRV: two targets, their addresses in the additional section
 * (and the OPT record a resolver adds there). */
static void build_srv(struct msg *m)
{
    header(m, 0x4242, F_RESPONSE, 1, 2, 0, 4);
    question(m, "_http._tcp.web.svc.test", BTH_DNS_TYPE_SRV);
    const uint16_t web_off = QNAME_OFF + 6 + 5; /* "web.svc.test" inside the question */

    ptr(m, QNAME_OFF);
    size_t at = rr_begin(m, BTH_DNS_TYPE_SRV, 1, 120);
    u16(m, 10);   /* priority */
    u16(m, 60);   /* weight */
    u16(m, 8080); /* port */
    name(m, "Node-1.WEB.svc.test");
    rd_end(m, at);

    ptr(m, QNAME_OFF);
    at = rr_begin(m, BTH_DNS_TYPE_SRV, 1, 90);
    u16(m, 20);
    u16(m, 40);
    u16(m, 8081);
    size_t node2 = m->n;
    labels(m, "node-2");
    ptr(m, web_off); /* compressed: the rest is the question's "web.svc.test" */
    rd_end(m, at);

    /* additional: node-1 A (uncompressed), node-2 A and AAAA (pointers into the SRV data) */
    name(m, "node-1.web.svc.test");
    at = rr_begin(m, BTH_DNS_TYPE_A, 1, 45);
    raw(m, "\x0a\x00\x01\x01", 4);
    rd_end(m, at);
    ptr(m, (uint16_t)node2);
    at = rr_begin(m, BTH_DNS_TYPE_A, 1, 46);
    raw(m, "\x0a\x00\x01\x02", 4);
    rd_end(m, at);
    ptr(m, (uint16_t)node2);
    at = rr_begin(m, BTH_DNS_TYPE_AAAA, 1, 47);
    static const uint8_t fd02[16] = {0xfd, [15] = 0x02};
    raw(m, fd02, 16);
    rd_end(m, at);
    /* OPT: root owner, class = payload size, no data; not a record for us */
    u8(m, 0);
    at = rr_begin(m, 41, 4096, 0);
    rd_end(m, at);
}

static void test_answer_srv(void **state)
{
    struct msg m;
    build_srv(&m);
    struct bth_dns_answer out = answer(8);
    assert_int_equal(parse(&m, 0x4242, "_http._tcp.web.svc.test", BTH_DNS_TYPE_SRV, &out), 0);
    assert_int_equal(out.rcode, 0);
    assert_int_equal(out.n, 5);

    const struct bth_dns_record *r = &recs[0];
    assert_int_equal(r->type, BTH_DNS_TYPE_SRV);
    assert_string_equal(r->name, "_http._tcp.web.svc.test");
    assert_int_equal(r->ttl, 120);
    assert_int_equal(r->priority, 10);
    assert_int_equal(r->weight, 60);
    assert_int_equal(r->port, 8080);
    assert_string_equal(r->target, "node-1.web.svc.test");
    r = &recs[1];
    assert_int_equal(r->type, BTH_DNS_TYPE_SRV);
    assert_int_equal(r->ttl, 90);
    assert_int_equal(r->priority, 20);
    assert_int_equal(r->weight, 40);
    assert_int_equal(r->port, 8081);
    assert_string_equal(r->target, "node-2.web.svc.test");

    check_a(&recs[2], "node-1.web.svc.test", 45, "10.0.1.1");
    check_a(&recs[3], "node-2.web.svc.test", 46, "10.0.1.2");
    assert_int_equal(recs[4].type, BTH_DNS_TYPE_AAAA);
    assert_string_equal(recs[4].name, "node-2.web.svc.test");
    assert_int_equal(recs[4].addr[0], 0xfd);
    assert_int_equal(recs[4].addr[15], 0x02);
}

/* An SRV target must lie inside its record's data. */
static void test_answer_srv_target_outside(void **state)
{
    struct msg m;
    header(&m, 1, F_RESPONSE, 1, 1, 0, 0);
    question(&m, "_x._tcp.svc", BTH_DNS_TYPE_SRV);
    ptr(&m, QNAME_OFF);
    size_t at = rr_begin(&m, BTH_DNS_TYPE_SRV, 1, 1);
    u16(&m, 1);
    u16(&m, 1);
    u16(&m, 80);
    u8(&m, 4);
    raw(&m, "node", 4);
    rd_end(&m, at); /* RDLENGTH ends here, before the name's end */
    u8(&m, 0);      /* ...which follows the record */
    struct bth_dns_answer out = answer(8);
    assert_int_equal(parse(&m, 1, "_x._tcp.svc", BTH_DNS_TYPE_SRV, &out), -1);
}

static void test_answer_not_ours(void **state)
{
    struct msg m;
    header(&m, 0x1234, F_RESPONSE, 1, 1, 0, 0);
    question(&m, "web.svc.test", BTH_DNS_TYPE_A);
    rr_a(&m, 60, "10.0.0.1");
    struct bth_dns_answer out = answer(8);
    assert_int_equal(parse(&m, 0x1234, "web.svc.test", BTH_DNS_TYPE_A, &out), 0);
    assert_int_equal(out.n, 1);

    /* wrong id */
    out = answer(8);
    assert_int_equal(parse(&m, 0x1235, "web.svc.test", BTH_DNS_TYPE_A, &out), -1);
    assert_int_equal(out.n, 0);
    /* question name or type differ */
    out = answer(8);
    assert_int_equal(parse(&m, 0x1234, "api.svc.test", BTH_DNS_TYPE_A, &out), -1);
    assert_int_equal(out.n, 0);
    assert_int_equal(parse(&m, 0x1234, "web.svc", BTH_DNS_TYPE_A, &out), -1);
    assert_int_equal(parse(&m, 0x1234, "web.svc.test.x", BTH_DNS_TYPE_A, &out), -1);
    assert_int_equal(parse(&m, 0x1234, "web.svc.test", BTH_DNS_TYPE_AAAA, &out), -1);
    assert_int_equal(parse(&m, 0x1234, "web.svc.test", BTH_DNS_TYPE_SRV, &out), -1);
    assert_int_equal(out.n, 0);

    /* a query, not a response (QR 0) */
    struct msg q = m;
    q.b[2] = F_QUERY >> 8;
    q.b[3] = 0;
    assert_int_equal(parse(&q, 0x1234, "web.svc.test", BTH_DNS_TYPE_A, &out), -1);
    /* no question, or two */
    q = m;
    q.b[5] = 0;
    assert_int_equal(parse(&q, 0x1234, "web.svc.test", BTH_DNS_TYPE_A, &out), -1);
    q.b[5] = 2;
    assert_int_equal(parse(&q, 0x1234, "web.svc.test", BTH_DNS_TYPE_A, &out), -1);
    /* shorter than a header; the question cut */
    for (size_t cut = 0; cut < 12 + 14 + 4; cut++) {
        if (bth_dns_parse_answer(m.b, cut, 0x1234, "web.svc.test", BTH_DNS_TYPE_A, &out) != -1)
            fail_msg("cut at %zu accepted", cut);
    }
}

static void test_answer_nxdomain(void **state)
{
    struct msg m;
    header(&m, 9, F_NXDOMAIN, 1, 0, 1, 0);
    question(&m, "gone.svc.test", BTH_DNS_TYPE_A);
    /* authority: the zone's SOA */
    ptr(&m, QNAME_OFF + 5);
    size_t at = rr_begin(&m, 6, 1, 60);
    name(&m, "ns.svc.test");
    name(&m, "admin.svc.test");
    for (int i = 0; i < 5; i++)
        u32(&m, 1);
    rd_end(&m, at);

    struct bth_dns_answer out = answer(8);
    assert_int_equal(parse(&m, 9, "gone.svc.test", BTH_DNS_TYPE_A, &out), 0);
    assert_int_equal(out.rcode, 3);
    assert_false(out.truncated);
    assert_int_equal(out.n, 0);

    /* SERVFAIL, no records at all */
    header(&m, 9, 0x8182, 1, 0, 0, 0);
    question(&m, "gone.svc.test", BTH_DNS_TYPE_A);
    out = answer(8);
    assert_int_equal(parse(&m, 9, "gone.svc.test", BTH_DNS_TYPE_A, &out), 0);
    assert_int_equal(out.rcode, 2);
    assert_int_equal(out.n, 0);
}

static void test_answer_compression_loop(void **state)
{
    struct msg m;
    struct bth_dns_answer out;

    /* an answer owner that points at itself */
    header(&m, 1, F_RESPONSE, 1, 1, 0, 0);
    question(&m, "web.svc.test", BTH_DNS_TYPE_A);
    ptr(&m, (uint16_t)m.n);
    size_t at = rr_begin(&m, BTH_DNS_TYPE_A, 1, 1);
    raw(&m, "\x01\x02\x03\x04", 4);
    rd_end(&m, at);
    out = answer(8);
    assert_int_equal(parse(&m, 1, "web.svc.test", BTH_DNS_TYPE_A, &out), -1);

    /* the question name itself */
    header(&m, 1, F_RESPONSE, 1, 0, 0, 0);
    ptr(&m, QNAME_OFF);
    u16(&m, 1);
    u16(&m, 1);
    out = answer(8);
    assert_int_equal(parse(&m, 1, "web.svc.test", BTH_DNS_TYPE_A, &out), -1);

    /* two pointers to each other, behind a label */
    header(&m, 1, F_RESPONSE, 1, 1, 0, 0);
    question(&m, "web.svc.test", BTH_DNS_TYPE_A);
    size_t p1 = m.n;
    u8(&m, 1);
    u8(&m, 'x');
    ptr(&m, (uint16_t)(p1 + 4));
    ptr(&m, (uint16_t)p1);
    at = rr_begin(&m, BTH_DNS_TYPE_A, 1, 1);
    raw(&m, "\x01\x02\x03\x04", 4);
    rd_end(&m, at);
    out = answer(8);
    assert_int_equal(parse(&m, 1, "web.svc.test", BTH_DNS_TYPE_A, &out), -1);

    /* an SRV target that loops */
    header(&m, 1, F_RESPONSE, 1, 1, 0, 0);
    question(&m, "_a._tcp.svc", BTH_DNS_TYPE_SRV);
    ptr(&m, QNAME_OFF);
    at = rr_begin(&m, BTH_DNS_TYPE_SRV, 1, 1);
    u16(&m, 1);
    u16(&m, 1);
    u16(&m, 80);
    ptr(&m, (uint16_t)m.n);
    rd_end(&m, at);
    out = answer(8);
    assert_int_equal(parse(&m, 1, "_a._tcp.svc", BTH_DNS_TYPE_SRV, &out), -1);

    /* a chain of 16 pointers is followed, one of 17 is not; the chain sits in the data of
     * a record of an unknown type */
    for (int hops = 16; hops <= 17; hops++) {
        header(&m, 1, F_RESPONSE, 1, 2, 0, 0);
        question(&m, "web.svc.test", BTH_DNS_TYPE_A);
        ptr(&m, QNAME_OFF);
        at = rr_begin(&m, 65280, 1, 1);
        uint16_t prev = QNAME_OFF;
        for (int i = 0; i < hops - 1; i++) {
            uint16_t here = (uint16_t)m.n;
            ptr(&m, prev);
            prev = here;
        }
        rd_end(&m, at);
        ptr(&m, prev);
        at = rr_begin(&m, BTH_DNS_TYPE_A, 1, 1);
        raw(&m, "\x01\x02\x03\x04", 4);
        rd_end(&m, at);
        out = answer(8);
        int r = parse(&m, 1, "web.svc.test", BTH_DNS_TYPE_A, &out);
        if (hops == 16) {
            assert_int_equal(r, 0);
            assert_int_equal(out.n, 1);
            assert_string_equal(recs[0].name, "web.svc.test");
        } else {
            assert_int_equal(r, -1);
        }
    }
}

static void test_answer_past_end(void **state)
{
    struct msg m;
    struct bth_dns_answer out;

    /* a pointer past the end of the message */
    header(&m, 1, F_RESPONSE, 1, 1, 0, 0);
    question(&m, "web.svc.test", BTH_DNS_TYPE_A);
    ptr(&m, 0x3ff);
    size_t at = rr_begin(&m, BTH_DNS_TYPE_A, 1, 1);
    raw(&m, "\x01\x02\x03\x04", 4);
    rd_end(&m, at);
    out = answer(8);
    assert_int_equal(parse(&m, 1, "web.svc.test", BTH_DNS_TYPE_A, &out), -1);

    /* a pointer to the very end, and one cut after its first byte */
    header(&m, 1, F_RESPONSE, 1, 1, 0, 0);
    question(&m, "web.svc.test", BTH_DNS_TYPE_A);
    ptr(&m, (uint16_t)(m.n + 16));
    at = rr_begin(&m, BTH_DNS_TYPE_A, 1, 1);
    raw(&m, "\x01\x02\x03\x04", 4);
    rd_end(&m, at);
    assert_int_equal(m.n, 12 + 18 + 16);
    out = answer(8);
    assert_int_equal(parse(&m, 1, "web.svc.test", BTH_DNS_TYPE_A, &out), -1);
    header(&m, 1, F_RESPONSE, 1, 1, 0, 0);
    question(&m, "web.svc.test", BTH_DNS_TYPE_A);
    u8(&m, 0xc0);
    assert_int_equal(parse(&m, 1, "web.svc.test", BTH_DNS_TYPE_A, &out), -1);

    /* a label longer than what is left */
    header(&m, 1, F_RESPONSE, 1, 0, 0, 0);
    u8(&m, 40);
    raw(&m, "abc", 3);
    assert_int_equal(parse(&m, 1, "abc", BTH_DNS_TYPE_A, &out), -1);
    /* label types 01 and 10 (RFC 6891 made them obsolete) */
    header(&m, 1, F_RESPONSE, 1, 0, 0, 0);
    u8(&m, 0x41);
    raw(&m, "a\0\0\1\0\1", 6);
    assert_int_equal(parse(&m, 1, "a", BTH_DNS_TYPE_A, &out), -1);
    m.b[12] = 0x81;
    assert_int_equal(parse(&m, 1, "a", BTH_DNS_TYPE_A, &out), -1);
    m.b[12] = 0x01; /* the baseline is fine */
    assert_int_equal(parse(&m, 1, "a", BTH_DNS_TYPE_A, &out), 0);

    /* RDLENGTH past the end */
    static const uint16_t rdlens[] = {5, 6, 100, 0x8000, 0xffff};
    for (size_t i = 0; i < ARRAY_SIZE(rdlens); i++) {
        uint16_t rdlen = rdlens[i];
        header(&m, 1, F_RESPONSE, 1, 1, 0, 0);
        question(&m, "web.svc.test", BTH_DNS_TYPE_A);
        ptr(&m, QNAME_OFF);
        rr_begin(&m, BTH_DNS_TYPE_A, 1, 1);
        m.b[m.n - 2] = (uint8_t)(rdlen >> 8);
        m.b[m.n - 1] = (uint8_t)rdlen;
        raw(&m, "\x01\x02\x03\x04", 4);
        out = answer(8);
        assert_int_equal(parse(&m, 1, "web.svc.test", BTH_DNS_TYPE_A, &out), -1);
        assert_int_equal(out.n, 0);
    }

    /* more records announced than present */
    header(&m, 1, F_RESPONSE, 1, 3, 0, 0);
    question(&m, "web.svc.test", BTH_DNS_TYPE_A);
    rr_a(&m, 1, "10.0.0.1");
    rr_a(&m, 1, "10.0.0.2");
    out = answer(8);
    assert_int_equal(parse(&m, 1, "web.svc.test", BTH_DNS_TYPE_A, &out), -1);
}

static void test_answer_truncated(void **state)
{
    struct msg m;
    header(&m, 5, F_TC, 1, 3, 0, 0);
    question(&m, "web.svc.test", BTH_DNS_TYPE_A);
    rr_a(&m, 10, "10.0.0.1");
    rr_a(&m, 11, "10.0.0.2");
    size_t whole = m.n;
    rr_a(&m, 12, "10.0.0.3");
    size_t full = m.n;

    /* cut anywhere inside the third record */
    for (size_t cut = whole; cut < full; cut++) {
        struct bth_dns_answer out = answer(8);
        int r = bth_dns_parse_answer(m.b, cut, 5, "web.svc.test", BTH_DNS_TYPE_A, &out);
        if (r != 0 || out.n != 2 || !out.truncated)
            fail_msg("cut at %zu: %d, %zu records", cut, r, out.n);
        check_a(&recs[0], "web.svc.test", 10, "10.0.0.1");
        check_a(&recs[1], "web.svc.test", 11, "10.0.0.2");
    }
    /* the whole message: all three */
    struct bth_dns_answer out = answer(8);
    assert_int_equal(parse(&m, 5, "web.svc.test", BTH_DNS_TYPE_A, &out), 0);
    assert_true(out.truncated);
    assert_int_equal(out.n, 3);

    /* without TC a cut message is malformed */
    m.b[2] &= (uint8_t)~0x02;
    out = answer(8);
    assert_int_equal(bth_dns_parse_answer(m.b, full - 1, 5, "web.svc.test", 1, &out), -1);
}

static void test_answer_sections(void **state)
{
    struct msg m;
    header(&m, 3, F_RESPONSE, 1, 1, 2, 1);
    question(&m, "web.svc.test", BTH_DNS_TYPE_A);
    rr_a(&m, 1, "10.0.0.1"); /* answer */
    rr_a(&m, 2, "10.9.9.1"); /* authority: not an answer, even of the asked type */
    name(&m, "ns1.svc.test");
    size_t at = rr_begin(&m, BTH_DNS_TYPE_A, 1, 3);
    raw(&m, "\x0a\x09\x09\x02", 4);
    rd_end(&m, at);
    name(&m, "ns1.svc.test"); /* additional */
    at = rr_begin(&m, BTH_DNS_TYPE_A, 1, 4);
    raw(&m, "\x0a\x00\x00\x35", 4);
    rd_end(&m, at);

    struct bth_dns_answer out = answer(8);
    assert_int_equal(parse(&m, 3, "web.svc.test", BTH_DNS_TYPE_A, &out), 0);
    assert_int_equal(out.n, 2);
    check_a(&recs[0], "web.svc.test", 1, "10.0.0.1");
    check_a(&recs[1], "ns1.svc.test", 4, "10.0.0.53");
}

static void test_answer_cap(void **state)
{
    struct msg m;
    header(&m, 3, F_RESPONSE, 1, 4, 0, 0);
    question(&m, "web.svc.test", BTH_DNS_TYPE_A);
    rr_a(&m, 1, "10.0.0.1");
    rr_a(&m, 2, "10.0.0.2");
    rr_a(&m, 3, "10.0.0.3");
    rr_a(&m, 4, "10.0.0.4");

    struct bth_dns_answer out = answer(2);
    assert_int_equal(parse(&m, 3, "web.svc.test", BTH_DNS_TYPE_A, &out), 0);
    assert_int_equal(out.n, 2);
    check_a(&recs[0], "web.svc.test", 1, "10.0.0.1");
    check_a(&recs[1], "web.svc.test", 2, "10.0.0.2");
    assert_int_equal(recs[2].type, 0xA5A5); /* untouched */

    out = answer(0);
    assert_int_equal(parse(&m, 3, "web.svc.test", BTH_DNS_TYPE_A, &out), 0);
    assert_int_equal(out.n, 0);
    /* a bad record past the cap still fails the message */
    m.b[7] = 5;
    u8(&m, 0xc0);
    out = answer(2);
    assert_int_equal(parse(&m, 3, "web.svc.test", BTH_DNS_TYPE_A, &out), -1);
}

static void test_answer_ttl(void **state)
{
    static const uint32_t in[] = {0, 1, 0x7fffffff, 0x80000000, 0xffffffff};
    static const uint32_t want[] = {0, 1, 0x7fffffff, 0, 0};
    struct msg m;
    header(&m, 3, F_RESPONSE, 1, ARRAY_SIZE(in), 0, 0);
    question(&m, "web.svc.test", BTH_DNS_TYPE_A);
    for (size_t i = 0; i < ARRAY_SIZE(in); i++)
        rr_a(&m, in[i], "10.0.0.1");
    struct bth_dns_answer out = answer(8);
    assert_int_equal(parse(&m, 3, "web.svc.test", BTH_DNS_TYPE_A, &out), 0);
    assert_int_equal(out.n, ARRAY_SIZE(in));
    for (size_t i = 0; i < ARRAY_SIZE(in); i++)
        assert_int_equal(recs[i].ttl, want[i]);
}

/* www CNAME web; the resolver followed it and adds web's records. Records that are not A,
 * AAAA or SRV, of another class, or of the wrong size are skipped. */
static void test_answer_cname_and_skips(void **state)
{
    struct msg m;
    header(&m, 0xabcd, F_RESPONSE, 1, 6, 0, 0);
    question(&m, "www.svc.test", BTH_DNS_TYPE_A);
    ptr(&m, QNAME_OFF);
    size_t at = rr_begin(&m, 5, 1, 300); /* CNAME */
    size_t web = m.n;
    labels(&m, "web");
    ptr(&m, QNAME_OFF + 4); /* "svc.test" */
    rd_end(&m, at);
    ptr(&m, (uint16_t)web);
    at = rr_begin(&m, BTH_DNS_TYPE_A, 1, 20);
    raw(&m, "\x0a\x00\x00\x01", 4);
    rd_end(&m, at);
    ptr(&m, (uint16_t)web); /* class CH: skipped */
    at = rr_begin(&m, BTH_DNS_TYPE_A, 3, 20);
    raw(&m, "\x0a\x00\x00\x09", 4);
    rd_end(&m, at);
    ptr(&m, (uint16_t)web); /* an A record of 5 bytes: skipped */
    at = rr_begin(&m, BTH_DNS_TYPE_A, 1, 20);
    raw(&m, "\x0a\x00\x00\x09\x09", 5);
    rd_end(&m, at);
    ptr(&m, (uint16_t)web); /* TXT: skipped */
    at = rr_begin(&m, 16, 1, 20);
    raw(&m, "\x02hi", 3);
    rd_end(&m, at);
    ptr(&m, (uint16_t)web);
    at = rr_begin(&m, BTH_DNS_TYPE_A, 1, 21);
    raw(&m, "\x0a\x00\x00\x02", 4);
    rd_end(&m, at);

    struct bth_dns_answer out = answer(8);
    assert_int_equal(parse(&m, 0xabcd, "www.svc.test", BTH_DNS_TYPE_A, &out), 0);
    assert_int_equal(out.n, 2);
    check_a(&recs[0], "web.svc.test", 20, "10.0.0.1");
    check_a(&recs[1], "web.svc.test", 21, "10.0.0.2");
}

/* Names up to the limit are read whole; longer ones are refused, not cut. */
static void test_answer_long_names(void **state)
{
    char nm[300];
    struct msg m;
    make_name(nm, 253, 63);
    header(&m, 1, F_RESPONSE, 1, 1, 0, 0);
    question(&m, nm, BTH_DNS_TYPE_A);
    rr_a(&m, 1, "10.0.0.1");
    struct bth_dns_answer out = answer(8);
    assert_int_equal(parse(&m, 1, nm, BTH_DNS_TYPE_A, &out), 0);
    assert_int_equal(out.n, 1);
    assert_string_equal(recs[0].name, nm);

    /* 256 characters do not fit BTH_DNS_NAME_MAX with the NUL */
    make_name(nm, 256, 60);
    header(&m, 1, F_RESPONSE, 1, 0, 0, 0);
    question(&m, nm, BTH_DNS_TYPE_A);
    out = answer(8);
    assert_int_equal(parse(&m, 1, nm, BTH_DNS_TYPE_A, &out), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_bytes),
        cmocka_unit_test(test_query_invalid_names),
        cmocka_unit_test(test_query_small_cap),
        cmocka_unit_test(test_answer_a),
        cmocka_unit_test(test_answer_aaaa),
        cmocka_unit_test(test_answer_srv),
        cmocka_unit_test(test_answer_srv_target_outside),
        cmocka_unit_test(test_answer_not_ours),
        cmocka_unit_test(test_answer_nxdomain),
        cmocka_unit_test(test_answer_compression_loop),
        cmocka_unit_test(test_answer_past_end),
        cmocka_unit_test(test_answer_truncated),
        cmocka_unit_test(test_answer_sections),
        cmocka_unit_test(test_answer_cap),
        cmocka_unit_test(test_answer_ttl),
        cmocka_unit_test(test_answer_cname_and_skips),
        cmocka_unit_test(test_answer_long_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
