/* SPDX-License-Identifier: MIT */
/* Any thread; pure functions over caller-owned buffers, no allocation. Request-target
 * syntax as a proxy must read it before routing: the authority rules of RFC 3986 section
 * 3.2 (for Host and absolute-form targets) and path normalisation (RFC 3986 sections 6.2.2
 * and 5.2.4), so that listener rules see the path a target will act on. */
#ifndef BERTH_URI_H
#define BERTH_URI_H

#include <stdbool.h>
#include <stddef.h>

/* Listener path_normalization. ON is the default (enum value 0). */
enum bth_path_norm {
    BTH_PATH_NORM_ON = 0,        /* dot segments removed, escaped unreserved bytes decoded */
    BTH_PATH_NORM_OFF,           /* paths forwarded and matched as received */
    BTH_PATH_NORM_MERGE_SLASHES, /* ON, and runs of '/' become one */
};

/* Results of bth_uri_normalize_path. */
#define BTH_URI_OK         0
#define BTH_URI_BAD_ESCAPE (-1) /* "%zz", "%4", or no room in the output */
#define BTH_URI_ABOVE_ROOT (-2) /* "/.." climbs above "/" */

/* The value of the hex digit <c> (either case), or -1. */
int bth_uri_hex_value(unsigned char c);

/* A request-target split into its raw pieces (RFC 9112 section 3.2); all point into it. */
struct bth_uri_target {
    const char *authority; /* absolute-form: what follows "scheme://", NULL for other forms */
    size_t authority_len;
    const char *path; /* as received; empty for "http://h" and "http://h?q" */
    size_t path_len;
    const char *query; /* after '?', empty (not NULL) when absent */
    size_t query_len;
    bool has_query; /* a '?' was there, even with nothing after it */
};

/* Splits <target> (<len> bytes): origin-form "/p?q", absolute-form "http://h:8080/p?q" (any
 * scheme) and asterisk-form "*" (path "*"). A fragment is dropped. Returns 0, or -1 for an
 * empty target, authority-form ("h:443") or anything else. */
int bth_uri_split_target(const char *target, size_t len, struct bth_uri_target *out);

/* Percent-decodes <s> (<n> bytes) into <out> (<cap> bytes, NUL-terminated), length in
 * *<out_len>. Returns 0, or -1 for a bad escape, a decoded NUL or no room. */
int bth_uri_percent_decode(const char *s, size_t n, char *out, size_t cap, size_t *out_len);

/* Sets *<out_len> to the length of the authority <host> without its ":port"
 * ("example.com:80" -> "example.com", "[fd00::1]:80" -> "[fd00::1]"). A value with two
 * or more colons outside brackets is a bare IPv6 address and is left whole. */
void bth_uri_host_without_port(const char *host, size_t len, size_t *out_len);

/* Whether <s> (<n> bytes) is a valid Host value: uri-host [":" port] (RFC 9110 section
 * 7.2, RFC 3986 section 3.2.2): a reg-name (unreserved, sub-delims but ',', pct-encoded;
 * may be empty), a dotted IPv4 address, or a bracketed IPv6 address, then an optional port
 * of up to five digits. Userinfo ("a@b"), whitespace, a comma (a Host that some targets
 * would read as a list), a path or a second port are not. */
bool bth_uri_authority_valid(const char *s, size_t n);

/* Whether <path> (<n> bytes, origin-form path without query) could change under <mode>:
 * a cheap scan for '%', "/." and (merging) "//". False means it is already normal. */
bool bth_uri_path_needs_normalizing(const char *path, size_t n, enum bth_path_norm mode);

/* Normalises the origin-form <path> (<n> bytes, starting with '/', no query) into <out>
 * (<cap> bytes, NUL-terminated, length in *<out_len>): percent-escaped unreserved bytes are
 * decoded and other escapes get upper-case hex (section 6.2.2), runs of '/' merge when
 * <mode> says so, then "." and ".." segments are removed (section 5.2.4). The result is
 * still percent-encoded: it is what berth forwards. Returns BTH_URI_OK, BTH_URI_BAD_ESCAPE
 * or BTH_URI_ABOVE_ROOT (where RFC 3986 would silently stop at the root, berth refuses:
 * such a path is a probe, and a target might read it differently). */
int bth_uri_normalize_path(const char *path, size_t n, enum bth_path_norm mode, char *out,
                           size_t cap, size_t *out_len);

/* Removes "." and ".." segments of the '/'-led <buf> (*<len> bytes) in place, as section
 * 5.2.4. Returns BTH_URI_OK or BTH_URI_ABOVE_ROOT. */
int bth_uri_remove_dot_segments(char *buf, size_t *len);

#endif /* BERTH_URI_H */
