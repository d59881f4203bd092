/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: an HTTP/1.x request as a client sends it, through the same path
 * http_session.c takes: llhttp (HTTP_REQUEST, bth_http_head_settings) until it pauses at the
 * end of the head, then bth_desync_classify on the raw head, bth_http_head_finish, and the
 * routing helpers bth_router_split_target / bth_router_host_without_port. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "desync.h"
#include "http_head.h"
#include "router.h"

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

        /* routing, as route() in http_session.c does it */
        char path[4096];
        size_t path_len = 0, query_len = 0, ahost_len = 0;
        const char *query = NULL, *ahost = NULL;
        const char *url = bth_span_ptr(&h, h.url);
        if (bth_router_split_target(url, h.url.len, path, sizeof(path), &path_len, &query,
                                    &query_len, &ahost, &ahost_len) == 0) {
            if (path_len >= sizeof(path) || path[path_len] != '\0')
                __builtin_trap();
            if (query == NULL || query < url || query + query_len > url + h.url.len)
                __builtin_trap();
            if (ahost != NULL && (ahost < url || ahost + ahost_len > url + h.url.len))
                __builtin_trap();
        }
        /* a tiny output buffer too */
        char small[4];
        (void)bth_router_split_target(url, h.url.len, small, sizeof(small), &path_len, &query,
                                      &query_len, NULL, NULL);
        if (h.idx[BTH_HDR_HOST] >= 0) {
            struct bth_span hv = h.hdrs[h.idx[BTH_HDR_HOST]].value;
            size_t host_len = 0;
            bth_router_host_without_port(bth_span_ptr(&h, hv), hv.len, &host_len);
            if (host_len > hv.len)
                __builtin_trap();
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
    /* host_without_port on the raw input as well */
    size_t out_len = 0;
    bth_router_host_without_port(base, size, &out_len);
    if (out_len > size)
        __builtin_trap();
    free(base);
    return 0;
}
