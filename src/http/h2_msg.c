/* SPDX-License-Identifier: MIT */
/* An HTTP/1.1 message berth wrote, read into HTTP/2 fields, DATA and trailers. */
#include "h2_msg.h"

#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "conn.h"
#include "mem.h"

void h2_msg_fini(struct h2_msg *m)
{
    if (m->data != NULL)
        evbuffer_free(m->data);
    bth_free(m->hbuf);
    bth_free(m->fields);
    *m = (struct h2_msg){0};
}

struct evbuffer *h2_msg_data(struct h2_msg *m)
{
    if (m->data == NULL)
        m->data = evbuffer_new();
    return m->data;
}

static int hbuf_add(struct h2_msg *m, const char *p, size_t n, bool lower)
{
    if (m->hlen + n > m->hcap) {
        size_t cap = m->hcap ? m->hcap * 2 : 512;
        while (cap < m->hlen + n)
            cap *= 2;
        char *b = bth_realloc(m->hbuf, cap);
        if (b == NULL)
            return -1;
        m->hbuf = b;
        m->hcap = cap;
    }
    char *d = m->hbuf + m->hlen;
    memcpy(d, p, n);
    if (lower) { /* HTTP/2 field names are lowercase (RFC 9113 8.2.1) */
        for (size_t i = 0; i < n; i++)
            d[i] = (char)(d[i] | ((d[i] >= 'A' && d[i] <= 'Z') << 5));
    }
    m->hlen += n;
    return 0;
}

static bool name_is(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

/* Fields HTTP/2 forbids (RFC 9113 8.2.2): they describe the HTTP/1.1 connection. TE is
 * left out too: a sender that wants trailers says "te: trailers" itself. */
static bool connection_specific(const char *n, size_t len)
{
    static const char *const names[] = {"connection",        "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade",    "te"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (name_is(n, len, names[i]))
            return true;
    }
    return false;
}

/* Appends the field at name_off/value_off to the list. */
static int push_nv(struct h2_msg *m)
{
    if (m->nfields == m->cap_fields) {
        size_t cap = m->cap_fields ? m->cap_fields * 2 : 16;
        struct h2_msg_field *v = bth_realloc(m->fields, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        m->fields = v;
        m->cap_fields = cap;
    }
    m->fields[m->nfields++] = (struct h2_msg_field){(uint32_t)m->name_off, (uint32_t)m->name_len,
                                                    (uint32_t)m->value_off, (uint32_t)m->value_len};
    return 0;
}

/* A trailer llhttp finished reading: kept unless HTTP/2 forbids it. */
static int push_field(struct h2_msg *m)
{
    if (!m->in_value)
        return 0;
    m->in_value = false;
    /* llhttp leaves trailing whitespace in a value */
    while (m->value_len > 0 && (m->hbuf[m->value_off + m->value_len - 1] == ' ' ||
                                m->hbuf[m->value_off + m->value_len - 1] == '\t'))
        m->value_len--;
    if (connection_specific(m->hbuf + m->name_off, m->name_len))
        return 0;
    return push_nv(m);
}

static int rp_on_field(llhttp_t *p, const char *at, size_t len)
{
    struct h2_msg *m = p->data;
    if (m->in_value || m->name_len == 0) {
        if (push_field(m) != 0)
            return HPE_USER;
        m->name_off = m->hlen;
        m->name_len = 0;
    }
    m->name_len += len;
    return hbuf_add(m, at, len, true) == 0 ? 0 : HPE_USER;
}

static int rp_on_value(llhttp_t *p, const char *at, size_t len)
{
    struct h2_msg *m = p->data;
    if (!m->in_value) {
        m->in_value = true;
        m->value_off = m->hlen;
        m->value_len = 0;
    }
    m->value_len += len;
    return hbuf_add(m, at, len, false) == 0 ? 0 : HPE_USER;
}

static int rp_on_headers_complete(llhttp_t *p)
{
    (void)p; /* the primed head of start_chunked: its fields are not kept */
    return HPE_PAUSED;
}

static int rp_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct h2_msg *m = p->data;
    if (m->discard)
        return 0;
    return evbuffer_add(m->data, at, len) == 0 ? 0 : HPE_USER;
}

static int rp_on_message_complete(llhttp_t *p)
{
    struct h2_msg *m = p->data;
    if (push_field(m) != 0) /* the last trailer */
        return HPE_USER;
    m->phase = MSG_DONE;
    return HPE_PAUSED;
}

static const llhttp_settings_t rp_settings = {
    .on_header_field = rp_on_field,
    .on_header_value = rp_on_value,
    .on_headers_complete = rp_on_headers_complete,
    .on_body = rp_on_body,
    .on_message_complete = rp_on_message_complete,
};

/* A chunked body is decoded by llhttp, primed with a bare chunked head. */
static void start_chunked(struct h2_msg *m)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    llhttp_init(&m->rp, HTTP_RESPONSE, &rp_settings);
    m->rp.data = m;
    m->in_value = false;
    m->name_len = 0;
    llhttp_execute(&m->rp, head, sizeof(head) - 1); /* pauses at the end of the head */
    llhttp_resume(&m->rp);
    h2_msg_clear_fields(m);
}

