/* SPDX-License-Identifier: MIT */
/* Socket I/O over evbuffers with an edge-triggered event. A short read means the socket
 * is drained (a new edge comes with new data), which saves the EAGAIN read per event that
 * level-triggered loops pay; the same holds for short writes. The one exception is a FIN
 * that arrived with the data: EPOLLRDHUP (EV_CLOSED) tells us, and then we read on to the
 * EOF, as nginx does. */
#include "conn.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/err.h>

#define READ_CHUNK 16384
/* An empty input buffer is read through the stack first: a reservation in the evbuffer is a
 * 32 KiB chain that a read finding nothing would leave behind, and an idle connection must
 * hold no buffer (idle keep-alive connections cost what HAProxy's cost). A small request
 * then also sits in a small chain. */
#define PROBE_SIZE 4096
#define FLUSH_IOV  16

int bth_conn_init(struct bth_conn *c, struct event_base *base, int fd, event_callback_fn cb,
                  void *arg)
{
    c->fd = fd;
    c->read_pending = false;
    c->write_blocked = false;
    c->eof = false;
    c->rdhup = false;
    c->shut_wr = false;
    c->error = 0;
    c->ssl = NULL;
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    if (c->in == NULL || c->out == NULL)
        goto fail;
    if (event_assign(&c->ev, base, fd, EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST, cb,
                     arg) != 0)
        goto fail;
    if (event_add(&c->ev, NULL) != 0)
        goto fail;
    return 0;
fail:
    if (c->in)
        evbuffer_free(c->in);
    if (c->out)
        evbuffer_free(c->out);
    c->in = c->out = NULL;
    c->fd = -1;
    return -1;
}

int bth_conn_init_local(struct bth_conn *c, struct event_base *base, event_callback_fn cb,
                        void *arg)
{
    *c = (struct bth_conn){.fd = -1};
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    if (c->in == NULL || c->out == NULL || event_assign(&c->ev, base, -1, 0, cb, arg) != 0) {
        if (c->in)
            evbuffer_free(c->in);
        if (c->out)
            evbuffer_free(c->out);
        c->in = c->out = NULL;
        return -1;
    }
    return 0;
}

int bth_conn_move(struct bth_conn *dst, struct bth_conn *src, event_callback_fn cb, void *arg)
{
    struct event_base *base = event_get_base(&src->ev);
    event_del(&src->ev);
    *dst = *src;
    *src = (struct bth_conn){.fd = -1};
    if (event_assign(&dst->ev, base, dst->fd, EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST,
                     cb, arg) != 0 ||
        event_add(&dst->ev, NULL) != 0)
        return -1;
    return 0;
}

void bth_conn_fini(struct bth_conn *c)
{
    if (c->in == NULL)
        return;
    event_del(&c->ev);
    if (c->ssl != NULL) {
        if (c->error == 0 && !c->eof)
            SSL_shutdown(c->ssl); /* best effort close_notify; the socket closes anyway */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    c->in = c->out = NULL;
}

void bth_conn_set_ssl(struct bth_conn *c, SSL *ssl)
{
    c->ssl = ssl;
}

/* Maps a failed SSL_read/SSL_write. Returns true when the call should simply wait for the
 * next edge (either direction: with one event for both, any edge retries both). */
static bool ssl_would_block(struct bth_conn *c, int rc, bool reading)
{
    switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return true;
    case SSL_ERROR_ZERO_RETURN:
        c->eof = true;
        return false;
    case SSL_ERROR_SYSCALL:
        if (errno == EAGAIN || errno == EINTR)
            return true;
        if (reading && (errno == 0 || rc == 0))
            c->eof = true; /* FIN without close_notify: treated as an end, as browsers do */
        else
            c->error = errno ? errno : EPIPE;
        return false;
    default:
        ERR_clear_error();
        c->error = EPROTO; /* handshake failure, bad record, ... */
        return false;
    }
}

/* TLS reads: SSL_read returns at most one record, so a short read says nothing about the
 * socket; read on until OpenSSL wants more bytes. */
static size_t ssl_read(struct bth_conn *c, size_t limit)
{
    size_t total = 0;
    c->read_pending = false;
    while (!c->eof && c->error == 0) {
        size_t have = evbuffer_get_length(c->in);
        if (have >= limit) {
            c->read_pending = true;
            break;
        }
        if (have == 0) {
            char probe[PROBE_SIZE];
            int n = SSL_read(c->ssl, probe, (int)(limit < sizeof(probe) ? limit : sizeof(probe)));
            if (n > 0) {
                if (evbuffer_add(c->in, probe, (size_t)n) != 0) {
                    c->error = ENOMEM;
                    break;
                }
                total += (size_t)n;
                continue;
            }
            if (ssl_would_block(c, n, true))
                break;
            continue;
        }
        struct evbuffer_iovec vec[1];
        if (evbuffer_reserve_space(c->in, READ_CHUNK, vec, 1) != 1) {
            c->error = ENOMEM;
            break;
        }
        int n = SSL_read(c->ssl, vec[0].iov_base, (int)vec[0].iov_len);
        if (n > 0) {
            vec[0].iov_len = (size_t)n;
            evbuffer_commit_space(c->in, vec, 1);
            total += (size_t)n;
            continue;
        }
        evbuffer_commit_space(c->in, vec, 0);
        if (ssl_would_block(c, n, true))
            break;
    }
    return total;
}

