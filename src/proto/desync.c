/* SPDX-License-Identifier: MIT */
/* Any thread; no allocation, no state outside the caller's stack. Rates a raw HTTP/1.x
 * request head for desync risk: one pass over the request line and one over each field line
 * records findings as bits, and the verdict is the first finding of the table below, which
 * is sorted from the most to the least severe tier. Lines are split on CRLF only, so a bare
 * CR or LF stays inside the element it was smuggled into and is judged there. */
#include "desync.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Every finding the classifier can make, in precedence order: tiers from Severe down, and
 * within a tier the reason to report when several apply. */
enum finding {
    /* Severe: framing is broken or contradictory. */
    F_BAD_METHOD = 0,   /* method not a token (RFC 9110 9.1) */
    F_BAD_URI,          /* NUL, CR or LF in the target, or a target cut by a line break */
    F_BAD_VERSION,      /* malformed version, or a second version inside the target */
    F_BAD_HEADER,       /* NUL, CR or LF in a field line, obs-fold, line without a colon */
    F_BAD_TE,           /* unknown coding, bad syntax, chunked not final */
    F_MULTI_TE_CHUNKED, /* chunked applied more than once (RFC 9112 6.1) */
    F_BAD_CL,           /* Content-Length not 1*DIGIT or above 2^64-1 */
    F_MULTI_CL,         /* Content-Length fields with different values (RFC 9112 6.3) */
    /* Ambiguous: another parser may frame the message differently. */
    F_EMPTY_HEADER,      /* field name empty or only whitespace */
    F_SUSPICIOUS_HEADER, /* a Transfer-Encoding or Content-Length look-alike name */
    F_TE_UNDEFINED,      /* Transfer-Encoding in GET/HEAD, HTTP/1.0 or HTTP/0.9 */
    F_CL_UNDEFINED,      /* Content-Length > 0 in GET/HEAD, any in HTTP/0.9 */
    F_DUP_CL,            /* several Content-Length fields with the same value */
    F_BOTH_TE_CL,        /* Transfer-Encoding and Content-Length (RFC 9112 6.1) */
    F_TE_NOT_CHUNKED,    /* final coding not chunked: length unknown (RFC 9112 6.3) */
    F_AMBIGUOUS_URI,     /* HTAB or other control bytes in the target */
    /* Acceptable: off the RFCs, framing unaffected. */
    F_NONCOMPLIANT_HEADER, /* name not a token, or control bytes in a value */
    F_GET_HEAD_ZERO_CL,    /* Content-Length: 0 in GET/HEAD */
    F_NONCOMPLIANT_VERSION,
    F_SPACE_IN_URI,
    F_NONCOMPLIANT_URI, /* not origin-, absolute-, authority- or asterisk-form */
    F__COUNT,
};

static const struct {
    enum bth_desync_tier tier;
    const char *reason; /* the reason names of aws/http-desync-guardian's case data */
} findings[F__COUNT] = {
    [F_BAD_METHOD] = {BTH_DESYNC_SEVERE, "BadMethod"},
    [F_BAD_URI] = {BTH_DESYNC_SEVERE, "BadUri"},
    [F_BAD_VERSION] = {BTH_DESYNC_SEVERE, "BadVersion"},
    [F_BAD_HEADER] = {BTH_DESYNC_SEVERE, "BadHeader"},
    [F_BAD_TE] = {BTH_DESYNC_SEVERE, "BadTransferEncoding"},
    [F_MULTI_TE_CHUNKED] = {BTH_DESYNC_SEVERE, "MultipleTransferEncodingChunked"},
    [F_BAD_CL] = {BTH_DESYNC_SEVERE, "BadContentLength"},
    [F_MULTI_CL] = {BTH_DESYNC_SEVERE, "MultipleContentLength"},
    [F_EMPTY_HEADER] = {BTH_DESYNC_AMBIGUOUS, "EmptyHeader"},
    [F_SUSPICIOUS_HEADER] = {BTH_DESYNC_AMBIGUOUS, "SuspiciousHeader"},
    [F_TE_UNDEFINED] = {BTH_DESYNC_AMBIGUOUS, "UndefinedTransferEncodingSemantics"},
    [F_CL_UNDEFINED] = {BTH_DESYNC_AMBIGUOUS, "UndefinedContentLengthSemantics"},
    [F_DUP_CL] = {BTH_DESYNC_AMBIGUOUS, "DuplicateContentLength"},
    [F_BOTH_TE_CL] = {BTH_DESYNC_AMBIGUOUS, "BothTeClPresent"},
    [F_TE_NOT_CHUNKED] = {BTH_DESYNC_AMBIGUOUS, "UndefinedTransferEncodingSemantics"},
    [F_AMBIGUOUS_URI] = {BTH_DESYNC_AMBIGUOUS, "AmbiguousUri"},
    [F_NONCOMPLIANT_HEADER] = {BTH_DESYNC_ACCEPTABLE, "NonCompliantHeader"},
    [F_GET_HEAD_ZERO_CL] = {BTH_DESYNC_ACCEPTABLE, "GetHeadZeroContentLength"},
    [F_NONCOMPLIANT_VERSION] = {BTH_DESYNC_ACCEPTABLE, "NonCompliantVersion"},
    [F_SPACE_IN_URI] = {BTH_DESYNC_ACCEPTABLE, "SpaceInUri"},
    [F_NONCOMPLIANT_URI] = {BTH_DESYNC_ACCEPTABLE, "NonCompliantUri"},
};

