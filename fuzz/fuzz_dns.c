/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: DNS answers. The input is a DNS message; it goes to
 * bth_dns_parse_answer as the answer to the query it claims to answer (its own id, the
 * question's type, and the question name when written without pointers), with 8 record
 * slots, none, and 64 (the same records, more of them). Checks the records (types, NUL
 * within BTH_DNS_NAME_MAX, lowercase, TTL clamp), then builds a query for the question
 * name, which must read back as an empty answer to itself once its QR bit is set. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"

#define CAP     8
#define BIG_CAP 64

static void check_name(const char *s)
{
    const char *nul = memchr(s, '\0', BTH_DNS_NAME_MAX);
    if (nul == NULL)
        __builtin_trap();
    for (const char *p = s; p < nul; p++)
        if (*p >= 'A' && *p <= 'Z')
            __builtin_trap();
}

static void check_answer(const uint8_t *msg, const struct bth_dns_answer *a)
{
    if (a->n > a->cap)
        __builtin_trap();
    if (a->rcode != (msg[3] & 0x0f) || a->truncated != ((msg[2] & 0x02) != 0))
        __builtin_trap();
    for (size_t i = 0; i < a->n; i++) {
        const struct bth_dns_record *r = &a->records[i];
        if (r->type != BTH_DNS_TYPE_A && r->type != BTH_DNS_TYPE_AAAA &&
            r->type != BTH_DNS_TYPE_SRV)
            __builtin_trap();
        if (r->ttl > 0x7fffffff)
            __builtin_trap();
        check_name(r->name);
        check_name(r->target);
        if (r->type != BTH_DNS_TYPE_SRV && (r->port || r->weight || r->priority || r->target[0]))
            __builtin_trap();
        if (r->type == BTH_DNS_TYPE_A) {
            static const uint8_t zero[12];
            if (memcmp(r->addr + 4, zero, 12) != 0)
                __builtin_trap();
        }
    }
}

static int same_record(const struct bth_dns_record *x, const struct bth_dns_record *y)
{
    return x->type == y->type && x->ttl == y->ttl && strcmp(x->name, y->name) == 0 &&
           memcmp(x->addr, y->addr, 16) == 0 && x->priority == y->priority &&
           x->weight == y->weight && x->port == y->port && strcmp(x->target, y->target) == 0;
}

/* The question name at offset 12 when it is written out (no pointers), and the QTYPE after
 * it. Returns 0, or -1 when there is none. */
static int question_of(const uint8_t *msg, size_t len, char *name, uint16_t *qtype)
{
    size_t o = 12, w = 0;
    for (;;) {
        if (o >= len)
            return -1;
        uint8_t l = msg[o];
        if (l == 0)
            break;
        if (l > 63 || o + 1 + l > len || w + l + 2 > BTH_DNS_NAME_MAX)
            return -1;
        if (w > 0)
            name[w++] = '.';
        memcpy(name + w, msg + o + 1, l);
        w += l;
        o += 1 + l;
    }
    name[w] = '\0';
    if (o + 3 > len)
        return -1;
    *qtype = (uint16_t)(msg[o + 1] << 8 | msg[o + 2]);
    return 0;
}

/* A query for <name> must come back as an answer to itself with no records (the OPT
 * record in its additional section is not one). */
static void query_round_trip(const char *name, uint16_t id, uint16_t qtype)
{
    uint8_t big[600];
    size_t nlen = strlen(name);
    size_t len = bth_dns_build_query(id, name, qtype, big, sizeof(big));
    if (len == 0)
        return;
    if (name[nlen - 1] == '.')
        nlen--;
    if (len != 12 + nlen + 2 + 4 + 11)
        __builtin_trap();
    /* exact-size heap buffers: one byte less is refused, nothing is written past the end */
    uint8_t *q = malloc(len);
    if (q == NULL)
        return;
    if (bth_dns_build_query(id, name, qtype, q, len - 1) != 0 ||
        bth_dns_build_query(id, name, qtype, q, len) != len || memcmp(q, big, len) != 0)
        __builtin_trap();
    q[2] |= 0x80; /* QR */
    struct bth_dns_record recs[CAP];
    struct bth_dns_answer a = {.records = recs, .cap = CAP};
    if (bth_dns_parse_answer(q, len, id, name, qtype, &a) != 0 || a.n != 0 || a.rcode != 0 ||
        a.truncated)
        __builtin_trap();
    free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char fallback[] = "web.svc.test";
    char name[BTH_DNS_NAME_MAX];
    uint16_t id = 0, qtype = BTH_DNS_TYPE_A;
    if (size >= 2)
        id = (uint16_t)(data[0] << 8 | data[1]);
    if (question_of(data, size, name, &qtype) != 0)
        memcpy(name, fallback, sizeof(fallback));

    /* exact-size heap copies so that ASan sees any read or write past the end */
    struct bth_dns_record *recs = malloc(CAP * sizeof(*recs));
    struct bth_dns_record *big = malloc(BIG_CAP * sizeof(*big));
    if (recs == NULL || big == NULL) {
        free(recs);
        free(big);
        return 0;
    }
    struct bth_dns_answer a = {.records = recs, .cap = CAP};
    int r = bth_dns_parse_answer(data, size, id, name, qtype, &a);
    if (r != 0 && r != -1)
        __builtin_trap();
    if (r == 0)
        check_answer(data, &a);

    /* no slots: the same verdict */
    struct bth_dns_answer none = {.records = NULL, .cap = 0};
    if (bth_dns_parse_answer(data, size, id, name, qtype, &none) != r || none.n != 0)
        __builtin_trap();

    /* more slots: the same verdict and the same first records */
    struct bth_dns_answer more = {.records = big, .cap = BIG_CAP};
    if (bth_dns_parse_answer(data, size, id, name, qtype, &more) != r)
        __builtin_trap();
    if (r == 0) {
        check_answer(data, &more);
        if (more.n < a.n || (a.n < CAP && more.n != a.n))
            __builtin_trap();
        for (size_t i = 0; i < a.n; i++)
            if (!same_record(&recs[i], &more.records[i]))
                __builtin_trap();
    }

    /* the same answer with the name asked in upper case and with a trailing dot */
    if (r == 0 && strlen(name) + 1 < sizeof(name)) {
        char alt[BTH_DNS_NAME_MAX + 1];
        size_t l = strlen(name);
        for (size_t i = 0; i < l; i++)
            alt[i] = name[i] >= 'a' && name[i] <= 'z' ? (char)(name[i] - 32) : name[i];
        alt[l] = '.';
        alt[l + 1] = '\0';
        struct bth_dns_answer up = {.records = recs, .cap = CAP};
        if (l > 0 && name[l - 1] != '.' &&
            bth_dns_parse_answer(data, size, id, alt, qtype, &up) != 0)
            __builtin_trap();
    }
    free(recs);
    free(big);

    if (name[0] != '\0')
        query_round_trip(name, id, qtype);
    return 0;
}
