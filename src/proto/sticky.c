/* SPDX-License-Identifier: MIT */
/* Stickiness cookies: deterministic authenticated encryption (SIV). The MAC covers the
 * scope as well as the payload, so a cookie issued for one group cannot steer another;
 * the payload is encrypted, so clients do not learn target addresses. */
#include "sticky.h"

#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/evp.h>

#include "uri.h"

#define IV_BYTES 16

static uint8_t sticky_key[BTH_STICKY_KEY_BYTES];

void bth_sticky_set_key(const uint8_t key[BTH_STICKY_KEY_BYTES])
{
    memcpy(sticky_key, key, BTH_STICKY_KEY_BYTES);
}

int bth_sticky_random_key(uint8_t key[BTH_STICKY_KEY_BYTES])
{
    return getrandom(key, BTH_STICKY_KEY_BYTES, 0) == BTH_STICKY_KEY_BYTES ? 0 : -1;
}

int bth_sticky_parse_hex_key(const char *text, size_t len, uint8_t key[BTH_STICKY_KEY_BYTES])
{
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' ' || text[len - 1] == '\r'))
        len--;
    while (len > 0 && (*text == ' ' || *text == '\n')) {
        text++;
        len--;
    }
    if (len != BTH_STICKY_KEY_BYTES * 2)
        return -1;
    for (size_t i = 0; i < BTH_STICKY_KEY_BYTES; i++) {
        int hi = bth_uri_hex_value((unsigned char)text[2 * i]),
            lo = bth_uri_hex_value((unsigned char)text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = b64url[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = b64url[v & 63];
    }
    return o;
}

static int b64_val(char c)
{
    const char *p = c ? strchr(b64url, c) : NULL;
    return p ? (int)(p - b64url) : -1;
}

/* Returns the decoded length or -1. */
static ssize_t b64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* Canonical encodings only: leftover bits must be zero, so each value has one form. */
    if (bits >= 6 || (acc & ((1u << bits) - 1)) != 0)
        return -1;
    return (ssize_t)o;
}

/* Subkeys for the two jobs, derived from the configured key so one secret suffices. */
static void subkey(const char *label, uint8_t out[32])
{
    unsigned int n = 0;
    HMAC(EVP_sha256(), sticky_key, BTH_STICKY_KEY_BYTES, (const uint8_t *)label, strlen(label), out,
         &n);
}

/* The synthetic IV: a MAC over scope and payload (SIV construction, RFC 5297's idea with
 * HMAC-SHA256 and AES-256-CTR), so the cookie is deterministic, opaque and tamper-evident
 * without a nonce that could repeat across a fleet. */
static void siv(const char *scope, const uint8_t *payload, size_t n, uint8_t out[IV_BYTES])
{
    uint8_t k[32], buf[BTH_STICKY_VALUE_MAX * 2], full[EVP_MAX_MD_SIZE];
    size_t sl = strlen(scope);
    if (sl > BTH_STICKY_VALUE_MAX)
        sl = BTH_STICKY_VALUE_MAX;
    memcpy(buf, scope, sl);
    buf[sl] = '|';
    memcpy(buf + sl + 1, payload, n);
    subkey("berth sticky mac", k);
    unsigned int flen = 0;
    HMAC(EVP_sha256(), k, sizeof(k), buf, sl + 1 + n, full, &flen);
    memcpy(out, full, IV_BYTES);
}

/* AES-256-CTR in place (encrypt and decrypt are the same). Returns 0 or -1. */
static int ctr(const uint8_t iv[IV_BYTES], uint8_t *data, size_t n)
{
    uint8_t k[32];
    subkey("berth sticky enc", k);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0, ok = ctx != NULL &&
                       EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), NULL, k, iv) == 1 &&
                       EVP_EncryptUpdate(ctx, data, &outl, data, (int)n) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

size_t bth_sticky_sign(const char *scope, const char *name, size_t name_len, int64_t expiry,
                       char *out)
{
    uint8_t buf[IV_BYTES + 160];
    uint8_t *payload = buf + IV_BYTES;
    if (name_len > 128)
        return 0;
    memcpy(payload, name, name_len);
    int n = snprintf((char *)payload + name_len, 160 - name_len, "|%lld", (long long)expiry);
    size_t plen = name_len + (size_t)n;
    siv(scope, payload, plen, buf);
    if (ctr(buf, payload, plen) != 0)
        return 0;
    size_t o = b64_encode(buf, IV_BYTES + plen, out);
    out[o] = '\0';
    return o;
}

int bth_sticky_verify(const char *scope, const char *value, size_t len, int64_t now, char *name,
                      size_t cap)
{
    uint8_t buf[BTH_STICKY_VALUE_MAX], want[IV_BYTES];
    if (len >= BTH_STICKY_VALUE_MAX)
        return -1;
    ssize_t n = b64_decode(value, len, buf, sizeof(buf));
    if (n <= IV_BYTES)
        return -1;
    uint8_t *payload = buf + IV_BYTES;
    size_t plen = (size_t)n - IV_BYTES;
    if (ctr(buf, payload, plen) != 0)
        return -1;
    siv(scope, payload, plen, want);
    if (CRYPTO_memcmp(buf, want, IV_BYTES) != 0)
        return -1;
    const uint8_t *bar = NULL;
    for (size_t i = plen; i-- > 0;) {
        if (payload[i] == '|') {
            bar = payload + i;
            break;
        }
    }
    if (bar == NULL || bar + 1 == payload + plen)
        return -1;
    long long expiry = 0;
    for (const uint8_t *p = bar + 1; p < payload + plen; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        expiry = expiry * 10 + (*p - '0');
    }
    size_t nlen = (size_t)(bar - payload);
    if (expiry < now || nlen + 1 > cap)
        return -1;
    memcpy(name, payload, nlen);
    name[nlen] = '\0';
    return (int)nlen;
}

bool bth_cookie_find(const char *h, size_t len, const char *cname, const char **val, size_t *vlen)
{
    size_t cl = strlen(cname), i = 0;
    while (i < len) {
        while (i < len && (h[i] == ' ' || h[i] == ';' || h[i] == '\t'))
            i++;
        size_t ns = i;
        while (i < len && h[i] != '=' && h[i] != ';')
            i++;
        size_t ne = i;
        while (ne > ns && (h[ne - 1] == ' ' || h[ne - 1] == '\t'))
            ne--;
        if (i < len && h[i] == '=') {
            i++;
            size_t vs = i;
            while (i < len && h[i] != ';')
                i++;
            size_t ve = i;
            while (ve > vs && (h[ve - 1] == ' ' || h[ve - 1] == '\t'))
                ve--;
            if (ne - ns == cl && memcmp(h + ns, cname, cl) == 0) {
                if (ve - vs >= 2 && h[vs] == '"' && h[ve - 1] == '"') {
                    vs++;
                    ve--;
                }
                *val = h + vs;
                *vlen = ve - vs;
                return true;
            }
        }
    }
    return false;
}
