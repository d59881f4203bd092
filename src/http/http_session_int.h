/* SPDX-License-Identifier: MIT */
/* Inside the HTTP/1 session, shared by its files and nothing else: http_session.c (the
 * connection and the exchange flow), http_answer.c (berth's own answers) and http_sticky.c
 * (stickiness cookies). Worker thread: a session belongs to the worker that accepted it. */
#ifndef BERTH_HTTP_SESSION_INT_H
#define BERTH_HTTP_SESSION_INT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <arpa/inet.h>
#include <event2/event_struct.h>
#include <llhttp.h>

#include "conn.h"
#include "http_exchange.h"
#include "http_head.h"
#include "snapshot.h"
#include "worker.h"

struct bth_upstream;
struct evbuffer;

/* Backpressure: stop reading one side while the other side's output holds this much. */
#define HIGH_WATERMARK (256 * 1024)
#define READ_BUDGET    (64 * 1024)
/* A request body berth does not forward (it answered itself) is read and dropped up to this
 * size to keep the connection; beyond it the connection closes after the answer. */
#define DISCARD_MAX (1024 * 1024)

enum session_state {
    SS_IDLE = 0,   /* keep-alive: waiting for the first byte of a request */
    SS_HEAD,       /* reading a request head */
    SS_CONNECTING, /* request routed; waiting for the target connection */
    SS_PROXYING,   /* request forwarded (body may still stream); response in progress */
    SS_TUNNEL,     /* after 101 Switching Protocols: bytes both ways */
    SS_CLOSING,    /* sending berth's last answer, then close */
    SS_DISCARD,    /* berth answered early: reading and dropping the rest of the body */
};

struct bth_http_session;

/* The client side of a session that has no socket of its own: an HTTP/2 stream, which
 * writes the request into the session's conn.in as HTTP/1.1 and reads the HTTP/1.1 answer
 * from its conn.out. These calls take the place of the socket's reads and writes; the
 * session never calls back into the front from inside them. Worker thread. */
struct h1_front_ops {
    /* Moves up to <limit> more request bytes into s->conn.in; sets s->conn.read_pending when
     * more are waiting. */
    void (*read)(struct bth_http_session *s, size_t limit);
    /* Answer bytes were added to s->conn.out: take what the client can now. Returns 0, or
     * -1 when the client is gone. */
    int (*write)(struct bth_http_session *s);
    /* The session ends and is freed right after: take what is left in s->conn.out. */
    void (*gone)(struct bth_http_session *s);
    /* The target's final answer head, given as it was read rather than written out as
     * HTTP/1.1 and read back: <status>, the fields of <h> (those with drop set are not for
     * the client), the field lines berth adds in <extra> (Set-Cookie; NULL when none), and
     * the body that follows in conn.out (<mode>, <length> bytes for BODY_LENGTH). Returns
     * the head's size as HTTP/1.1 (for the access log), or -1 when the client is gone. */
    ssize_t (*head)(struct bth_http_session *s, int status, const struct bth_http_head *h,
                    struct evbuffer *extra, enum body_mode mode, uint64_t length);
};

enum close_reason {
    CLOSE_NONE = 0,
    CLOSE_CLIENT_EOF,
    CLOSE_CLIENT_ERROR,
    CLOSE_IDLE_TIMEOUT,
    CLOSE_TARGET_ABORT,
    CLOSE_DONE,
};

struct bth_http_session {
    struct bth_conn conn;
    const struct h1_front_ops *front;         /* NULL: conn is the client's socket */
    void *front_arg;                          /* the front's own state (its stream) */
    struct bth_worker *w;                     /* borrowed: owner */
    struct bth_worker_listener *wl;           /* borrowed */
    struct bth_snapshot *snap;                /* one reference held */
    const struct bth_snap_listener *listener; /* borrowed from snap */
    struct bth_worker_conn wc;                /* on the worker's client list */
    struct event timer;
    enum session_state state;
    uint64_t id;
    bool closing;          /* free at the end of the current callback */
    bool close_after;      /* close once the current answer is written */
    bool client_keepalive; /* the client may send another request */
    bool client_http10;
    bool resume;              /* a buffered request waits for on_client_io (resume_client) */
    bool https;               /* the client came over TLS (X-Forwarded-Proto, redirects, log) */
    bool http2;               /* the client speaks HTTP/2 (the access log's version) */
    bool expire;              /* the target's drain ended: the timer ends the exchange */
    size_t out_high;          /* stop reading the target while conn.out holds this much */
    struct sockaddr_in6 peer; /* or a sockaddr_in: the client, AF_INET or AF_INET6 */
    char client_ip[INET6_ADDRSTRLEN];
    char client_text[INET6_ADDRSTRLEN + 8];
    unsigned listen_port;

    struct exchange_mem *xm; /* owned: while a request is in progress, NULL when idle */

    struct bth_upstream *up;   /* attached upstream connection, NULL if none */
    struct bth_target *target; /* one reference while an exchange uses it */
    uint64_t discarded;        /* body bytes dropped in SS_DISCARD */
    bool timer_body;           /* the timer is set for the body deadline, not a fixed timeout */
    struct exchange ex;        /* the request/response in progress; reset whole per request */
};