static size_t plain_read(struct bth_conn *c, size_t limit);

static int ssl_flush(struct bth_conn *c)
{
    while (evbuffer_get_length(c->out) > 0) {
        /* One record per SSL_write: gather small chains so a response is one record. */
        size_t len = evbuffer_get_length(c->out);
        if (len > READ_CHUNK)
            len = READ_CHUNK;
        const unsigned char *p = evbuffer_pullup(c->out, (ev_ssize_t)len);
        int n = SSL_write(c->ssl, p, (int)len);
        if (n > 0) {
            evbuffer_drain(c->out, (size_t)n);
            continue;
        }
        if (ssl_would_block(c, n, false)) {
            c->write_blocked = true;
            return 0;
        }
        return -1;
    }
    c->write_blocked = false;
    return 0;
}

size_t bth_conn_read(struct bth_conn *c, size_t limit)
{
    return c->ssl != NULL ? ssl_read(c, limit) : plain_read(c, limit);
}

/* Notes what a recv() that returned <n> <= 0 means: EOF, an error, or nothing for now.
 * Returns true when the call should simply be repeated (EINTR). */
static bool read_again(struct bth_conn *c, ssize_t n)
{
    if (n == 0)
        c->eof = true;
    else if (errno == EINTR)
        return true;
    else if (errno != EAGAIN)
        c->error = errno;
    return false;
}

static size_t plain_read(struct bth_conn *c, size_t limit)
{
    size_t total = 0;
    c->read_pending = false;
    while (!c->eof && c->error == 0) {
        size_t have = evbuffer_get_length(c->in);
        if (have >= limit) {
            c->read_pending = true;
            break;
        }
        size_t want = limit - have < READ_CHUNK ? limit - have : READ_CHUNK;
        if (have == 0) {
            char probe[PROBE_SIZE];
            size_t room = want < sizeof(probe) ? want : sizeof(probe);
            ssize_t n = recv(c->fd, probe, room, 0);
            if (n > 0) {
                if (evbuffer_add(c->in, probe, (size_t)n) != 0) {
                    c->error = ENOMEM;
                    break;
                }
                total += (size_t)n;
                if ((size_t)n < room && !c->rdhup)
                    break; /* drained: the next edge brings more */
                continue;
            }
            if (read_again(c, n))
                continue;
            break;
        }
        struct evbuffer_iovec vec[2];
        int nvec = evbuffer_reserve_space(c->in, (ev_ssize_t)want, vec, 2);
        if (nvec <= 0) {
            c->error = ENOMEM;
            break;
        }
        struct iovec iov[2];
        size_t room = 0;
        for (int i = 0; i < nvec; i++) {
            iov[i].iov_base = vec[i].iov_base;
            iov[i].iov_len = vec[i].iov_len;
            room += vec[i].iov_len;
        }
        ssize_t n =
            nvec == 1 ? recv(c->fd, iov[0].iov_base, iov[0].iov_len, 0) : readv(c->fd, iov, nvec);
        if (n > 0) {
            size_t left = (size_t)n;
            for (int i = 0; i < nvec; i++) {
                size_t take = left < vec[i].iov_len ? left : vec[i].iov_len;
                vec[i].iov_len = take;
                left -= take;
            }
            evbuffer_commit_space(c->in, vec, nvec);
            total += (size_t)n;
            if ((size_t)n < room && !c->rdhup)
                break; /* drained: the next edge brings more */
        } else {
            evbuffer_commit_space(c->in, vec, 0);
            if (read_again(c, n))
                continue;
            break;
        }
    }
    return total;
}

int bth_conn_flush(struct bth_conn *c)
{
    if (c->error != 0)
        return -1;
    if (c->ssl != NULL)
        return ssl_flush(c);
    while (evbuffer_get_length(c->out) > 0) {
        struct evbuffer_iovec vec[FLUSH_IOV];
        int nvec = evbuffer_peek(c->out, -1, NULL, vec, FLUSH_IOV);
        if (nvec <= 0)
            break;
        if (nvec > FLUSH_IOV)
            nvec = FLUSH_IOV;
        size_t want = 0;
        struct iovec iov[FLUSH_IOV];
        for (int i = 0; i < nvec; i++) {
            iov[i].iov_base = vec[i].iov_base;
            iov[i].iov_len = vec[i].iov_len;
            want += vec[i].iov_len;
        }
        /* send() for the common single-buffer case: cheaper in the kernel than writev. */
        ssize_t n = nvec == 1 ? send(c->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                              : writev(c->fd, iov, nvec);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                c->write_blocked = true;
                return 0;
            }
            c->error = errno;
            return -1;
        }
        evbuffer_drain(c->out, (size_t)n);
        if (want == 0)
            break; /* only empty chains left: nothing to send */
        if ((size_t)n < want) {
            /* A short write to a stream socket means its send buffer is full: the EPOLLOUT
             * edge tells us when there is room again. */
            c->write_blocked = true;
            return 0;
        }
    }
    c->write_blocked = false;
    return 0;
}

void bth_conn_shutdown_wr(struct bth_conn *c)
{
    if (!c->shut_wr && c->fd >= 0 && evbuffer_get_length(c->out) == 0) {
        if (c->ssl != NULL)
            SSL_shutdown(c->ssl);
        shutdown(c->fd, SHUT_WR);
        c->shut_wr = true;
    }
}
