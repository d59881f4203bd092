/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: an HTTP/1.x response as a target sends it, through llhttp
 * (HTTP_RESPONSE, bth_http_head_settings) as http_session.c parses it: pause at the end of
 * the head, bth_http_head_finish, resume to the end of the message, then the next response
 * on a kept-alive connection. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "http_head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *base = malloc(size ? size : 1);
    if (base == NULL)
        return 0;
    if (size)
        memcpy(base, data, size);

    static struct bth_http_head h;
    llhttp_t p;
    llhttp_init(&p, HTTP_RESPONSE, &bth_http_head_settings);
    size_t off = 0;
    for (int round = 0; round < 4 && off <= size; round++) {
        bth_http_head_reset(&h);
        p.data = &h;
        h.base = base + off;
        llhttp_errno_t err = llhttp_execute(&p, base + off, size - off);
        if (err != HPE_PAUSED)
            break;
        size_t head_len = (size_t)(llhttp_get_error_pos(&p) - (base + off));
        if (off + head_len > size)
            __builtin_trap();
        bth_http_head_finish(&h);
        if (h.reason.len > 0 && (size_t)h.reason.off + h.reason.len > head_len)
            __builtin_trap();
        for (unsigned i = 0; i < h.nhdrs; i++) {
            if ((size_t)h.hdrs[i].name.off + h.hdrs[i].name.len > head_len ||
                (size_t)h.hdrs[i].value.off + h.hdrs[i].value.len > head_len)
                __builtin_trap();
            (void)bth_span_ieq(&h, h.hdrs[i].name, "content-length");
        }
        (void)llhttp_should_keep_alive(&p);
        /* body up to the end of the message */
        llhttp_resume(&p);
        size_t body_off = off + head_len;
        err = llhttp_execute(&p, base + body_off, size - body_off);
        if (err != HPE_PAUSED)
            break;
        size_t end = (size_t)(llhttp_get_error_pos(&p) - base);
        if (end > size || end < body_off)
            __builtin_trap();
        /* next response on the same connection, as http_session.c re-inits the parser */
        llhttp_init(&p, HTTP_RESPONSE, &bth_http_head_settings);
        if (end == off)
            break;
        off = end;
    }
    free(base);
    return 0;
}
