/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: stickiness cookies. bth_sticky_verify on arbitrary values (must never
 * accept a forgery), bth_cookie_find on arbitrary Cookie headers, bth_sticky_parse_hex_key,
 * and a sign/verify round trip with scope, name and expiry taken from the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sticky.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int keyed;
    if (!keyed) {
        uint8_t key[BTH_STICKY_KEY_BYTES];
        for (int i = 0; i < BTH_STICKY_KEY_BYTES; i++)
            key[i] = (uint8_t)(i * 7 + 1);
        bth_sticky_set_key(key);
        keyed = 1;
    }
    char *s = malloc(size ? size : 1);
    if (s == NULL)
        return 0;
    if (size)
        memcpy(s, data, size);

    char name[BTH_STICKY_VALUE_MAX];
    int r = bth_sticky_verify("tg", s, size, 0, name, sizeof(name));
    if (r >= 0 && (size_t)r >= sizeof(name))
        __builtin_trap();
    char small[3];
    (void)bth_sticky_verify("tg", s, size, 0, small, sizeof(small));

    const char *val;
    size_t vlen;
    if (bth_cookie_find(s, size, "AWSALB", &val, &vlen)) {
        if (val < s || val + vlen > s + size)
            __builtin_trap();
    }
    uint8_t k2[BTH_STICKY_KEY_BYTES];
    (void)bth_sticky_parse_hex_key(s, size, k2);

    /* round trip: [1 byte scope len][8 bytes expiry][scope][name] */
    if (size >= 9) {
        size_t sl = data[0] % 32;
        int64_t expiry;
        memcpy(&expiry, data + 1, 8);
        if (sl <= size - 9) {
            char scope[33];
            memcpy(scope, data + 9, sl);
            scope[sl] = '\0';
            const char *nm = (const char *)data + 9 + sl;
            size_t nl = size - 9 - sl;
            char out[BTH_STICKY_VALUE_MAX];
            size_t o = bth_sticky_sign(scope, nm, nl, expiry, out);
            if (nl > 128) {
                if (o != 0)
                    __builtin_trap();
            } else {
                if (o == 0 || o >= BTH_STICKY_VALUE_MAX || out[o] != '\0' || strlen(out) != o)
                    __builtin_trap();
                char back[BTH_STICKY_VALUE_MAX];
                int64_t now = expiry < 0 ? 0 : expiry;
                int v = bth_sticky_verify(scope, out, o, now, back, sizeof(back));
                if (expiry >= 0) {
                    if (v != (int)nl || memcmp(back, nm, nl) != 0)
                        __builtin_trap();
                    /* expired one second later, and bound to its scope */
                    if (expiry < INT64_MAX &&
                        bth_sticky_verify(scope, out, o, expiry + 1, back, sizeof(back)) != -1)
                        __builtin_trap();
                    /* the scope is a C string: it ends at its first NUL */
                    char other[40];
                    size_t scl = strlen(scope);
                    memcpy(other, scope, scl);
                    memcpy(other + scl, "x", 2);
                    if (bth_sticky_verify(other, out, o, now, back, sizeof(back)) != -1)
                        __builtin_trap();
                } else if (v != -1) {
                    __builtin_trap();
                }
                /* a flipped character must not verify as the same thing */
                out[o / 2] ^= 1;
                (void)bth_sticky_verify(scope, out, o, now, back, sizeof(back));
            }
        }
    }
    free(s);
    return 0;
}
