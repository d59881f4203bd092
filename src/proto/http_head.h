/* SPDX-License-Identifier: MIT */
/* Any thread; pure functions over caller-owned structs. An HTTP/1.x message head as parsed
 * by llhttp: spans (offsets into the head bytes) instead of copies, so parsing allocates
 * nothing per header. Also the hop-by-hop classification of RFC 9110 section 7.6.1. */
#ifndef BERTH_HTTP_HEAD_H
#define BERTH_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

struct evbuffer;

#define BTH_HTTP_MAX_HEADERS 128

enum bth_hdr_kind {
    BTH_HDR_OTHER = 0,
    BTH_HDR_CONNECTION,
    BTH_HDR_KEEP_ALIVE,
    BTH_HDR_PROXY_CONNECTION,
    BTH_HDR_TE,
    BTH_HDR_TRAILER,
    BTH_HDR_UPGRADE,
    BTH_HDR_TRANSFER_ENCODING,
    BTH_HDR_CONTENT_LENGTH,
    BTH_HDR_HOST,
    BTH_HDR_X_FORWARDED_FOR,
    BTH_HDR_X_FORWARDED_PROTO,
    BTH_HDR_X_FORWARDED_PORT,
    BTH_HDR_X_REQUEST_ID,
    BTH_HDR_USER_AGENT,
    BTH_HDR_COOKIE,
    BTH_HDR_SET_COOKIE,
    BTH_HDR_CONTENT_TYPE,
    BTH_HDR_GRPC_TIMEOUT,
    BTH_HDR__COUNT,
};

struct bth_span {
    uint32_t off;
    uint32_t len;
};

struct bth_http_hdr {
    struct bth_span name;
    struct bth_span value;
    uint8_t kind; /* enum bth_hdr_kind */
    bool drop;    /* not forwarded (hop-by-hop or replaced) */
};

struct bth_http_head {
    const char *base;       /* borrowed: the contiguous head bytes while parsing/forwarding */
    struct bth_span url;    /* request target (requests) */
    struct bth_span reason; /* reason phrase (responses) */
    struct bth_http_hdr hdrs[BTH_HTTP_MAX_HEADERS];
    unsigned nhdrs;
    bool in_value;              /* last callback was a header value */
    bool complete;              /* head finished: later callbacks (trailers) are not recorded */
    bool too_many;              /* more than BTH_HTTP_MAX_HEADERS */
    bool conn_close;            /* "Connection: close" */
    bool conn_keep_alive;       /* "Connection: keep-alive" */
    bool conn_upgrade;          /* "Connection: upgrade" */
    int idx[BTH_HDR__COUNT];    /* first header of each kind, -1 if absent */
    unsigned nhost;             /* Host fields: RFC 9112 3.2 allows exactly one */
    struct evbuffer *decode_to; /* borrowed: when set, body bytes are copied here */
};

/* llhttp settings for heads: they record spans and pause at the end of the head; after
 * resuming they pause again at the end of the message. parser->data must point to the
 * struct bth_http_head. */
extern const llhttp_settings_t bth_http_head_settings;

void bth_http_head_reset(struct bth_http_head *h);

/* Classifies header names and applies the Connection header: marks hop-by-hop headers and
 * those the Connection header names as dropped. Call once the head is complete. */
void bth_http_head_finish(struct bth_http_head *h);

enum bth_hdr_kind bth_http_hdr_kind(const char *name, size_t len);

static inline const char *bth_span_ptr(const struct bth_http_head *h, struct bth_span s)
{
    return h->base + s.off;
}

/* Transfer-Encoding as a list over all its fields (RFC 9112 6.1): whether the final coding
 * is chunked, with or without parameters ("gzip, chunked", "chunked;x=1"). False for a
 * value with a quoted string in it. Call after bth_http_head_finish. */
bool bth_http_head_te_chunked(const struct bth_http_head *h);

/* Writes to <out> the Transfer-Encoding value berth forwards when the final chunked coding
 * carries parameters (which llhttp, and so other parsers, do not read as chunked): every
 * coding of every field, trimmed, joined by ", ", the final one as a bare "chunked". <out>
 * needs bth_http_head_te_room(h) bytes. Returns the length written. */
size_t bth_http_head_te_reframe(const struct bth_http_head *h, char *out);
size_t bth_http_head_te_room(const struct bth_http_head *h);

/* Whether <s> (<len> bytes) is all tchar (RFC 9110 5.6.2); an empty string is. */
bool bth_http_token(const char *s, size_t len);

/* Case-insensitive comparison of a span with a lowercase literal. */
bool bth_span_ieq(const struct bth_http_head *h, struct bth_span s, const char *lower);

#endif /* BERTH_HTTP_HEAD_H */