struct route_info {
    char *buf; /* owned by the caller: room for both paths below */
    size_t cap;
    char *path; /* percent-decoded and dot-free (NUL-terminated): what rules match */
    size_t path_len;
    const char *fwd_path; /* normalised, still encoded: forwarded, and #{path} of redirects */
    size_t fwd_path_len;
    const char *query; /* raw, after '?' */
    size_t query_len;
    bool has_query;
    bool rewrite_target; /* forward fwd_path and query, not the target as received */
    const char *host;    /* for rules: without port */
    size_t host_len;
    const char *authority; /* absolute-form without a Host field: the Host berth sends */
    size_t authority_len;
};

/* ---- http_session.c: the connection and the exchange flow ---- */

/* Moves the session's state (legal moves checked in debug builds). */
void h1_set_state(struct bth_http_session *s, enum session_state st);
/* (Re)arms the session's one timer for <ms>. */
void h1_arm_timer(struct bth_http_session *s, uint64_t ms);
/* Writes what the client can take; on a write error the session closes. */
void h1_flush_client(struct bth_http_session *s);
/* Detaches the upstream connection (back to its pool when <reusable>). */
void h1_drop_upstream(struct bth_http_session *s, bool reusable);
/* Drops the exchange's target reference and in-flight count. */
void h1_release_target(struct bth_http_session *s);
/* Marks the session closing; the entry point frees it as its last step. */
void h1_session_close(struct bth_http_session *s);
/* Writes the exchange's access-log line and counts it. */
void h1_log_exchange(struct bth_http_session *s);
/* Ends the exchange: the next request starts afresh (reset in one assignment). */
void h1_reset_exchange(struct bth_http_session *s);
/* Takes up a buffered (pipelined) request from the event loop. */
void h1_resume_client(struct bth_http_session *s);
/* Moves body bytes from <src> to <dst> under <mode>; 1 when the body is whole, 0 when more
 * is to come, -1 on a framing error. <count> gets the bytes moved. */
int h1_forward_body(llhttp_t *p, enum body_mode mode, uint64_t *remaining, struct evbuffer *src,
                    struct evbuffer *dst, uint64_t *count);

/* Writes the client's address as text: <ip> and "<ip>:<port>" in <text>. */
void h1_describe_peer(const struct sockaddr_storage *ss, char ip[INET6_ADDRSTRLEN],
                      char text[INET6_ADDRSTRLEN + 8]);

/* A session for one request whose client side is <front> (an HTTP/2 stream), on the
 * snapshot <snap> (a reference is taken) and listener <wl>, for the client <peer> whose
 * texts <ip>/<text> are copied. Its conn.in takes the request as HTTP/1.1 bytes: call
 * h1_front_input once they are there. NULL when out of memory. */
struct bth_http_session *h1_front_session_new(struct bth_worker *w, struct bth_worker_listener *wl,
                                              struct bth_snapshot *snap,
                                              const struct sockaddr_storage *peer, const char *ip,
                                              const char *text, bool https,
                                              const struct h1_front_ops *front, void *arg);
/* The front has request bytes for the session: it reads them from the event loop (never
 * from inside the caller). */
void h1_front_input(struct bth_http_session *s);
/* The front took answer bytes and has room for more: the session goes on from the event
 * loop. */
void h1_front_drained(struct bth_http_session *s);
/* The client gave up the request (a reset stream): the session ends now, without calling
 * the front again. */
void h1_front_abort(struct bth_http_session *s);
/* Once a second (the worker's sweep, or its HTTP/2 connection's): when the exchange's
 * target finished its deregistration delay, the exchange is ended from the session's own
 * timer (never from the caller's stack). Returns true when it will be. */
bool h1_exchange_expired(struct bth_http_session *s);

/* ---- http_answer.c: berth's own answers ---- */

/* Answers the current request itself: <status> with <body> (<blen> bytes) of <ctype> and
 * any <extra> header lines. The connection closes afterwards unless the request was read
 * whole and the status leaves the stream in sync. <reason> goes to the access log's
 * error_reason (NULL for answers that are not errors: redirects, fixed responses). */
void h1_send_answer(struct bth_http_session *s, int status, const char *ctype, const char *body,
                    size_t blen, const char *extra, const char *reason);
/* berth's own error answer: "<status> <text>" as a short plain-text body. */
void h1_send_error(struct bth_http_session *s, int status, const char *reason);
/* Answers with the redirect of <a>; the head (<head_len> bytes) is drained afterwards. */
void h1_send_redirect(struct bth_http_session *s, const struct bth_cfg_action *a,
                      const struct route_info *ri, size_t head_len);
/* In SS_DISCARD: reads and drops the rest of a body berth answered early. */
void h1_discard_body(struct bth_http_session *s);

/* ---- http_sticky.c: stickiness ---- */

/* The value of cookie <name> in the request head, or NULL. */
const char *h1_cookie_value(const struct bth_http_head *h, const char *name, size_t *len);
/* Picks the group of a forward action; with rule-level stickiness the client's BERTHTG
 * cookie keeps it on its group while that group still has weight. */
struct bth_snap_group *h1_pick_group(struct bth_http_session *s, const struct bth_snap_action *act);
/* The target a stickiness cookie names, if it is still in the group and takes traffic. */
struct bth_target *h1_sticky_target(struct bth_http_session *s);
/* Set-Cookie lines for stickiness, added to the target's response head. */
void h1_add_sticky_cookies(struct bth_http_session *s, struct evbuffer *out);

#endif /* BERTH_HTTP_SESSION_INT_H */