_Static_assert(F__COUNT <= 32, "findings are bits of a uint32_t");

enum version {
    VER_11 = 0, /* HTTP/1.1 and unknown HTTP/1.x-like versions: full framing rules */
    VER_10,     /* no Transfer-Encoding (RFC 9112 6.1: chunked is HTTP/1.1) */
    VER_09,     /* no header section at all, so no body framing */
};

enum field_kind {
    FK_OTHER = 0,
    FK_TE,
    FK_CL,
};

/* What one pass over the head collected. */
struct scan {
    uint32_t found; /* bit (1 << enum finding) per finding */
    enum version version;
    bool get_or_head;     /* content has no defined semantics (RFC 9110 9.3.1, 9.3.2) */
    unsigned te_fields;   /* Transfer-Encoding field lines, look-alikes included */
    unsigned te_chunked;  /* "chunked" codings over all of them */
    bool te_chunked_last; /* the last coding seen was chunked */
    bool te_bad;          /* a field that does not parse, or an unknown coding */
    unsigned cl_fields;   /* Content-Length field lines, look-alikes included */
    unsigned cl_valid;    /* those with a valid value */
    uint64_t cl_first;    /* value of the first valid one */
    bool cl_bad;          /* a value that is not 1*DIGIT within 64 bits */
    bool cl_differ;       /* two valid values differ */
};

static void add(struct scan *s, enum finding f)
{
    s->found |= UINT32_C(1) << f;
}

static bool is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* NUL ends a C string and CR or LF ends a line for some parser but not for another: in a
 * request line or field line they always change the framing somewhere downstream. */
static bool is_line_breaker(unsigned char c)
{
    return c == '\0' || c == '\r' || c == '\n';
}

static bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static unsigned char to_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* tchar of RFC 9110 5.6.2. */
static bool is_tchar(unsigned char c)
{
    if (is_alpha(c) || is_digit(c))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool all_tchar(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_tchar(p[i]))
            return false;
    }
    return true;
}

static bool ieq(const unsigned char *p, size_t n, const char *lower)
{
    size_t i = 0;
    for (; i < n && lower[i] != '\0'; i++) {
        if (to_lower(p[i]) != (unsigned char)lower[i])
            return false;
    }
    return i == n && lower[i] == '\0';
}

static size_t skip_ows(const unsigned char *p, size_t n, size_t i)
{
    while (i < n && is_ows(p[i]))
        i++;
    return i;
}

static size_t skip_tchars(const unsigned char *p, size_t n, size_t i)
{
    while (i < n && is_tchar(p[i]))
        i++;
    return i;
}

/* Skips empty lines (CRLF or bare LF) before the request line: RFC 9112 2.2 asks servers to
 * ignore at least one. Returns the index of the first byte of the request line. */
static size_t skip_empty_lines(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (p[i] == '\n')
            i++;
        else if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
            i += 2;
        else
            break;
    }
    return i;
}

/* Finds the CRLF that ends the line starting at <from>. Returns the index of its CR (or <end>
 * when the line is not terminated) and sets <next> to the start of the following line. */
