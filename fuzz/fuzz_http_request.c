/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: an HTTP/1.x request as a client sends it, through the same path
 * http_session.c takes: llhttp (HTTP_REQUEST, bth_http_head_settings) until it pauses at the
 * end of the head, then bth_desync_classify on the raw head, bth_http_head_finish, the
 * Transfer-Encoding list and the request-target helpers of uri.h (split, authority check,
 * normalisation, decoding); a head llhttp refuses goes through bth_http_tolerate_head and
 * its result through llhttp again, as tolerate_head() does. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "desync.h"
#include "http_head.h"
#include "http_tolerate.h"
#include "uri.h"

static void check_head(struct bth_http_head *h, const char *base, size_t head_len)
{
    /* every recorded span must lie inside the head */
    if (h->url.len > 0 && (size_t)h->url.off + h->url.len > head_len)
        __builtin_trap();
    for (unsigned i = 0; i < h->nhdrs && i < BTH_HTTP_MAX_HEADERS; i++) {
        if ((size_t)h->hdrs[i].name.off + h->hdrs[i].name.len > head_len ||
            (size_t)h->hdrs[i].value.off + h->hdrs[i].value.len > head_len)
            __builtin_trap();
    }
    (void)base;
}

/* The request target as read_target() reads it: every piece inside the target, the
 * normalised path no longer than the input, its decoded form NUL-terminated. */
static void check_target(const struct bth_http_head *h)
{
    const char *url = bth_span_ptr(h, h->url);
    struct bth_uri_target ut;
    if (bth_uri_split_target(url, h->url.len, &ut) != 0)
        return;
    const char *end = url + h->url.len;
    if (ut.path < url || ut.path + ut.path_len > end || ut.query < url ||
        ut.query + ut.query_len > end)
        __builtin_trap();
    if (ut.authority != NULL) {
        if (ut.authority < url || ut.authority + ut.authority_len > end)
            __builtin_trap();
        (void)bth_uri_authority_valid(ut.authority, ut.authority_len);
    }
    size_t cap = ut.path_len + 2, n = 0, d = 0;
    char *norm = malloc(cap), *dec = malloc(cap);
    if (norm == NULL || dec == NULL)
        goto out;
    for (int mode = BTH_PATH_NORM_ON; mode <= BTH_PATH_NORM_MERGE_SLASHES; mode++) {
        (void)bth_uri_path_needs_normalizing(ut.path, ut.path_len, (enum bth_path_norm)mode);
        if (bth_uri_normalize_path(ut.path, ut.path_len, (enum bth_path_norm)mode, norm, cap, &n) ==
            BTH_URI_OK) {
            if (n > ut.path_len || norm[n] != '\0')
                __builtin_trap();
            if (bth_uri_percent_decode(norm, n, dec, cap, &d) == 0) {
                if (d > n || dec[d] != '\0')
                    __builtin_trap();
                if (d > 0 && dec[0] == '/')
                    (void)bth_uri_remove_dot_segments(dec, &d);
            }
        }
    }
out:
    free(norm);
    free(dec);
}

/* A head llhttp refused, mended as tolerate_head() mends it: the result fits its room and,
 * when llhttp reads it, its spans lie inside it. */
static void check_mended(const char *base, size_t head_len)
{
    size_t room = BTH_HTTP_TOLERATE_ROOM(head_len);
    char *view = malloc(room);
    if (view == NULL)
        return;
    size_t n = bth_http_tolerate_head(base, head_len, view);
    if (n > room)
        __builtin_trap();
    if (n > 0) {
        static struct bth_http_head h;
        llhttp_t p;
        llhttp_init(&p, HTTP_REQUEST, &bth_http_head_settings);
        llhttp_set_lenient_chunked_length(&p, 1);
        bth_http_head_reset(&h);
        p.data = &h;
        h.base = view;
        if (llhttp_execute(&p, view, n) == HPE_PAUSED) {
            bth_http_head_finish(&h);
            check_head(&h, view, n);
            check_target(&h);
        }
    }
    free(view);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exact-size heap copy so ASan sees any read past the input */
    char *base = malloc(size ? size : 1);
    if (base == NULL)
        return 0;
    if (size)
        memcpy(base, data, size);

    /* the desync classifier on arbitrary bytes, as the reader hands them over */
    struct bth_desync_verdict v;
    size_t hl = bth_desync_head_length(base, size);
    if (hl > size)
        __builtin_trap();
    bth_desync_classify(size ? base : NULL, size, &v);
    if (v.reason == NULL || v.tier > BTH_DESYNC_SEVERE)
        __builtin_trap();
    (void)bth_desync_tier_name(v.tier);

    static struct bth_http_head h;
    llhttp_t p;
    llhttp_init(&p, HTTP_REQUEST, &bth_http_head_settings);
    llhttp_set_lenient_chunked_length(&p, 1); /* as http_session.c parses requests */
    bth_http_head_reset(&h);
    p.data = &h;
    h.base = base;
    llhttp_errno_t err = llhttp_execute(&p, base, size);
    if (err == HPE_PAUSED) {
        size_t head_len = (size_t)(llhttp_get_error_pos(&p) - base);
        if (head_len > size)
            __builtin_trap();
        bth_desync_classify(base, head_len, &v);
        if (v.reason == NULL)
            __builtin_trap();
        bth_http_head_finish(&h);
        check_head(&h, base, head_len);

        /* routing, as read_target() in http_session.c does it */
        check_target(&h);
        if (h.idx[BTH_HDR_HOST] >= 0) {
            struct bth_span hv = h.hdrs[h.idx[BTH_HDR_HOST]].value;
            size_t host_len = 0;
            (void)bth_uri_authority_valid(bth_span_ptr(&h, hv), hv.len);
            bth_uri_host_without_port(bth_span_ptr(&h, hv), hv.len, &host_len);
            if (host_len > hv.len)
                __builtin_trap();
        }
        if (bth_http_head_te_chunked(&h)) {
            char *te = malloc(bth_http_head_te_room(&h));
            if (te != NULL && bth_http_head_te_reframe(&h, te) > bth_http_head_te_room(&h))
                __builtin_trap();
            free(te);
        }
        for (unsigned i = 0; i < h.nhdrs; i++)
            (void)bth_span_ieq(&h, h.hdrs[i].value, "chunked");
        (void)llhttp_should_keep_alive(&p);

        /* the body and the rest of the message, as after start_request() */
        llhttp_resume(&p);
        const char *rest = llhttp_get_error_pos(&p);
        (void)rest;
        (void)llhttp_execute(&p, base + head_len, size - head_len);
    }
    if (err != HPE_PAUSED && hl > 0)
        check_mended(base, hl);
    /* host_without_port on the raw input as well */
    size_t out_len = 0;
    bth_uri_host_without_port(base, size, &out_len);
    if (out_len > size)
        __builtin_trap();
    free(base);
    return 0;
}
