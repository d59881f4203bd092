/* SPDX-License-Identifier: MIT */
/* Worker threads; one connection is used by one worker only. A non-blocking socket with
 * an input and an output evbuffer and one edge-triggered event registered once for
 * read and write (one epoll_ctl per connection lifetime). Writes go out at once and only
 * wait for EPOLLOUT when the kernel buffer is full; reads stop at a byte budget so the
 * owner can apply backpressure, remembering that the socket may still hold data. */
#ifndef BERTH_CONN_H
#define BERTH_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/ssl.h>

struct evbuffer;

struct bth_conn {
    int fd;               /* owned */
    struct event ev;      /* EV_READ|EV_WRITE|EV_ET|EV_PERSIST on fd */
    struct evbuffer *in;  /* owned */
    struct evbuffer *out; /* owned */
    bool read_pending;    /* the socket may hold unread bytes (edge already consumed) */
    bool write_blocked;   /* last write hit EAGAIN: wait for the EPOLLOUT edge */
    bool eof;             /* peer sent FIN and we read up to it */
    bool rdhup;           /* the kernel reported the peer's FIN (EV_CLOSED): a short read
                           * no longer means drained, the EOF is still to be read */
    bool shut_wr;         /* we sent FIN */
    int error;            /* errno of a failed read/write, 0 if none */
    SSL *ssl;             /* owned: TLS on this socket, NULL for plain TCP */
};

/* Sets up <c> on an open non-blocking <fd> (ownership passes to <c>) and registers its
 * event with <cb>/<arg>. Returns 0, or -1 when out of memory (fd left open). */
int bth_conn_init(struct bth_conn *c, struct event_base *base, int fd, event_callback_fn cb,
                  void *arg);

/* Sets up <c> without a socket: the buffers of a connection that another one carries (an
 * HTTP/2 stream). Its event has no descriptor and fires only when activated by hand
 * (event_active), with <cb>/<arg>. Returns 0, or -1 when out of memory. */
int bth_conn_init_local(struct bth_conn *c, struct event_base *base, event_callback_fn cb,
                        void *arg);

/* Hands the connection in <src> over to <dst> (socket, TLS and buffered bytes), whose event
 * then calls <cb>/<arg>; <src> is left empty. Returns 0, or -1 when the event cannot be
 * registered (<dst> still owns the socket: fini it). */
int bth_conn_move(struct bth_conn *dst, struct bth_conn *src, event_callback_fn cb, void *arg);

/* Puts TLS on <c>: reads and writes go through <ssl> (ownership passes to <c>). The
 * handshake happens inside the first reads and writes. */
void bth_conn_set_ssl(struct bth_conn *c, SSL *ssl);

/* Closes the socket and frees the buffers. Idempotent; a zeroed or moved-from <c> is left as is. */
void bth_conn_fini(struct bth_conn *c);

/* Notes what an event reported; call first in every callback of the connection. */
static inline void bth_conn_note_event(struct bth_conn *c, short what)
{
    if (what & EV_CLOSED)
        c->rdhup = true;
}

/* Reads until EAGAIN, EOF, error or until <in> holds <limit> bytes. Returns the number of
 * bytes read. Sets eof/error; sets read_pending when it stopped at the limit. */
size_t bth_conn_read(struct bth_conn *c, size_t limit);

/* Writes as much of <out> as the kernel takes. Returns 0, or -1 on a write error (c->error
 * set). Sets write_blocked when bytes remain. */
int bth_conn_flush(struct bth_conn *c);

/* Sends FIN once <out> is empty (call again after each flush). */
void bth_conn_shutdown_wr(struct bth_conn *c);

#endif /* BERTH_CONN_H */