static size_t line_end(const unsigned char *p, size_t from, size_t end, size_t *next)
{
    size_t i = from;
    while (i < end) {
        const unsigned char *lf = memchr(p + i, '\n', end - i);
        if (lf == NULL)
            break;
        size_t j = (size_t)(lf - p);
        if (j > from && p[j - 1] == '\r') {
            *next = j + 1;
            return j - 1;
        }
        i = j + 1;
    }
    *next = end;
    return end;
}

/* "HTTP/" DIGIT "." DIGIT (RFC 9112 2.3; HTTP-name is case-sensitive). */
static bool is_http_version(const unsigned char *v, size_t n)
{
    return n == 8 && memcmp(v, "HTTP/", 5) == 0 && is_digit(v[5]) && v[6] == '.' && is_digit(v[7]);
}

/* Whether <p> starts like a version, in any case: the mark of a request line spliced into
 * another one, whatever a lenient parser would make of it. */
static bool looks_like_version(const unsigned char *p, size_t n)
{
    return n >= 5 && ieq(p, 5, "http/");
}

static void scan_version(struct scan *s, const unsigned char *v, size_t n)
{
    if (!is_http_version(v, n)) {
        add(s, F_BAD_VERSION);
        return;
    }
    if (v[5] == '1' && v[7] == '1')
        return;
    if (v[5] == '1' && v[7] == '0') {
        s->version = VER_10;
        return;
    }
    if (v[5] == '0' && v[7] == '9')
        s->version = VER_09;
    /* HTTP/1.2, HTTP/2.0 ... in an HTTP/1 request line: framed as HTTP/1.1 by llhttp. */
    add(s, F_NONCOMPLIANT_VERSION);
}

/* RFC 3986 scheme followed by ':' (absolute-form, RFC 9112 3.2.2). */
static bool is_absolute_form(const unsigned char *u, size_t n)
{
    if (n == 0 || !is_alpha(u[0]))
        return false;
    for (size_t i = 1; i < n; i++) {
        if (u[i] == ':')
            return true;
        if (!is_alpha(u[i]) && !is_digit(u[i]) && u[i] != '+' && u[i] != '-' && u[i] != '.')
            return false;
    }
    return false;
}

/* The request-target, free of NUL, CR and LF (checked by the caller). */
static void scan_uri(struct scan *s, const unsigned char *u, size_t n, const unsigned char *m,
                     size_t mlen)
{
    for (size_t i = 0; i < n; i++) {
        if (u[i] == ' ') {
            /* "GET /a HTTP/1.1 HTTP/1.1": two versions, so parsers that split on the first
             * and on the last space read different targets and versions. */
            if (looks_like_version(u + i + 1, n - i - 1))
                add(s, F_BAD_VERSION);
            add(s, F_SPACE_IN_URI);
        } else if (is_ctl(u[i])) {
            /* RFC 9112 3 lets parsers split the request line on HTAB, VT, FF as on SP. */
            add(s, F_AMBIGUOUS_URI);
        }
    }
    /* The case data rates an empty target Compliant: no parser reads a body into it. */
    if (n == 0 || u[0] == '/' || is_absolute_form(u, n))
        return;
    if (n == 1 && u[0] == '*' && mlen == 7 && memcmp(m, "OPTIONS", 7) == 0)
        return;
    if (mlen == 7 && memcmp(m, "CONNECT", 7) == 0)
        return; /* authority-form, host:port */
    add(s, F_NONCOMPLIANT_URI);
}