nghttp2_nv *h2_msg_nva(const struct h2_msg *m, size_t from, const nghttp2_nv *first, size_t nfirst,
                       size_t *n, nghttp2_nv *stackbuf, size_t stackn)
{
    size_t total = m->nfields - from + nfirst;
    nghttp2_nv *nva = total <= stackn ? stackbuf : bth_malloc(total * sizeof(*nva));
    if (nva == NULL)
        return NULL;
    size_t k = 0;
    for (; k < nfirst; k++)
        nva[k] = first[k];
    for (size_t i = from; i < m->nfields; i++) {
        const struct h2_msg_field *v = &m->fields[i];
        nva[k++] = (nghttp2_nv){(uint8_t *)m->hbuf + v->name_off, (uint8_t *)m->hbuf + v->value_off,
                                v->name_len, v->value_len, NGHTTP2_NV_FLAG_NONE};
    }
    *n = k;
    return nva;
}

int h2_msg_add_field(struct h2_msg *m, const char *n, size_t nlen, const char *v, size_t vlen)
{
    m->name_off = m->hlen;
    m->name_len = nlen;
    if (hbuf_add(m, n, nlen, true) != 0)
        return -1;
    m->value_off = m->hlen;
    m->value_len = vlen;
    if (hbuf_add(m, v, vlen, false) != 0)
        return -1;
    return push_nv(m);
}

int h2_msg_head_field(struct h2_msg *m, const char *p, size_t l, struct h2_msg_head *hi)
{
    const char *colon = memchr(p, ':', l);
    if (colon == NULL || colon == p)
        return -1;
    size_t nlen = (size_t)(colon - p);
    const char *v = colon + 1, *vend = p + l;
    while (v < vend && (*v == ' ' || *v == '\t'))
        v++;
    while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
        vend--;
    size_t vlen = (size_t)(vend - v);
    if (name_is(p, nlen, "content-length")) {
        uint64_t n = 0;
        for (const char *c = v; c < vend; c++) {
            if (*c < '0' || *c > '9' || n > UINT64_MAX / 10 - 9)
                return -1;
            n = n * 10 + (uint64_t)(*c - '0');
        }
        hi->has_length = true;
        hi->length = n;
    } else if (name_is(p, nlen, "transfer-encoding")) {
        hi->chunked = vlen >= 7 && strncasecmp(vend - 7, "chunked", 7) == 0;
    } else if (hi->status == 0 && name_is(p, nlen, "host")) {
        hi->authority = v; /* a request's Host is its :authority */
        hi->authority_len = vlen;
        return 0;
    }
    if (connection_specific(p, nlen))
        return 0;
    return h2_msg_add_field(m, p, nlen, v, vlen);
}

/* "HTTP/1.x NNN reason": the status. */
static int status_line(const char *b, size_t len, struct h2_msg_head *hi)
{
    if (len < 16 || memcmp(b, "HTTP/1.", 7) != 0 || b[8] != ' ')
        return -1;
    for (int i = 9; i < 12; i++) {
        if (b[i] < '0' || b[i] > '9')
            return -1;
        hi->status = hi->status * 10 + (b[i] - '0');
    }
    return hi->status > 0 ? 0 : -1;
}

/* "METHOD target HTTP/1.x": the method and the target. */
static int request_line(const char *b, const char *eol, struct h2_msg_head *hi)
{
    const char *sp = memchr(b, ' ', (size_t)(eol - b));
    const char *sp2 = sp != NULL ? memchr(sp + 1, ' ', (size_t)(eol - sp - 1)) : NULL;
    if (sp == NULL || sp2 == NULL || sp == b || sp2 == sp + 1)
        return -1;
    hi->method = b;
    hi->method_len = (size_t)(sp - b);
    hi->target = sp + 1;
    hi->target_len = (size_t)(sp2 - sp - 1);
    return 0;
}

int h2_msg_parse_head(struct h2_msg *m, const char *b, size_t len, struct h2_msg_head *hi)
{
    *hi = (struct h2_msg_head){0};
    h2_msg_clear_fields(m);
    m->in_value = false;
    const char *p = memchr(b, '\n', len), *end = b + len;
    if (p == NULL)
        return -1;
    if (len >= 7 && memcmp(b, "HTTP/1.", 7) == 0 ? status_line(b, len, hi) != 0
                                                 : request_line(b, p, hi) != 0)
        return -1;
    bool kept = false; /* the previous field is in the list (for continuations) */
    for (p = p + 1; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            return -1;
        size_t l = (size_t)(eol - p);
        if (l > 0 && p[l - 1] == '\r')
            l--;
        if (l == 0)
            break;
        if (*p == ' ' || *p == '\t') {
            /* an obs-fold continuation (a target's head may carry one) joins the previous
             * value with a space */
            if (kept) {
                const char *v = p;
                while (v < p + l && (*v == ' ' || *v == '\t'))
                    v++;
                if (hbuf_add(m, " ", 1, false) != 0 || hbuf_add(m, v, (size_t)(p + l - v), false))
                    return -1;
                m->fields[m->nfields - 1].value_len += (uint32_t)(1 + (p + l - v));
            }
        } else {
            size_t before = m->nfields;
            if (h2_msg_head_field(m, p, l, hi) != 0)
                return -1;
            kept = m->nfields > before;
        }
        p = eol + 1;
    }
    return 0;
}

