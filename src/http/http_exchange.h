/* SPDX-License-Identifier: MIT */
/* One HTTP/1 exchange (a request and its response) on a client connection: its per-request
 * state, which starts over in one assignment with every request, and the memory only an
 * exchange in progress needs. For the http/ files only; worker thread. */
#ifndef BERTH_HTTP_EXCHANGE_H
#define BERTH_HTTP_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <llhttp.h>

#include "http_head.h"
#include "snapshot.h"

#define MAX_TRIES 8 /* targets one exchange may try (connect failures, retries) */

struct bth_target;
struct evbuffer;

enum body_mode {
    BODY_NONE = 0,
    BODY_LENGTH,  /* Content-Length */
    BODY_CHUNKED, /* chunked, forwarded raw */
    BODY_DECHUNK, /* chunked from the target, decoded for an HTTP/1.0 client */
    BODY_EOF,     /* response delimited by the target closing */
};

/* The response side of an exchange; it only moves forward (set_resp). */
enum resp_state {
    RESP_WAITING = 0, /* nothing sent to the client yet (a retry is still possible) */
    RESP_HEAD_SENT,   /* the status line and fields are on their way to the client */
    RESP_DONE,        /* the whole response is queued to the client */
};

/* What only an exchange in progress needs: the parsers, the heads' spans (a few KiB) and
 * the buffers toward the target. Taken when a request's first byte arrives and given back
 * when the connection goes idle, so an idle keep-alive connection holds none of it. */
struct exchange_mem {
    llhttp_t req_parser;
    struct bth_http_head req;
    llhttp_t resp_parser;
    struct bth_http_head resp;
    struct evbuffer *pending;    /* owned: bytes for the target while no connection is ready */
    struct evbuffer *retry_copy; /* owned: the head again, for a retry on a fresh connection */
    char *req_view;              /* owned: the mended head req parses, when llhttp refused it */
    struct bth_target *tried[MAX_TRIES]; /* borrowed: targets this exchange tried */
    char request_id[33];
    /* min_body_rate: the body must be whole by body_t0_ms + body_timeout + received/rate. */
    uint64_t body_t0_ms;   /* monotonic: the head's arrival, moved on by time berth held off */
    uint64_t body_rx0;     /* rx_bytes when the head was read: body bytes = rx_bytes - this */
    uint64_t body_held_ms; /* when berth stopped reading the client (target side full), or 0 */
    /* access log */
    struct timespec t_start, t_sent, t_resp;
    uint64_t rx_bytes, tx_bytes;
    char *scratch; /* owned: copies of method, uri, host, user agent for the log */
    size_t scratch_cap;
    size_t m_len, u_len, h_len, ua_len;
    const char *error_reason;
};

/* The per-request state of one exchange, request and response side. Everything here
 * starts over with each request in one assignment (reset_exchange); what outlives a
 * request (the connection, its keep-alive, the upstream and target references) lives in
 * the session. */
struct exchange {
    /* request */
    size_t req_parsed; /* head bytes fed to llhttp so far */
    enum body_mode req_body;
    uint64_t req_remaining; /* BODY_LENGTH bytes still to forward */
    bool req_done;          /* whole request forwarded (or queued) */
    bool req_has_body;
    bool is_head_method;
    bool is_upgrade;
    bool te_reframe;   /* Transfer-Encoding rewritten with a bare final chunked */
    bool desync_close; /* ambiguous request: close both sides after the response */

    /* routing */
    int rule;             /* matched rule index, -1: default action */
    bool grpc;            /* a gRPC call (content-type application/grpc*) */
    uint64_t deadline_ms; /* monotonic: the call's grpc-timeout runs out, 0: none */
    bool deadline_hit;    /* berth ended the call at its deadline */
    int grpc_status;      /* what the target's grpc-status was (kept when the upstream goes) */
    bool set_tg_cookie;   /* answer with a BERTHTG group stickiness cookie */
    uint64_t tg_cookie_ms;
    bool set_target_cookie;         /* answer with a BERTH-<group> lb_cookie */
    bool resp_sets_app_cookie;      /* the target set the app_cookie: bind BERTHAPP-<group> */
    struct bth_snap_group *group;   /* borrowed from snap */
    struct bth_target *sticky_pick; /* borrowed from snap: the target a cookie names */
    unsigned ntried;
    bool up_reused;
    bool retried_fresh;

    /* response */
    size_t resp_parsed;
    enum body_mode resp_body;
    uint64_t resp_remaining;
    enum resp_state resp;
    int status;        /* status sent to the client */
    int target_status; /* status from the target, -1 if none */
};

#endif /* BERTH_HTTP_EXCHANGE_H */
