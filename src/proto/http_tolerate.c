/* SPDX-License-Identifier: MIT */
/* One pass over the head, writing as it reads. The output grows only where a space in the
 * target becomes "%20" and where a version is added, hence BTH_HTTP_TOLERATE_ROOM. */
#include "http_tolerate.h"

#include <stdbool.h>
#include <string.h>

#include "http_head.h"

/* The CR of the CRLF that ends the line starting at <p>, or NULL when a bare CR or LF
 * comes first or the line does not end before <end>. */
static const char *line_end(const char *p, const char *end)
{
    for (; p < end; p++) {
        if (*p == '\n')
            return NULL;
        if (*p == '\r')
            return p + 1 < end && p[1] == '\n' ? p : NULL;
    }
    return NULL;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t';
}

/* "HTTP/1.<digit>": the version berth reads it as, or NULL. */
static const char *http1_version(const char *v, size_t n)
{
    if (n != 8 || memcmp(v, "HTTP/1.", 7) != 0 || v[7] < '0' || v[7] > '9')
        return NULL;
    return v[7] == '0' ? "HTTP/1.0" : "HTTP/1.1";
}

/* Writes the request line [p, e) mended; returns its length with CRLF, or 0. */
static size_t request_line(const char *p, const char *e, char *out)
{
    while (e > p && is_ws(e[-1]))
        e--;
    const char *m = p;
    while (m < e && *m != ' ')
        m++;
    if (m == p || !bth_http_token(p, (size_t)(m - p)))
        return 0;
    const char *t = m;
    while (t < e && *t == ' ')
        t++;
    const char *vs = e;
    while (vs > t && vs[-1] != ' ')
        vs--;
    const char *te = e;
    const char *version = http1_version(vs, (size_t)(e - vs));
    if (version != NULL) {
        te = vs;
        while (te > t && te[-1] == ' ')
            te--;
    } else if (e - vs >= 5 && memcmp(vs, "HTTP/", 5) == 0) {
        return 0; /* another major version */
    } else {
        version = "HTTP/1.0"; /* none: HTTP/0.9's shape, answered and closed as HTTP/1.0 */
    }
    size_t o = (size_t)(m - p);
    memcpy(out, p, o);
    out[o++] = ' ';
    if (te == t)
        out[o++] = '/'; /* RFC 9112 3.2.1: an empty path is sent as "/" */
    for (const char *c = t; c < te; c++) {
        unsigned char b = (unsigned char)*c;
        if (b == ' ') {
            memcpy(out + o, "%20", 3);
            o += 3;
            continue;
        }
        if (b <= 0x20 || b >= 0x7f)
            return 0;
        out[o++] = (char)b;
    }
    out[o++] = ' ';
    memcpy(out + o, version, 8);
    o += 8;
    out[o++] = '\r';
    out[o++] = '\n';
    return o;
}

/* Writes one field line [p, e) mended (nothing when its name is not a token); returns the
 * bytes written, or -1 when the line has no colon or no name. */
static long field_line(const char *p, const char *e, char *out)
{
    const char *colon = memchr(p, ':', (size_t)(e - p));
    if (colon == NULL || is_ws(*p))
        return -1; /* no colon, or obs-fold */
    const char *ne = colon;
    while (ne > p && is_ws(ne[-1]))
        ne--;
    if (ne == p)
        return -1;
    if (!bth_http_token(p, (size_t)(ne - p)))
        return 0;
    size_t o = (size_t)(ne - p);
    memcpy(out, p, o);
    out[o++] = ':';
    for (const char *v = colon + 1; v < e; v++) {
        unsigned char c = (unsigned char)*v;
        out[o++] = (char)((c < 0x20 && c != '\t') || c == 0x7f ? ' ' : c);
    }
    out[o++] = '\r';
    out[o++] = '\n';
    return (long)o;
}

size_t bth_http_tolerate_head(const char *head, size_t len, char *out)
{
    const char *p = head, *end = head + len;
    while (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
        p += 2; /* empty lines before the request line (RFC 9112 2.2) */
    const char *eol = line_end(p, end);
    if (eol == NULL)
        return 0;
    size_t o = request_line(p, eol, out);
    if (o == 0)
        return 0;
    for (p = eol + 2;; p = eol + 2) {
        eol = line_end(p, end);
        if (eol == NULL)
            return 0;
        if (eol == p)
            break;
        long n = field_line(p, eol, out + o);
        if (n < 0)
            return 0;
        o += (size_t)n;
    }
    if (eol + 2 != end)
        return 0;
    out[o++] = '\r';
    out[o++] = '\n';
    return o;
}
