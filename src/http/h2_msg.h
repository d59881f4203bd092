/* SPDX-License-Identifier: MIT */
/* An HTTP/1.1 message that berth itself wrote (an answer a session wrote for an HTTP/2
 * client, or a request a session wrote for an HTTP/2 target), read back into what HTTP/2
 * sends: the head's fields as lowercase name/value pairs, the body as bytes for DATA frames,
 * and the trailers of a chunked body. Head lines are read with a line reader (berth wrote
 * them from a head llhttp had accepted); chunked bodies are decoded by llhttp. For the
 * http/ files; worker thread, one message per stream. */
#ifndef BERTH_H2_MSG_H
#define BERTH_H2_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <llhttp.h>
#include <nghttp2/nghttp2.h>

struct evbuffer;

enum h2_msg_phase {
    MSG_HEAD = 0,   /* reading the head */
    MSG_LENGTH,     /* body of <left> bytes */
    MSG_CHUNKED,    /* chunked body, decoded by llhttp, trailers too */
    MSG_UNTIL_GONE, /* body delimited by the writer's end */
    MSG_DONE,       /* the whole message is in data (and trailers) */
};

/* What a head says: its start line and its body's framing. */
struct h2_msg_head {
    int status;                  /* a response's status; 0 for a request */
    const char *method, *target; /* a request's: in the head's bytes */
    size_t method_len, target_len;
    const char *authority; /* a request's Host value (not among the fields), or NULL */
    size_t authority_len;
    bool chunked;    /* Transfer-Encoding ends in chunked */
    bool has_length; /* Content-Length */
    uint64_t length;
};

struct h2_msg_field {
    uint32_t name_off, name_len, value_off, value_len; /* in hbuf */
};

struct h2_msg {
    enum h2_msg_phase phase;
    bool discard;          /* the body is read and dropped, not queued */
    uint64_t left;         /* MSG_LENGTH: body bytes still to come */
    struct evbuffer *data; /* owned: body bytes for DATA frames */
    llhttp_t rp;           /* chunked bodies */
    /* the head's or the trailers' fields as read: lowercase names */
    char *hbuf;
    size_t hlen, hcap;
    size_t name_off, name_len, value_off, value_len;
    bool in_value;
    struct h2_msg_field *fields;
    size_t nfields, cap_fields;
    size_t ntrailers; /* fields kept as trailers for the end of DATA */
};

/* Frees what <m> owns. */
void h2_msg_fini(struct h2_msg *m);

/* Forgets the fields read (nghttp2 copied them). */
static inline void h2_msg_clear_fields(struct h2_msg *m)
{
    m->hlen = m->nfields = 0;
}

/* The data queue, made on first use; NULL when out of memory. */
struct evbuffer *h2_msg_data(struct h2_msg *m);

/* Adds a field: the name lowercased, both copied. Returns 0 or -1. */
int h2_msg_add_field(struct h2_msg *m, const char *n, size_t nlen, const char *v, size_t vlen);

/* Reads one "Name: value" line into the fields (connection-specific ones, and Host and TE,
 * are noted in <hi> or left out). Returns 0 or -1. */
int h2_msg_head_field(struct h2_msg *m, const char *p, size_t l, struct h2_msg_head *hi);

/* Reads a whole head (<len> bytes through its empty line): a status line or a request
 * line, then field lines. Returns 0 or -1. */
int h2_msg_parse_head(struct h2_msg *m, const char *b, size_t len, struct h2_msg_head *hi);

/* Sets the phase for a body framed as <hi> says (<bodiless>: none whatever it says). */
void h2_msg_expect_body(struct h2_msg *m, const struct h2_msg_head *hi, bool bodiless);

/* The head went out (nghttp2 copied its fields): the body is read from now on. */
void h2_msg_head_sent(struct h2_msg *m);

/* Moves body bytes from <in> to the data queue while it holds less than <room> bytes (or
 * all of them with <all>). Returns 0, or -1 on a framing error. */
int h2_msg_take_body(struct h2_msg *m, struct evbuffer *in, size_t room, bool all);

/* The nghttp2 name/value list of the fields from index <from>, after the <nfirst> entries
 * of <first>: in <stackbuf> when it fits (<stackn>), else allocated (free it when it is
 * not <stackbuf>). NULL when out of memory. */
nghttp2_nv *h2_msg_nva(const struct h2_msg *m, size_t from, const nghttp2_nv *first, size_t nfirst,
                       size_t *n, nghttp2_nv *stackbuf, size_t stackn);

/* A data source's read for a stream sending <m>'s body (DATA payloads are moved by the
 * caller's send_data callback, NO_COPY): up to <length> bytes, the end of the stream (or
 * the trailers, submitted here) when the body is whole, or NGHTTP2_ERR_DEFERRED with
 * *<deferred> set while no byte waits. */
ssize_t h2_msg_read_data(struct h2_msg *m, nghttp2_session *ng, int32_t id, size_t length,
                         uint32_t *flags, bool *deferred);

/* At the end of the body: submits the trailers read, if any, on stream <id> and returns
 * true when they went (the DATA then must not end the stream). */
bool h2_msg_submit_trailers(const struct h2_msg *m, nghttp2_session *ng, int32_t id);

/* ---- the other way: HTTP/2 fields written as HTTP/1.1 lines ---- */

/* Appends "<name>: <value>\r\n" to <b> in one piece (nghttp2 refused CR, LF and NUL in
 * fields, so each is one line). Returns 0 or -1. */
int h2_line_add(struct evbuffer *b, const void *name, size_t nlen, const void *value, size_t vlen);

/* Appends a chunk-size line ("<hex>\r\n") for <n> bytes to <b>. */
void h2_chunk_head(struct evbuffer *b, size_t n);

/* nghttp2's send callback for a connection whose struct starts with its struct bth_conn
 * (<user_data>): frames go into the connection's output, up to <high> bytes waiting. */
ssize_t h2_send_to_conn(void *user_data, const uint8_t *data, size_t length, size_t high);

#endif /* BERTH_H2_MSG_H */
