/* SPDX-License-Identifier: MIT */
/* llhttp glue for message heads: spans, not copies. llhttp may deliver one token in several
 * callbacks when bytes arrive in several reads; because the head stays in one evbuffer that
 * is pulled up (never drained) until complete, offsets from its start stay valid and the
 * pieces are always adjacent, so extending a span is enough. */
#include "http_head.h"

#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

static struct bth_http_head *head_of(llhttp_t *p)
{
    return p->data;
}

static uint32_t offset_of(const struct bth_http_head *h, const char *at)
{
    return (uint32_t)(at - h->base);
}

static void span_extend(struct bth_span *s, uint32_t off, size_t len, bool fresh)
{
    if (fresh) {
        s->off = off;
        s->len = (uint32_t)len;
    } else {
        s->len += (uint32_t)len;
    }
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct bth_http_head *h = head_of(p);
    if (h->complete)
        return 0; /* trailers: forwarded raw, not recorded */
    span_extend(&h->url, offset_of(h, at), len, h->url.len == 0);
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    struct bth_http_head *h = head_of(p);
    if (h->complete)
        return 0; /* trailers: forwarded raw, not recorded */
    span_extend(&h->reason, offset_of(h, at), len, h->reason.len == 0);
    return 0;
}

/* RFC 9110 5.6.2 tchar. llhttp 8 lets whitespace before the colon through ("Host : a"),
 * which proxies and servers read differently, so names are checked here too. */
bool bth_http_token(const char *s, size_t len)
{
    static const char tchar_extra[] = "!#$%&'*+-.^_`|~";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c != 0 && strchr(tchar_extra, c) != NULL)))
            return false;
    }
    return true;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct bth_http_head *h = head_of(p);
    if (h->complete)
        return 0; /* trailers: forwarded raw, not recorded */
    if (!bth_http_token(at, len)) {
        llhttp_set_error_reason(p, "Invalid character in header name");
        return HPE_USER;
    }
    if (h->in_value || h->nhdrs == 0) {
        /* first piece of a new name */
        h->in_value = false;
        if (h->nhdrs == BTH_HTTP_MAX_HEADERS) {
            h->too_many = true;
            return 0;
        }
        struct bth_http_hdr *hd = &h->hdrs[h->nhdrs++];
        memset(hd, 0, sizeof(*hd));
        hd->name.off = offset_of(h, at);
        hd->name.len = (uint32_t)len;
        return 0;
    }
    if (!h->too_many)
        h->hdrs[h->nhdrs - 1].name.len += (uint32_t)len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct bth_http_head *h = head_of(p);
    if (h->complete)
        return 0; /* trailers: forwarded raw, not recorded */
    if (h->too_many || h->nhdrs == 0)
        return 0;
    struct bth_http_hdr *hd = &h->hdrs[h->nhdrs - 1];
    span_extend(&hd->value, offset_of(h, at), len, hd->value.len == 0);
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    /* A value may be empty, in which case on_header_value never runs; the next name must
     * still start a new header. */
    head_of(p)->in_value = true;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p)
{
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct bth_http_head *h = head_of(p);
    if (h->decode_to != NULL)
        evbuffer_add(h->decode_to, at, len);
    return 0;
}