void h2_msg_expect_body(struct h2_msg *m, const struct h2_msg_head *hi, bool bodiless)
{
    m->left = hi->length;
    if (bodiless)
        m->phase = MSG_DONE;
    else if (hi->chunked)
        m->phase = MSG_CHUNKED;
    else if (hi->has_length)
        m->phase = hi->length > 0 ? MSG_LENGTH : MSG_DONE;
    else if (hi->status == 0)
        m->phase = MSG_DONE; /* a request without framing has no body */
    else
        m->phase = MSG_UNTIL_GONE;
}

void h2_msg_head_sent(struct h2_msg *m)
{
    if (m->phase == MSG_CHUNKED)
        start_chunked(m);
    else
        h2_msg_clear_fields(m);
}

int h2_msg_take_body(struct h2_msg *m, struct evbuffer *in, size_t room, bool all)
{
    while (m->phase != MSG_DONE && m->phase != MSG_HEAD && evbuffer_get_length(in) > 0 &&
           (all || evbuffer_get_length(m->data) < room)) {
        size_t space = all ? SIZE_MAX : room - evbuffer_get_length(m->data);
        size_t avail = evbuffer_get_length(in);
        size_t n = avail < space ? avail : space;
        if (m->phase == MSG_LENGTH || m->phase == MSG_UNTIL_GONE) {
            if (m->phase == MSG_LENGTH && n > m->left)
                n = (size_t)m->left;
            if (m->discard)
                evbuffer_drain(in, n);
            else
                evbuffer_remove_buffer(in, m->data, n);
            if (m->phase == MSG_LENGTH && (m->left -= n) == 0)
                m->phase = MSG_DONE;
            continue;
        }
        /* chunked: llhttp decodes one contiguous piece at a time */
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            return -1;
        size_t len = v.iov_len < n ? v.iov_len : n;
        llhttp_errno_t err = llhttp_execute(&m->rp, v.iov_base, len);
        size_t used = len;
        if (err == HPE_PAUSED)
            used = (size_t)(llhttp_get_error_pos(&m->rp) - (const char *)v.iov_base);
        else if (err != HPE_OK)
            return -1;
        evbuffer_drain(in, used);
    }
    if (m->phase == MSG_DONE)
        m->ntrailers = m->nfields;
    return 0;
}

ssize_t h2_msg_read_data(struct h2_msg *m, nghttp2_session *ng, int32_t id, size_t length,
                         uint32_t *flags, bool *deferred)
{
    size_t avail = evbuffer_get_length(m->data);
    if (avail == 0 && m->phase != MSG_DONE) {
        *deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < length ? avail : length;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (m->phase == MSG_DONE && n == avail) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (h2_msg_submit_trailers(m, ng, id))
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    return (ssize_t)n;
}

bool h2_msg_submit_trailers(const struct h2_msg *m, nghttp2_session *ng, int32_t id)
{
    if (m->ntrailers == 0)
        return false;
    nghttp2_nv stackbuf[16];
    size_t k;
    nghttp2_nv *nva = h2_msg_nva(m, 0, NULL, 0, &k, stackbuf, 16);
    bool sent = nva != NULL && nghttp2_submit_trailer(ng, id, nva, k) == 0;
    if (nva != stackbuf)
        bth_free(nva);
    return sent;
}

int h2_line_add(struct evbuffer *b, const void *name, size_t nlen, const void *value, size_t vlen)
{
    struct evbuffer_iovec io;
    size_t len = nlen + vlen + 4;
    if (evbuffer_reserve_space(b, (ev_ssize_t)len, &io, 1) != 1)
        return -1;
    char *p = io.iov_base;
    memcpy(p, name, nlen);
    p += nlen;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, value, vlen);
    p += vlen;
    *p++ = '\r';
    *p = '\n';
    io.iov_len = len;
    return evbuffer_commit_space(b, &io, 1);
}

ssize_t h2_send_to_conn(void *user_data, const uint8_t *data, size_t length, size_t high)
{
    struct bth_conn *c = user_data;
    if (evbuffer_get_length(c->out) >= high)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (evbuffer_add(c->out, data, length) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)length;
}

void h2_chunk_head(struct evbuffer *b, size_t n)
{
    char buf[2 * sizeof(size_t) + 2], *p = buf + sizeof(buf);
    *--p = '\n';
    *--p = '\r';
    do {
        *--p = "0123456789abcdef"[n & 15];
        n >>= 4;
    } while (n != 0);
    evbuffer_add(b, p, (size_t)(buf + sizeof(buf) - p));
}