/* The request line <l> (<n> bytes, without its CRLF). <has_fields>: a field line follows. */
static void scan_request_line(struct scan *s, const unsigned char *l, size_t n, bool has_fields)
{
    size_t sp = n, brk = n;
    for (size_t i = 0; i < n; i++) {
        if (sp == n && l[i] == ' ')
            sp = i;
        if (is_line_breaker(l[i])) {
            brk = i;
            break;
        }
    }
    if (sp == 0 || brk < sp || !all_tchar(l, sp < brk ? sp : brk))
        add(s, F_BAD_METHOD);
    s->get_or_head =
        (sp == 3 && memcmp(l, "GET", 3) == 0) || (sp == 4 && memcmp(l, "HEAD", 4) == 0);
    if (brk < n) {
        if (brk > sp) {
            /* The element holding the breaker is broken: the version when one was already
             * complete ("HTTP/1.1\n" as line end), else the target. */
            const unsigned char *r = l + sp + 1;
            size_t rn = brk - sp - 1, last = rn;
            while (last > 0 && r[last - 1] != ' ')
                last--;
            add(s, last > 0 && looks_like_version(r + last, rn - last) ? F_BAD_VERSION : F_BAD_URI);
        }
        return;
    }
    if (sp == n) {
        add(s, F_BAD_URI); /* no request-target at all */
        return;
    }

    const unsigned char *r = l + sp + 1;
    size_t rn = n - sp - 1, rt = rn;
    while (rt > 0 && is_ows(r[rt - 1]))
        rt--;
    size_t last = rt; /* the space before the version */
    while (last > 0 && r[last - 1] != ' ')
        last--;
    if (last == 0) {
        /* No version: "GET /x SP" is how the case data writes HTTP/0.9 (with fields, which
         * 0.9 never had). Without even that SP yet followed by field lines, a line break
         * cut the target in two: the rest of it is now parsed as fields. */
        if (rt == rn && has_fields) {
            add(s, F_BAD_URI);
        } else {
            s->version = VER_09;
            add(s, F_NONCOMPLIANT_VERSION);
        }
        scan_uri(s, r, rt, l, sp);
        return;
    }
    scan_version(s, r + last, rt - last);
    if (rt < rn)
        add(s, F_NONCOMPLIANT_VERSION); /* whitespace after the version */
    scan_uri(s, r, last - 1, l, sp);
}

/* Unicode case mappings that land on ASCII letters, which some parsers apply before
 * comparing names: U+017F LATIN SMALL LETTER LONG S uppercases to 'S', U+0131 LATIN SMALL
 * LETTER DOTLESS I to 'I'. Returns the letter and sets <used> to the UTF-8 length, or 0. */
static unsigned char folded_letter(const unsigned char *p, size_t n, size_t *used)
{
    *used = 2;
    if (n >= 2 && p[0] == 0xc5 && p[1] == 0xbf)
        return 's';
    if (n >= 2 && p[0] == 0xc4 && p[1] == 0xb1)
        return 'i';
    return 0;
}

/* Whether the name <p> is Transfer-Encoding or Content-Length once everything but letters and
 * digits is dropped and case is folded: "Transfer_Encoding", " Content-Length",
 * "\x01Transfer-Encoding", "Transfer-Encoding\xc2\x88", "Tran\xc5\xbf" "fer-Encoding". A
 * parser that trims, normalises or folds may take it for the real field. */
static enum field_kind look_alike(const unsigned char *p, size_t n)
{
    static const char te[] = "transferencoding", cl[] = "contentlength";
    size_t ti = 0, ci = 0;
    bool te_ok = true, cl_ok = true;
    for (size_t i = 0; i < n; i++) {
        size_t used;
        unsigned char c = folded_letter(p + i, n - i, &used);
        if (c != 0)
            i += used - 1;
        else if (is_alpha(p[i]) || is_digit(p[i]))
            c = to_lower(p[i]);
        else
            continue;
        te_ok = te_ok && ti < sizeof(te) - 1 && te[ti] == c;
        cl_ok = cl_ok && ci < sizeof(cl) - 1 && cl[ci] == c;
        if (!te_ok && !cl_ok)
            return FK_OTHER;
        ti++;
        ci++;
    }
    if (te_ok && ti == sizeof(te) - 1)
        return FK_TE;
    if (cl_ok && ci == sizeof(cl) - 1)
        return FK_CL;
    return FK_OTHER;
}

/* quoted-string of RFC 9110 5.6.4 starting at <i> (a DQUOTE). Returns the index after the
 * closing DQUOTE, or 0 when it is not one. */
static size_t skip_quoted(const unsigned char *p, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (p[i] == '"')
            return i + 1;
        if (p[i] == '\\') {
            if (++i == n)
                return 0;
        }
        if (is_ctl(p[i]) && p[i] != '\t')
            return 0;
    }
    return 0;
}

/* One Transfer-Encoding field value: #( coding *( OWS ";" OWS param ) ) (RFC 9112 7). Only
 * known codings pass: a recipient that does not know one cannot find the end of the body. */
