/* SPDX-License-Identifier: MIT */
/* Main thread only. berth's own small HTTP/1.1 server for the control API, on the Unix
 * control socket and on control.listen: llhttp fed each byte once (linear in the input),
 * a 16 KiB request head, a 4 MiB body, deadlines per connection state, a cap on open
 * connections, and every error answered as {"Error":{"Code","Message"}} JSON. A connection
 * carries one request at a time; pipelined requests wait in its input until the answer
 * before them is written, and a client that half-closes still gets every answer. */
#ifndef BERTH_CONTROL_HTTP_H
#define BERTH_CONTROL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;
struct bth_control_http;
struct bth_control_req;

/* Request line plus header fields; larger gets 431 and the connection closes. */
#define BTH_CONTROL_HTTP_MAX_HEAD_BYTES (16 * 1024)
#define BTH_CONTROL_HTTP_MAX_HEADERS    64
/* Larger bodies get 413 (a register call of 1000 targets is about 60 KiB). */
#define BTH_CONTROL_HTTP_MAX_BODY_BYTES (4 * 1024 * 1024)
/* Defaults of control.request_timeout and control.idle_timeout (bth_control_http_set_timeouts).
 * A whole request (head and body) must arrive within the first, counted from the
 * connection's opening or from the first byte of a later request; then 408 and close. A
 * keep-alive connection with no request under way is closed after the second. */
#define BTH_CONTROL_HTTP_REQUEST_TIMEOUT_MS 10000
#define BTH_CONTROL_HTTP_IDLE_TIMEOUT_MS    30000
/* A response the client does not take within this is dropped with its connection. */
#define BTH_CONTROL_HTTP_WRITE_TIMEOUT_MS 30000
/* After an error answer, what the client still sends is read and dropped for up to this
 * long, so the answer is not lost to a reset (lingering close, as nginx does). */
#define BTH_CONTROL_HTTP_LINGER_MS 2000
/* Connections past the cap get 503 JSON and are closed; refusals are logged at most once
 * per this interval. */
#define BTH_CONTROL_HTTP_REFUSAL_LOG_MS 10000

enum bth_control_method {
    BTH_CONTROL_GET = 0,
    BTH_CONTROL_POST,
};

/* Called when a request head is complete, before its body is read (NULL: no check). Returns
 * 0 to go on, or -1 after answering <req> (bth_control_req_reply*); the connection then
 * closes once the answer is written, and the body is never read. */
typedef int (*bth_control_head_cb)(struct bth_control_req *req, void *arg);
/* Called with each complete request. The callback answers it, now or later (the request
 * stays valid until answered, or until the gone callback ran). */
typedef void (*bth_control_req_cb)(struct bth_control_req *req, void *arg);
/* Called when a request not answered yet is dropped with its connection (error, timeout,
 * server destroyed). The request must not be used afterwards. */
typedef void (*bth_control_gone_cb)(void *arg);

/* Sets the request and idle timeouts for connections' next deadlines. NULL is a no-op. */
void bth_control_http_set_timeouts(struct bth_control_http *h, uint64_t request_ms,
                                   uint64_t idle_ms);

/* Creates a server on <fd>, a listening stream socket it takes over (closed on failure and
 * on destroy). <name> names it in log lines ("control listen 127.0.0.1:9090"). At most
 * <max_conns> connections are open at once. It accepts nothing until started. Returns the
 * server, or NULL (out of memory; <fd> is closed). */
struct bth_control_http *bth_control_http_create(struct event_base *base, int fd, const char *name,
                                                 unsigned max_conns, bth_control_head_cb on_head,
                                                 bth_control_req_cb on_request, void *arg);

/* Starts accepting connections. */
void bth_control_http_start(struct bth_control_http *h);

/* Closes the listening socket and every connection (the gone callback runs for requests
 * not answered yet), then frees <h>. A connection whose request callback is on the stack
 * (a reload through this very server) still writes its answer, then closes, and the last
 * such close frees <h>. Callers: bth_control's reconfigure and stop. NULL is a no-op. */
void bth_control_http_destroy(struct bth_control_http *h);

/* ---- requests: valid from the callback until answered ---- */

enum bth_control_method bth_control_req_method(const struct bth_control_req *req);

/* The request target as sent ("/v1/target-groups?x=1"), NUL-terminated. */
const char *bth_control_req_uri(const struct bth_control_req *req);

/* The first field named <name> (case-insensitive), without surrounding whitespace, or NULL
 * when absent. */
const char *bth_control_req_header(const struct bth_control_req *req, const char *name);

/* The body read so far (all of it in the request callback); the handler may drain it. */
struct evbuffer *bth_control_req_body(struct bth_control_req *req);

/* Adds "<name>: <value>" to the answer to come. Returns 0, or -1 when the few hundred bytes
 * kept for such fields are used up. */
int bth_control_req_add_header(struct bth_control_req *req, const char *name, const char *value);

/* Sets what happens to <req> if its connection goes before the answer; NULL clears it. */
void bth_control_req_on_gone(struct bth_control_req *req, bth_control_gone_cb cb, void *arg);

/* Answers <req> with <status>, Content-Type <ctype> and <len> bytes at <data>. The answer
 * is queued, never written from inside this call, so it is safe from any callback. */
void bth_control_req_reply(struct bth_control_req *req, int status, const char *ctype,
                           const void *data, size_t len);

/* Same, moving the contents of <body> (left empty) into the answer. */
void bth_control_req_reply_buffer(struct bth_control_req *req, int status, const char *ctype,
                                  struct evbuffer *body);

/* Answers {"Error":{"Code":<code>,"Message":<message>}} as application/json. */
void bth_control_req_reply_error(struct bth_control_req *req, int status, const char *code,
                                 const char *message);

#endif /* BERTH_CONTROL_HTTP_H */