const llhttp_settings_t bth_http_head_settings = {
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_field_complete = on_header_field_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void bth_http_head_reset(struct bth_http_head *h)
{
    h->base = NULL;
    h->url.off = h->url.len = 0;
    h->reason.off = h->reason.len = 0;
    h->nhdrs = 0;
    h->in_value = false;
    h->too_many = false;
    h->conn_close = h->conn_keep_alive = h->conn_upgrade = false;
    h->decode_to = NULL;
    h->complete = false;
    h->nhost = 0;
    memset(h->idx, 0xff, sizeof(h->idx));
}

struct kind_name {
    const char *name;
    size_t len;
    enum bth_hdr_kind kind;
};

#define KN(s, k)                                                                                   \
    {                                                                                              \
        s, sizeof(s) - 1, k                                                                        \
    }
static const struct kind_name kind_names[] = {
    KN("host", BTH_HDR_HOST),
    KN("connection", BTH_HDR_CONNECTION),
    KN("keep-alive", BTH_HDR_KEEP_ALIVE),
    KN("proxy-connection", BTH_HDR_PROXY_CONNECTION),
    KN("te", BTH_HDR_TE),
    KN("trailer", BTH_HDR_TRAILER),
    KN("upgrade", BTH_HDR_UPGRADE),
    KN("transfer-encoding", BTH_HDR_TRANSFER_ENCODING),
    KN("content-length", BTH_HDR_CONTENT_LENGTH),
    KN("x-forwarded-for", BTH_HDR_X_FORWARDED_FOR),
    KN("x-forwarded-proto", BTH_HDR_X_FORWARDED_PROTO),
    KN("x-forwarded-port", BTH_HDR_X_FORWARDED_PORT),
    KN("x-request-id", BTH_HDR_X_REQUEST_ID),
    KN("user-agent", BTH_HDR_USER_AGENT),
    KN("cookie", BTH_HDR_COOKIE),
    KN("set-cookie", BTH_HDR_SET_COOKIE),
    KN("content-type", BTH_HDR_CONTENT_TYPE),
    KN("grpc-timeout", BTH_HDR_GRPC_TIMEOUT),
};

enum bth_hdr_kind bth_http_hdr_kind(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++) {
        if (kind_names[i].len == len && strncasecmp(kind_names[i].name, name, len) == 0)
            return kind_names[i].kind;
    }
    return BTH_HDR_OTHER;
}

bool bth_span_ieq(const struct bth_http_head *h, struct bth_span s, const char *lower)
{
    size_t n = strlen(lower);
    return s.len == n && strncasecmp(bth_span_ptr(h, s), lower, n) == 0;
}

static bool is_hop_by_hop(enum bth_hdr_kind k)
{
    switch (k) {
    case BTH_HDR_CONNECTION:
    case BTH_HDR_KEEP_ALIVE:
    case BTH_HDR_PROXY_CONNECTION:
    case BTH_HDR_TE:
    case BTH_HDR_TRAILER:
    case BTH_HDR_UPGRADE:
        return true;
    default:
        return false;
    }
}

/* Marks headers named by one Connection token (RFC 9110 7.6.1) and notes the tokens berth
 * itself acts on. */
static void apply_connection_token(struct bth_http_head *h, const char *tok, size_t len)
{
    if (len == 5 && strncasecmp(tok, "close", 5) == 0)
        h->conn_close = true;
    else if (len == 10 && strncasecmp(tok, "keep-alive", 10) == 0)
        h->conn_keep_alive = true;
    else if (len == 7 && strncasecmp(tok, "upgrade", 7) == 0)
        h->conn_upgrade = true;
    for (unsigned i = 0; i < h->nhdrs; i++) {
        struct bth_http_hdr *hd = &h->hdrs[i];
        /* Never let a client strip framing or routing headers this way (a known way to
         * smuggle past a proxy). */
        if (hd->kind == BTH_HDR_HOST || hd->kind == BTH_HDR_CONTENT_LENGTH ||
            hd->kind == BTH_HDR_TRANSFER_ENCODING)
            continue;
        if (hd->name.len == len && strncasecmp(bth_span_ptr(h, hd->name), tok, len) == 0)
            hd->drop = true;
    }
}