static void scan_te_value(struct scan *s, const unsigned char *v, size_t n)
{
    static const char *const known[] = {"chunked",  "compress",   "deflate", "gzip",
                                        "identity", "x-compress", "x-gzip"};
    unsigned codings = 0;
    size_t i = 0;
    for (;;) {
        i = skip_ows(v, n, i);
        if (i == n)
            break;
        if (v[i] == ',') { /* empty list elements are allowed (RFC 9110 5.6.1) */
            i++;
            continue;
        }
        size_t t0 = i;
        i = skip_tchars(v, n, i);
        bool ok = false;
        for (size_t k = 0; k < sizeof(known) / sizeof(known[0]) && !ok; k++)
            ok = ieq(v + t0, i - t0, known[k]);
        if (!ok) {
            s->te_bad = true;
            return;
        }
        bool chunked = ieq(v + t0, i - t0, "chunked");
        s->te_chunked += chunked;
        s->te_chunked_last = chunked;
        codings++;
        /* Parameters are not used, only checked to be well formed; the case data accepts
         * an empty one ("gzip ;") and one without a value ("chunked;custom_param"). */
        i = skip_ows(v, n, i);
        while (i < n && v[i] == ';') {
            size_t name = skip_ows(v, n, i + 1), name_end = skip_tchars(v, n, name);
            size_t eq = skip_ows(v, n, name_end);
            i = name_end;
            if (eq < n && v[eq] == '=') {
                size_t val = skip_ows(v, n, eq + 1);
                i = (val < n && v[val] == '"') ? skip_quoted(v, n, val) : skip_tchars(v, n, val);
                if (name_end == name || i <= val) {
                    s->te_bad = true;
                    return;
                }
            }
            i = skip_ows(v, n, i);
        }
        if (i < n && v[i] != ',') {
            s->te_bad = true;
            return;
        }
    }
    if (codings == 0)
        s->te_bad = true; /* "Transfer-Encoding:" with nothing in it */
}

/* One Content-Length field value, OWS already trimmed: 1*DIGIT (RFC 9110 8.6), no list. */
static void scan_cl_value(struct scan *s, const unsigned char *v, size_t n)
{
    uint64_t val = 0;
    bool ok = n > 0;
    for (size_t i = 0; i < n && ok; i++) {
        unsigned d = (unsigned)v[i] - '0';
        ok = is_digit(v[i]) && val <= (UINT64_MAX - d) / 10;
        val = val * 10 + d;
    }
    s->cl_fields++;
    if (!ok)
        s->cl_bad = true;
    else if (s->cl_valid++ == 0)
        s->cl_first = val;
    else if (val != s->cl_first)
        s->cl_differ = true;
}

/* One field line <l> (<n> bytes, without its CRLF). */
static void scan_field_line(struct scan *s, const unsigned char *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (is_line_breaker(l[i])) {
            add(s, F_BAD_HEADER);
            return; /* where this field ends depends on the parser: ignore its content */
        }
    }
    const unsigned char *colon = memchr(l, ':', n);
    if (colon == NULL) {
        /* Without a colon a line indented by SP or HTAB is obs-fold (RFC 9112 5.2), which
         * only some parsers unfold; any other line is not a field line at all. */
        add(s, F_BAD_HEADER);
        return;
    }
    size_t nlen = (size_t)(colon - l), n0 = 0, n1 = nlen;
    while (n0 < n1 && is_ows(l[n0]))
        n0++;
    while (n1 > n0 && is_ows(l[n1 - 1]))
        n1--;
    if (n0 == n1) {
        add(s, F_EMPTY_HEADER);
        return;
    }
    const unsigned char *v = colon + 1;
    size_t vn = n - nlen - 1, v0 = skip_ows(v, vn, 0);
    while (vn > v0 && is_ows(v[vn - 1]))
        vn--;

    /* Whitespace around the name, as in " Content-Length" (an indented line the case data
     * reads as a field, not obs-fold) or "Content-Length :", makes the exact name a
     * look-alike: servers trim it (and use it) or reject the request (RFC 9112 5.1). */
    enum field_kind kind = FK_OTHER;
    if (ieq(l, nlen, "transfer-encoding"))
        kind = FK_TE;
    else if (ieq(l, nlen, "content-length"))
        kind = FK_CL;
    else if ((kind = look_alike(l, nlen)) != FK_OTHER)
        add(s, F_SUSPICIOUS_HEADER);

    switch (kind) {
    case FK_TE:
        s->te_fields++;
        scan_te_value(s, v + v0, vn - v0);
        break;
    case FK_CL:
        scan_cl_value(s, v + v0, vn - v0);
        break;
    case FK_OTHER:
        if (!all_tchar(l, nlen)) {
            add(s, F_NONCOMPLIANT_HEADER);
            break;
        }
        for (size_t i = v0; i < vn; i++) {
            if (is_ctl(v[i]) && v[i] != '\t') {
                add(s, F_NONCOMPLIANT_HEADER);
                break;
            }
        }
        break;
    }
}

