/* SPDX-License-Identifier: MIT */
/* Any thread; a pure function over caller-owned buffers. ELB forwards requests whose
 * deviations from RFC 9112 carry no framing meaning (its "Acceptable" tier: a stray control
 * byte in an ordinary field, whitespace before a colon, HTTP/1.2, a space in the target);
 * llhttp refuses them. This writes such a head out again as the valid HTTP/1.1 head berth
 * parses and forwards instead. It is only ever applied to heads the desync classifier has
 * rated Compliant or Acceptable, so no rewrite touches Content-Length, Transfer-Encoding or
 * the place where the head ends. */
#ifndef BERTH_HTTP_TOLERATE_H
#define BERTH_HTTP_TOLERATE_H

#include <stddef.h>

/* Room bth_http_tolerate_head needs for a head of <len> bytes. */
#define BTH_HTTP_TOLERATE_ROOM(len) (3 * (len) + 16)

/* Rewrites the request head <head> (<len> bytes, up to and including its empty line) into
 * <out> (BTH_HTTP_TOLERATE_ROOM(len) bytes). Request line: the target's spaces become %20,
 * an empty target "/", a missing version (HTTP/0.9 shape) HTTP/1.0, HTTP/1.2-1.9 HTTP/1.1,
 * whitespace around it goes. Fields: whitespace between name and colon goes, a field whose
 * name is not a token is dropped (as nginx's ignore_invalid_headers), control bytes in a
 * value become SP (RFC 9110 5.5). Returns the length written, or 0 when the head has a
 * shape this does not mend (a bare CR or LF, obs-fold, no colon, another major version). */
size_t bth_http_tolerate_head(const char *head, size_t len, char *out);

#endif /* BERTH_HTTP_TOLERATE_H */