static void apply_connection_header(struct bth_http_head *h, const struct bth_http_hdr *hd)
{
    const char *v = bth_span_ptr(h, hd->value);
    size_t n = hd->value.len, i = 0;
    while (i < n) {
        while (i < n && (v[i] == ',' || v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t start = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i > start)
            apply_connection_token(h, v + start, i - start);
    }
}

void bth_http_head_finish(struct bth_http_head *h)
{
    h->complete = true;
    for (unsigned i = 0; i < h->nhdrs; i++) {
        struct bth_http_hdr *hd = &h->hdrs[i];
        hd->kind = (uint8_t)bth_http_hdr_kind(bth_span_ptr(h, hd->name), hd->name.len);
        if (h->idx[hd->kind] < 0)
            h->idx[hd->kind] = (int)i;
        h->nhost += hd->kind == BTH_HDR_HOST;
        if (is_hop_by_hop(hd->kind))
            hd->drop = true;
    }
    for (unsigned i = 0; i < h->nhdrs; i++) {
        if (h->hdrs[i].kind == BTH_HDR_CONNECTION || h->hdrs[i].kind == BTH_HDR_PROXY_CONNECTION)
            apply_connection_header(h, &h->hdrs[i]);
    }
}

/* Calls <fn> for each non-empty coding (OWS trimmed, parameters kept) of every
 * Transfer-Encoding field, in order. */
static void for_each_coding(const struct bth_http_head *h,
                            void (*fn)(const char *c, size_t n, void *arg), void *arg)
{
    for (unsigned i = 0; i < h->nhdrs; i++) {
        const struct bth_http_hdr *hd = &h->hdrs[i];
        if (hd->kind != BTH_HDR_TRANSFER_ENCODING)
            continue;
        const char *v = bth_span_ptr(h, hd->value);
        size_t n = hd->value.len, a = 0;
        while (a <= n) {
            size_t b = a;
            while (b < n && v[b] != ',')
                b++;
            size_t s = a, e = b;
            while (s < e && (v[s] == ' ' || v[s] == '\t'))
                s++;
            while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
                e--;
            if (e > s)
                fn(v + s, e - s, arg);
            a = b + 1;
        }
    }
}

struct last_coding {
    const char *c;
    size_t n;
};

static void note_last(const char *c, size_t n, void *arg)
{
    struct last_coding *l = arg;
    l->c = c;
    l->n = n;
}

/* Whether the coding <c> (<n> bytes, parameters possibly after ';') is chunked. */
static bool coding_is_chunked(const char *c, size_t n)
{
    size_t t = 0;
    while (t < n && c[t] != ';' && c[t] != ' ' && c[t] != '\t')
        t++;
    return t == 7 && strncasecmp(c, "chunked", 7) == 0;
}

bool bth_http_head_te_chunked(const struct bth_http_head *h)
{
    /* A quoted parameter may hold a comma ("gzip;q=\"x, chunked\""): with quotes, berth
     * does not take the list apart at all (the caller answers 501). */
    for (unsigned i = 0; i < h->nhdrs; i++) {
        const struct bth_http_hdr *hd = &h->hdrs[i];
        if (hd->kind == BTH_HDR_TRANSFER_ENCODING &&
            memchr(bth_span_ptr(h, hd->value), '"', hd->value.len) != NULL)
            return false;
    }
    struct last_coding l = {NULL, 0};
    for_each_coding(h, note_last, &l);
    return l.c != NULL && coding_is_chunked(l.c, l.n);
}

struct reframe {
    char *out;
    size_t len;
    struct last_coding last;
};

static void append_previous(const char *c, size_t n, void *arg)
{
    struct reframe *r = arg;
    if (r->last.c != NULL) {
        memcpy(r->out + r->len, r->last.c, r->last.n);
        r->len += r->last.n;
        memcpy(r->out + r->len, ", ", 2);
        r->len += 2;
    }
    r->last.c = c;
    r->last.n = n;
}

size_t bth_http_head_te_reframe(const struct bth_http_head *h, char *out)
{
    struct reframe r = {out, 0, {NULL, 0}};
    for_each_coding(h, append_previous, &r); /* all but the final coding */
    memcpy(out + r.len, "chunked", 7);
    return r.len + 7;
}

size_t bth_http_head_te_room(const struct bth_http_head *h)
{
    size_t n = 8;
    for (unsigned i = 0; i < h->nhdrs; i++) {
        if (h->hdrs[i].kind == BTH_HDR_TRANSFER_ENCODING)
            n += 3 * (size_t)h->hdrs[i].value.len + 2;
    }
    return n;
}
