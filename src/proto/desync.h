/* SPDX-License-Identifier: MIT */
/* Any thread; pure functions, no allocation, no global state, linear in the head size.
 * HTTP desync classification of a raw HTTP/1.x request head, in the four tiers of ELB's
 * desync mitigation mode (Compliant, Acceptable, Ambiguous, Severe), each with a reason named
 * as in aws/http-desync-guardian's case data (tests/data/desync-cases). The head is examined
 * byte for byte as received, before any parser normalises it, because disagreement between
 * parsers about those bytes is what a desync attack exploits. */
#ifndef BERTH_DESYNC_H
#define BERTH_DESYNC_H

#include <stddef.h>

/* Ordered: a higher value is riskier, so tiers compare with < and >. */
enum bth_desync_tier {
    BTH_DESYNC_COMPLIANT = 0, /* follows RFC 9110/9112 */
    BTH_DESYNC_ACCEPTABLE,    /* deviates from the RFCs without affecting message framing */
    BTH_DESYNC_AMBIGUOUS,     /* framing may be read differently by another parser */
    BTH_DESYNC_SEVERE,        /* framing is broken or contradictory: reject and close */
};

struct bth_desync_verdict {
    enum bth_desync_tier tier;
    const char *reason; /* static string, never NULL: "Compliant", "BadHeader", ... */
};

/* Classifies the raw request head <head> of <len> bytes: the request line, the header lines
 * and the terminating empty line exactly as received. Any byte may occur, including NUL, bare
 * CR, bare LF and obs-fold. Empty lines before the request line are skipped (RFC 9112 2.2).
 * The head ends where bth_desync_head_length() says; bytes after it (body, next request) are
 * ignored, and without a terminating empty line all <len> bytes are classified. <head> may be
 * NULL only when <len> is 0. The most severe finding wins; among findings of the same tier
 * the one listed first in the table in desync.c. Writes the verdict to <out>. */
void bth_desync_classify(const char *head, size_t len, struct bth_desync_verdict *out);

/* Returns the length of the request head at the start of <buf> (<len> bytes): up to and
 * including the empty line that ends it, or 0 while that line has not arrived. Leading empty
 * lines count as part of the head. Besides CRLF CRLF, a line end made of a bare LF ("\n\n",
 * "\r\n\n", "\n\r\n") also ends the head, so that such heads reach bth_desync_classify()
 * (which rates them Severe) instead of stalling the reader until a CRLF CRLF shows up. */
size_t bth_desync_head_length(const char *buf, size_t len);

/* Returns "Compliant", "Acceptable", "Ambiguous" or "Severe" (static), "?" out of range. */
const char *bth_desync_tier_name(enum bth_desync_tier t);

#endif /* BERTH_DESYNC_H */
