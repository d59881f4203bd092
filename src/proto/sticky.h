/* SPDX-License-Identifier: MIT */
/* Stickiness cookies: opaque, tamper-evident values naming a target or a target group.
 * A value is base64url(SIV || AES-256-CTR("<name>|<expiry unix seconds>")) with the SIV an
 * HMAC-SHA256 over scope and plaintext, keyed by a 32-byte key shared by every berth instance that
 * must honour the same cookies. The key is set once by the main thread before workers start; after
 * that any thread may sign and verify (the functions are pure). */
#ifndef BERTH_STICKY_H
#define BERTH_STICKY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BTH_STICKY_KEY_BYTES 32
#define BTH_STICKY_VALUE_MAX 256

/* Installs the key. Main thread, before workers start. */
void bth_sticky_set_key(const uint8_t key[BTH_STICKY_KEY_BYTES]);
/* Fills <key> with random bytes. Returns 0 or -1. */
int bth_sticky_random_key(uint8_t key[BTH_STICKY_KEY_BYTES]);
/* Parses 64 hex characters (surrounding whitespace allowed). Returns 0 or -1. */
int bth_sticky_parse_hex_key(const char *text, size_t len, uint8_t key[BTH_STICKY_KEY_BYTES]);

/* Writes a cookie value binding <name> (a target "ip:port" or a group name) within <scope>
 * (the group or rule the cookie belongs to) until <expiry>. Returns the length written to
 * <out> (at most BTH_STICKY_VALUE_MAX - 1, NUL-terminated) or 0 when <name> is too long. */
size_t bth_sticky_sign(const char *scope, const char *name, size_t name_len, int64_t expiry,
                       char *out);

/* Checks <value> for <scope> at time <now>: on success copies the bound name into <name>
 * (NUL-terminated, at most <cap> bytes) and returns its length; returns -1 when the value is
 * malformed, forged or expired. */
int bth_sticky_verify(const char *scope, const char *value, size_t len, int64_t now, char *name,
                      size_t cap);

/* Finds cookie <cname> in one Cookie header value. Returns true and sets <val> and <vlen>. */
bool bth_cookie_find(const char *header, size_t len, const char *cname, const char **val,
                     size_t *vlen);

#endif /* BERTH_STICKY_H */
