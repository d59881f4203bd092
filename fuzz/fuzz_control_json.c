/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: what the control API and `berth ctl` parse from untrusted text.
 * control.c's parse_targets() is static, so its steps are repeated here on the exported
 * pieces: json_loadb, the "Targets" shape checks, bth_addr_from_ip_port and
 * bth_addr_usable; plus bth_ctl_parse_target, bth_parse_addr, bth_parse_duration_ms and
 * bth_parse_size on the raw input as a string, and bth_ctl_parse_response on the raw input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"
#include "ctl.h"
#include "target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    char id[64];
    unsigned port = 0;
    if (bth_ctl_parse_target(s, id, sizeof(id), &port) == 0) {
        if (strnlen(id, sizeof(id)) >= sizeof(id))
            __builtin_trap();
    }
    char tiny[2];
    (void)bth_ctl_parse_target(s, tiny, sizeof(tiny), &port);

    struct bth_addr a;
    if (bth_parse_addr(s, &a) == 0) {
        if (strnlen(a.text, sizeof(a.text)) >= sizeof(a.text))
            __builtin_trap();
        /* the canonical text must parse back to the same address */
        struct bth_addr b;
        if (bth_parse_addr(a.text, &b) != 0 || a.len != b.len || memcmp(&a.ss, &b.ss, a.len) != 0)
            __builtin_trap();
    }
    uint64_t ms;
    (void)bth_parse_duration_ms(s, &ms);
    size_t sz;
    (void)bth_parse_size(s, &sz);

    struct bth_ctl_resp resp;
    memset(&resp, 0, sizeof(resp));
    if (bth_ctl_parse_response(s, size, size & 1, &resp) == 1)
        bth_ctl_resp_fini(&resp);

    /* control.c parse_targets() */
    json_error_t jerr;
    json_t *root = json_loadb(s, size, 0, &jerr);
    if (root != NULL) {
        json_t *targets = json_object_get(root, "Targets");
        if (json_is_array(targets) && json_array_size(targets) > 0) {
            (void)json_is_true(json_object_get(root, "Wait"));
            size_t n = json_array_size(targets);
            for (size_t i = 0; i < n; i++) {
                json_t *t = json_array_get(targets, i);
                json_t *jid = json_object_get(t, "Id"), *jport = json_object_get(t, "Port");
                json_t *weight = json_object_get(t, "Weight");
                if (!json_is_string(jid) || !json_is_integer(jport))
                    break;
                json_int_t p = json_integer_value(jport);
                struct bth_addr ta;
                if (p < 1 || p > 65535 ||
                    bth_addr_from_ip_port(json_string_value(jid), (unsigned)p, &ta) != 0)
                    break;
                if (strnlen(ta.text, sizeof(ta.text)) >= sizeof(ta.text))
                    __builtin_trap();
                const char *why = NULL;
                if (!bth_addr_usable(&ta, &why) && why == NULL)
                    __builtin_trap();
                if (weight != NULL && (!json_is_integer(weight) || json_integer_value(weight) < 0 ||
                                       json_integer_value(weight) > 999))
                    break;
            }
        }
        /* any string in the document through the value parsers too */
        const char *key;
        json_t *val;
        json_object_foreach(root, key, val)
        {
            if (json_is_string(val)) {
                const char *vs = json_string_value(val);
                (void)bth_parse_duration_ms(vs, &ms);
                (void)bth_parse_size(vs, &sz);
                (void)bth_parse_addr(vs, &a);
                (void)bth_ctl_parse_target(vs, id, sizeof(id), &port);
            }
        }
        json_decref(root);
    }
    free(s);
    return 0;
}