/* Findings that need all field lines: how the body would be framed (RFC 9112 6.1-6.3). */
static void scan_framing(struct scan *s)
{
    if (s->te_fields > 0) {
        if (s->te_bad)
            add(s, F_BAD_TE);
        else if (s->te_chunked > 1)
            add(s, F_MULTI_TE_CHUNKED);
        else if (s->te_chunked == 1 && !s->te_chunked_last)
            add(s, F_BAD_TE);
        else if (s->te_chunked == 0)
            add(s, F_TE_NOT_CHUNKED);
        if (s->version != VER_11 || s->get_or_head)
            add(s, F_TE_UNDEFINED);
    }
    if (s->cl_fields > 0) {
        if (s->cl_bad)
            add(s, F_BAD_CL);
        else if (s->cl_differ)
            add(s, F_MULTI_CL);
        else if (s->cl_fields > 1)
            add(s, F_DUP_CL);
        if (s->version == VER_09)
            add(s, F_CL_UNDEFINED);
        else if (s->get_or_head && !s->cl_bad)
            add(s, s->cl_first > 0 ? F_CL_UNDEFINED : F_GET_HEAD_ZERO_CL);
    }
    if (s->te_fields > 0 && s->cl_fields > 0)
        add(s, F_BOTH_TE_CL);
}

void bth_desync_classify(const char *head, size_t len, struct bth_desync_verdict *out)
{
    struct scan s = {0};
    /* An empty head is rated like any other (BadMethod); "" spares NULL + 0 arithmetic. */
    const unsigned char *p = (const unsigned char *)(head != NULL ? head : "");
    size_t end = bth_desync_head_length(head, len);
    if (end == 0)
        end = len;

    size_t pos = skip_empty_lines(p, end), next;
    size_t le = line_end(p, pos, end, &next);
    bool has_fields = next < end && !(end - next >= 2 && p[next] == '\r' && p[next + 1] == '\n');
    scan_request_line(&s, p + pos, le - pos, has_fields);

    for (pos = next; pos < end; pos = next) {
        le = line_end(p, pos, end, &next);
        if (le == pos)
            break; /* the empty line */
        scan_field_line(&s, p + pos, le - pos);
    }
    scan_framing(&s);

    if (s.found == 0) {
        out->tier = BTH_DESYNC_COMPLIANT;
        out->reason = "Compliant";
        return;
    }
    unsigned f = 0;
    while (!(s.found & (UINT32_C(1) << f)))
        f++;
    out->tier = findings[f].tier;
    out->reason = findings[f].reason;
}

size_t bth_desync_head_length(const char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)buf;
    size_t i = skip_empty_lines(p, len);
    while (i < len) {
        const unsigned char *lf = memchr(p + i, '\n', len - i);
        if (lf == NULL)
            return 0;
        size_t j = (size_t)(lf - p);
        /* An empty line right after this LF: "\n\n" or "\n\r\n". */
        if (j + 1 < len && p[j + 1] == '\n')
            return j + 2;
        if (j + 2 < len && p[j + 1] == '\r' && p[j + 2] == '\n')
            return j + 3;
        i = j + 1;
    }
    return 0;
}

const char *bth_desync_tier_name(enum bth_desync_tier t)
{
    static const char *const names[] = {
        [BTH_DESYNC_COMPLIANT] = "Compliant",
        [BTH_DESYNC_ACCEPTABLE] = "Acceptable",
        [BTH_DESYNC_AMBIGUOUS] = "Ambiguous",
        [BTH_DESYNC_SEVERE] = "Severe",
    };
    if ((unsigned)t >= sizeof(names) / sizeof(names[0]))
        return "?";
    return names[t];
}
