/* SPDX-License-Identifier: MIT */
/* Request-target rules. Normalisation writes forward only (the output never grows past the
 * input), so dot-segment removal can run in place on the normalised copy. */
#include "uri.h"

#include <arpa/inet.h>
#include <string.h>

static bool is_alpha_digit(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* RFC 3986 section 2.3. */
static bool is_unreserved(unsigned char c)
{
    return is_alpha_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* RFC 3986 section 2.2. */
static bool is_sub_delim(unsigned char c)
{
    return c != '\0' && strchr("!$&'()*+,;=", c) != NULL;
}

int bth_uri_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_pct_encoded(const char *s, size_t i, size_t n)
{
    return i + 2 < n && s[i] == '%' && bth_uri_hex_value((unsigned char)s[i + 1]) >= 0 &&
           bth_uri_hex_value((unsigned char)s[i + 2]) >= 0;
}

static bool port_valid(const char *s, size_t n)
{
    if (n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

static bool ipv6_literal_valid(const char *s, size_t n)
{
    char buf[INET6_ADDRSTRLEN];
    struct in6_addr a;
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return inet_pton(AF_INET6, buf, &a) == 1;
}

bool bth_uri_authority_valid(const char *s, size_t n)
{
    size_t i = 0;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL || !ipv6_literal_valid(s + 1, (size_t)(close - s - 1)))
            return false;
        i = (size_t)(close - s) + 1;
    } else {
        while (i < n && s[i] != ':') {
            unsigned char c = (unsigned char)s[i];
            if (c == '%') {
                if (!is_pct_encoded(s, i, n))
                    return false;
                i += 3;
                continue;
            }
            /* A comma is a sub-delim, but a Host with one reads as a list to some targets. */
            if ((!is_unreserved(c) && !is_sub_delim(c)) || c == ',')
                return false;
            i++;
        }
    }
    if (i == n)
        return true;
    return s[i] == ':' && port_valid(s + i + 1, n - i - 1);
}

bool bth_uri_path_needs_normalizing(const char *path, size_t n, enum bth_path_norm mode)
{
    if (mode == BTH_PATH_NORM_OFF)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (path[i] == '%')
            return true;
        if (path[i] == '/' && i + 1 < n &&
            (path[i + 1] == '.' || (path[i + 1] == '/' && mode == BTH_PATH_NORM_MERGE_SLASHES)))
            return true;
    }
    return false;
}

int bth_uri_remove_dot_segments(char *buf, size_t *len)
{
    size_t n = *len, o = 0, i = 0;
    /* Output is a run of "/segment" pieces; i and o both sit on a '/' of input and output. */
    while (i < n) {
        size_t s = i + 1, e = s;
        while (e < n && buf[e] != '/')
            e++;
        size_t sl = e - s;
        bool last = e == n;
        if (sl == 1 && buf[s] == '.') {
            if (last)
                buf[o++] = '/';
        } else if (sl == 2 && buf[s] == '.' && buf[s + 1] == '.') {
            if (o == 0)
                return BTH_URI_ABOVE_ROOT;
            while (o > 0 && buf[o - 1] != '/')
                o--;
            o--; /* the '/' that led the popped segment */
            if (last)
                buf[o++] = '/';
        } else {
            buf[o++] = '/';
            memmove(buf + o, buf + s, sl);
            o += sl;
        }
        i = e;
    }
    if (o == 0 && n > 0)
        buf[o++] = '/';
    buf[o] = '\0';
    *len = o;
    return BTH_URI_OK;
}

int bth_uri_normalize_path(const char *path, size_t n, enum bth_path_norm mode, char *out,
                           size_t cap, size_t *out_len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (cap < n + 1)
        return BTH_URI_BAD_ESCAPE;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c == '%') {
            int hi = i + 2 < n ? bth_uri_hex_value((unsigned char)path[i + 1]) : -1;
            int lo = i + 2 < n ? bth_uri_hex_value((unsigned char)path[i + 2]) : -1;
            if (i + 2 >= n || hi < 0 || lo < 0)
                return BTH_URI_BAD_ESCAPE;
            unsigned char d = (unsigned char)(hi << 4 | lo);
            i += 2;
            if (is_unreserved(d)) {
                out[o++] = (char)d;
            } else {
                out[o++] = '%';
                out[o++] = hex[d >> 4];
                out[o++] = hex[d & 15];
            }
            continue;
        }
        if (c == '/' && mode == BTH_PATH_NORM_MERGE_SLASHES && o > 0 && out[o - 1] == '/')
            continue;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    *out_len = o;
    if (mode == BTH_PATH_NORM_OFF || o == 0 || out[0] != '/')
        return BTH_URI_OK;
    return bth_uri_remove_dot_segments(out, out_len);
}

int bth_uri_split_target(const char *target, size_t len, struct bth_uri_target *out)
{
    const char *p = target, *end = target + len;
    out->authority = NULL;
    out->authority_len = 0;
    if (len == 0)
        return -1;
    if (target[0] != '/' && !(len == 1 && target[0] == '*')) {
        /* absolute-form (section 3.2.2): scheme "://" authority [path] */
        const char *sep = NULL;
        for (const char *c = target; c + 2 < end; c++) {
            if (c[0] == ':' && c[1] == '/' && c[2] == '/') {
                sep = c;
                break;
            }
            if (!is_alpha_digit((unsigned char)c[0]) && c[0] != '+' && c[0] != '-' && c[0] != '.')
                break;
        }
        if (sep == NULL || sep == target)
            return -1; /* authority-form or garbage */
        const char *auth = sep + 3, *ae = auth;
        while (ae < end && *ae != '/' && *ae != '?' && *ae != '#')
            ae++;
        out->authority = auth;
        out->authority_len = (size_t)(ae - auth);
        p = ae;
    }
    const char *pe = p;
    while (pe < end && *pe != '?' && *pe != '#')
        pe++;
    out->path = p;
    out->path_len = (size_t)(pe - p);
    out->has_query = pe < end && *pe == '?';
    const char *q = out->has_query ? pe + 1 : pe, *qe = q;
    while (qe < end && *qe != '#')
        qe++;
    out->query = q;
    out->query_len = (size_t)(qe - q);
    return 0;
}

int bth_uri_percent_decode(const char *s, size_t n, char *out, size_t cap, size_t *out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (!is_pct_encoded(s, i, n))
                return -1;
            c = (unsigned char)(bth_uri_hex_value((unsigned char)s[i + 1]) << 4 |
                                bth_uri_hex_value((unsigned char)s[i + 2]));
            i += 2;
        }
        if (c == '\0' || o + 1 >= cap)
            return -1;
        out[o++] = (char)c;
    }
    if (o >= cap)
        return -1;
    out[o] = '\0';
    *out_len = o;
    return 0;
}

void bth_uri_host_without_port(const char *host, size_t len, size_t *out_len)
{
    *out_len = len;
    if (len == 0)
        return;
    if (host[0] == '[') {
        const char *close = memchr(host, ']', len);
        if (close != NULL && (size_t)(close - host) + 1 < len && close[1] == ':')
            *out_len = (size_t)(close - host) + 1;
        return;
    }
    const char *colon = memchr(host, ':', len);
    if (colon == NULL || memchr(colon + 1, ':', len - (size_t)(colon - host) - 1) != NULL)
        return; /* no port, or a bare IPv6 address */
    *out_len = (size_t)(colon - host);
}
