/* SPDX-License-Identifier: MIT */
/* NLB-mode TCP forwarding with splice(2).
 *
 * Each direction (client->target, target->client) owns a pipe. A pump moves bytes
 * socket -> pipe -> socket until the source says EAGAIN (edge-triggered: it will tell us
 * again) or the pipe cannot drain into a full destination (the destination's EPOLLOUT edge
 * resumes us). A source EOF becomes shutdown(SHUT_WR) on the destination once the pipe is
 * empty, so half-closed connections work. Both directions finished: the session ends. */
#include "tcp_proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "balancer.h"
#include "conn.h"
#include "config.h"
#include "flow_hash.h"
#include "log.h"
#include "mem.h"
#include "proxy_protocol.h"
#include "snapshot.h"
#include "stats.h"
#include "target.h"
#include "tls.h"
#include "worker.h"

#define PIPE_CHUNK  (512 * 1024)
#define PUMP_ROUNDS 16 /* chunks per direction per event, then yield to other connections */
#define MAX_TRIES   4

struct dir {
    int pipe_r, pipe_w;
    size_t in_pipe; /* bytes spliced into the pipe, not yet out */
    bool src_eof;   /* the source sent FIN and the pipe took everything before it */
    bool dst_shut;  /* FIN passed on */
    uint64_t bytes;
};

enum tcp_state {
    TS_CONNECTING = 0, /* waiting for the target's connect() */
    TS_FORWARDING,     /* splicing both ways */
};

struct bth_tcp_session {
    struct bth_worker *w;                     /* borrowed */
    struct bth_snapshot *snap;                /* one reference */
    struct bth_snap_group *group;             /* borrowed from snap */
    const struct bth_snap_listener *listener; /* borrowed from snap */
    struct bth_target *target;                /* one reference; counted in target->outstanding */
    struct bth_target *tried[MAX_TRIES];
    unsigned ntried;
    int cfd, ufd;
    struct event cev, uev, timer;
    bool uev_added;
    enum tcp_state state;
    struct dir c2u, u2c;
    uint8_t pp2[BTH_PP2_MAX]; /* PROXY v2 header still to send */
    size_t pp2_len, pp2_off;
    struct sockaddr_storage peer, local;
    bool closing;
    /* Buffered mode, when TLS is on either side (splice cannot see through it): bytes go
     * through evbuffers of two bth_conn, with SSL where configured. */
    bool buffered;
    struct bth_conn cc, uc;
    bool uc_ready;
    struct bth_worker_conn wc; /* on the worker's client list */
};

static void on_client_event(evutil_socket_t fd, short what, void *arg);
static void session_sweep(struct bth_worker_conn *c, uint64_t now_ms);
static void session_abort(struct bth_worker_conn *c);
/* No stop: a TCP connection carries no request boundary to stop at, so it runs on until it
 * ends or the shutdown deadline cuts it. */
static const struct bth_conn_ops session_conn_ops = {.abort = session_abort,
                                                     .sweep = session_sweep};
static void on_target_event(evutil_socket_t fd, short what, void *arg);

static void close_pipe(struct dir *d)
{
    if (d->pipe_r >= 0)
        close(d->pipe_r);
    if (d->pipe_w >= 0)
        close(d->pipe_w);
    d->pipe_r = d->pipe_w = -1;
}

/* Frees the session. <reset>: abort both sockets with RST (SO_LINGER 0), as NLB does for a
 * target that turned unhealthy. Callers: every path that ends a session. */
static void session_end(struct bth_tcp_session *s, bool reset)
{
    struct linger lg = {1, 0};
    event_del(&s->timer);
    if (s->buffered) {
        if (reset)
            setsockopt(s->cc.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        bth_conn_fini(&s->cc);
        if (s->uc_ready) {
            if (reset)
                setsockopt(s->uc.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            bth_conn_fini(&s->uc);
        } else if (s->ufd >= 0) {
            close(s->ufd);
        }
        goto release;
    }
    event_del(&s->cev);
    if (s->uev_added)
        event_del(&s->uev);
    if (reset)
        setsockopt(s->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(s->cfd);
    if (s->ufd >= 0) {
        if (reset)
            setsockopt(s->ufd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(s->ufd);
    }
release:
    close_pipe(&s->c2u);
    close_pipe(&s->u2c);
    bth_stats_add(s->listener->stats, s->w->id, BTH_ST_PROCESSED_BYTES,
                  s->c2u.bytes + s->u2c.bytes);
    bth_worker_conn_closed(s->listener->stats);
    if (s->target != NULL) {
        atomic_fetch_sub_explicit(&s->target->outstanding, 1, memory_order_relaxed);
        bth_target_unref(s->target);
    }
    bth_worker_untrack(s->w, &s->wc);
    bth_snapshot_unref(s->snap);
    bth_free(s);
}

static void arm_idle(struct bth_tcp_session *s)
{
    event_add(&s->timer, bth_worker_timeout(s->w, s->listener->cfg->idle_timeout_ms));
}

/* Moves bytes <src> -> pipe -> <dst>. Returns 0 to go on, -1 on a hard error, 1 when this
 * direction yielded with work left (the caller re-activates the session). */
static int pump(struct dir *d, int src, int dst)
{
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        while (d->in_pipe > 0) {
            ssize_t n =
                splice(d->pipe_r, NULL, dst, NULL, d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                d->in_pipe -= (size_t)n;
                d->bytes += (uint64_t)n;
                continue;
            }
            if (n < 0 && errno == EAGAIN)
                return 0; /* destination full: its EPOLLOUT edge resumes us */
            if (n < 0 && errno == EINTR)
                continue;
            return -1;
        }
        if (d->src_eof) {
            if (!d->dst_shut) {
                shutdown(dst, SHUT_WR);
                d->dst_shut = true;
            }
            return 0;
        }
        ssize_t n =
            splice(src, NULL, d->pipe_w, NULL, PIPE_CHUNK, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d->in_pipe += (size_t)n;
            continue;
        }
        if (n == 0) {
            d->src_eof = true;
            continue;
        }
        if (errno == EAGAIN)
            return 0; /* drained (or pipe full, which the drain loop above resolves) */
        if (errno == EINTR)
            continue;
        return -1;
    }
    return 1;
}

static bool finished(const struct bth_tcp_session *s)
{
    return s->c2u.dst_shut && s->u2c.dst_shut;
}

/* Runs both directions; ends the session when both are done or one broke. */
static void forward(struct bth_tcp_session *s)
{
    if (s->pp2_off < s->pp2_len) {
        ssize_t n = send(s->ufd, s->pp2 + s->pp2_off, s->pp2_len - s->pp2_off, MSG_NOSIGNAL);
        if (n > 0)
            s->pp2_off += (size_t)n;
        else if (n < 0 && errno != EAGAIN) {
            session_end(s, true);
            return;
        }
        if (s->pp2_off < s->pp2_len)
            return; /* the header goes first; EPOLLOUT resumes us */
    }
    int a = pump(&s->c2u, s->cfd, s->ufd);
    int b = a < 0 ? 0 : pump(&s->u2c, s->ufd, s->cfd);
    if (a < 0 || b < 0) {
        session_end(s, true); /* a reset on one side is passed on as a reset */
        return;
    }
    if (finished(s)) {
        session_end(s, false);
        return;
    }
    if (a > 0 || b > 0)
        event_active(&s->cev, EV_READ, 1);
    arm_idle(s);
}

#define BUF_HWM (256 * 1024)

/* Moves what <from> has read to <to>'s output; reads only while <to> can take more. */
static void shovel(struct bth_conn *from, struct bth_conn *to, uint64_t *count)
{
    if (evbuffer_get_length(to->out) < BUF_HWM && !from->eof)
        bth_conn_read(from, BUF_HWM);
    size_t n = evbuffer_get_length(from->in);
    if (n > 0) {
        evbuffer_add_buffer(to->out, from->in);
        *count += n;
    }
    bth_conn_flush(to);
    if (from->eof && evbuffer_get_length(to->out) == 0)
        bth_conn_shutdown_wr(to); /* half-close passes through */
}

/* Buffered forwarding: both directions until both ended, or one broke. */
static void forward_buffered(struct bth_tcp_session *s)
{
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        size_t before = evbuffer_get_length(s->cc.out) + evbuffer_get_length(s->uc.out) +
                        s->c2u.bytes + s->u2c.bytes;
        shovel(&s->cc, &s->uc, &s->c2u.bytes);
        shovel(&s->uc, &s->cc, &s->u2c.bytes);
        if (s->cc.error || s->uc.error) {
            session_end(s, true);
            return;
        }
        if (s->cc.eof && s->uc.eof && evbuffer_get_length(s->cc.out) == 0 &&
            evbuffer_get_length(s->uc.out) == 0) {
            session_end(s, false);
            return;
        }
        size_t after = evbuffer_get_length(s->cc.out) + evbuffer_get_length(s->uc.out) +
                       s->c2u.bytes + s->u2c.bytes;
        if (after == before && !s->cc.read_pending && !s->uc.read_pending)
            break; /* nothing moved: wait for the next edge */
    }
    arm_idle(s);
}

static struct bth_target *pick(struct bth_tcp_session *s)
{
    struct bth_snap_group *g = s->group;
    if (s->ntried == 0 && g->flow != NULL) {
        uint64_t h = g->cfg->stickiness == BTH_STICKY_SOURCE_IP
                         ? bth_flow_hash_source((struct sockaddr *)&s->peer)
                         : bth_flow_hash_5tuple((struct sockaddr *)&s->peer,
                                                (struct sockaddr *)&s->local, IPPROTO_TCP);
        struct bth_target *t = bth_flow_table_pick(g->flow, g->targets, g->ntargets, h);
        if (t != NULL)
            return t;
    }
    return bth_lb_pick_target(s->w->id, &s->w->rand, g, s->tried, s->ntried);
}

/* Connects to the next target; ends the session when none is left. Returns 0 when a
 * connect is under way. */
static int connect_next(struct bth_tcp_session *s)
{
    for (;;) {
        if (s->target != NULL) {
            atomic_fetch_sub_explicit(&s->target->outstanding, 1, memory_order_relaxed);
            bth_target_unref(s->target);
            s->target = NULL;
        }
        if (s->uc_ready) {
            bth_conn_fini(&s->uc); /* closes s->ufd */
            s->uc_ready = false;
            s->ufd = -1;
        }
        if (s->ufd >= 0) {
            if (s->uev_added)
                event_del(&s->uev);
            s->uev_added = false;
            close(s->ufd);
            s->ufd = -1;
        }
        struct bth_target *t = s->ntried < MAX_TRIES ? pick(s) : NULL;
        if (t == NULL) {
            session_end(s, true);
            return -1;
        }
        s->tried[s->ntried++] = t;
        bth_target_ref(t);
        s->target = t;
        atomic_fetch_add_explicit(&t->outstanding, 1, memory_order_relaxed);
        s->ufd = socket(t->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s->ufd == -1)
            continue;
        int one = 1;
        setsockopt(s->ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(s->ufd, (const struct sockaddr *)&t->addr.ss, t->addr.len) == -1 &&
            errno != EINPROGRESS) {
            bth_target_note_result(t, true);
            bth_stats_add(s->group->stats, s->w->id, BTH_ST_TARGET_CONN_ERRORS, 1);
            continue;
        }
        if (s->buffered) {
            if (bth_conn_init(&s->uc, s->w->base, s->ufd, on_target_event, s) != 0)
                continue;
            s->uc_ready = true;
            if (s->group->tls != NULL) {
                SSL *ssl =
                    bth_tls_client_new_ssl(s->group->tls, s->ufd, t->pools[s->w->id].tls_session);
                if (ssl != NULL)
                    bth_conn_set_ssl(&s->uc, ssl);
            }
        } else {
            event_assign(&s->uev, s->w->base, s->ufd,
                         EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST, on_target_event, s);
            event_add(&s->uev, NULL);
            s->uev_added = true;
        }
        s->state = TS_CONNECTING;
        event_add(&s->timer, bth_worker_timeout(s->w, 10000)); /* connect deadline */
        return 0;
    }
}

static void connected(struct bth_tcp_session *s)
{
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(s->ufd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
        bth_log(BTH_LOG_INFO, "connect() to %s failed: %s", s->target->addr.text, strerror(err));
        bth_target_note_result(s->target, true);
        bth_stats_add(s->group->stats, s->w->id, BTH_ST_TARGET_CONN_ERRORS, 1);
        connect_next(s); /* nothing was sent yet: another target may take the flow */
        return;
    }
    bth_target_note_result(s->target, false);
    s->state = TS_FORWARDING;
    if (s->group->cfg->proxy_protocol_v2)
        s->pp2_len = bth_pp2_encode((struct sockaddr *)&s->peer, (struct sockaddr *)&s->local,
                                    SOCK_STREAM, s->pp2);
    if (s->buffered) {
        if (s->pp2_len > 0)
            evbuffer_add(s->uc.out, s->pp2, s->pp2_len); /* the header goes first */
        s->pp2_off = s->pp2_len;
        forward_buffered(s);
        return;
    }
    event_add(&s->cev, NULL);
    forward(s);
}

static void on_target_event(evutil_socket_t fd, short what, void *arg)
{
    struct bth_tcp_session *s = arg;
    if (s->buffered)
        bth_conn_note_event(&s->uc, what);
    if (s->state == TS_CONNECTING)
        connected(s);
    else if (s->buffered)
        forward_buffered(s);
    else
        forward(s);
}

static void on_client_event(evutil_socket_t fd, short what, void *arg)
{
    struct bth_tcp_session *s = arg;
    if (s->buffered)
        bth_conn_note_event(&s->cc, what);
    if (s->state != TS_FORWARDING)
        return;
    if (s->buffered)
        forward_buffered(s);
    else
        forward(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct bth_tcp_session *s = arg;
    if (s->state == TS_CONNECTING) {
        bth_log(BTH_LOG_INFO, "connect() to %s timed out", s->target->addr.text);
        bth_target_note_result(s->target, true);
        connect_next(s);
        return;
    }
    session_end(s, false); /* idle timeout */
}

static int open_pipe(struct dir *d)
{
    int p[2];
    d->pipe_r = d->pipe_w = -1;
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) == -1)
        return -1;
    d->pipe_r = p[0];
    d->pipe_w = p[1];
    /* A bigger pipe moves more per splice() pair; the default 64 KiB costs twice the calls
     * at bulk rates. Best effort: the limit is /proc/sys/fs/pipe-max-size. */
    fcntl(d->pipe_w, F_SETPIPE_SZ, PIPE_CHUNK);
    return 0;
}

static void session_start(struct bth_worker *w, struct bth_worker_listener *wl, int fd)
{
    struct bth_tcp_session *s = bth_calloc(1, sizeof(*s));
    socklen_t pl = sizeof(s->peer), ll = sizeof(s->local);
    if (s == NULL || getpeername(fd, (struct sockaddr *)&s->peer, &pl) == -1 ||
        getsockname(fd, (struct sockaddr *)&s->local, &ll) == -1 || open_pipe(&s->c2u) != 0 ||
        open_pipe(&s->u2c) != 0) {
        if (s != NULL) {
            close_pipe(&s->c2u);
            close_pipe(&s->u2c);
        }
        bth_free(s);
        close(fd);
        bth_worker_conn_closed(w->snap->listeners[wl->index].stats);
        return;
    }
    s->w = w;
    s->cfd = fd;
    s->ufd = -1;
    bth_snapshot_ref(w->snap);
    s->snap = w->snap;
    s->listener = &s->snap->listeners[wl->index];
    bth_worker_track(w, &s->wc, &session_conn_ops, true);
    bth_stats_add(s->listener->stats, w->id, BTH_ST_NEW_CONNECTIONS, 1);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    evtimer_assign(&s->timer, w->base, on_timer, s);
    const struct bth_snap_action *fa = &s->listener->default_action;
    struct bth_snap_group *fg = fa->nforwards > 0 ? fa->forwards[0].group : NULL;
    s->buffered = s->listener->tls != NULL || (fg != NULL && fg->tls != NULL);
    if (s->buffered) {
        /* TLS on one side or both: buffered copying. The client's events arrive through the
         * conn (registered now, but nothing moves until the target is connected). */
        close_pipe(&s->c2u);
        close_pipe(&s->u2c);
        if (bth_conn_init(&s->cc, w->base, fd, on_client_event, s) != 0) {
            close(fd);
            s->cc.fd = -1;
            s->buffered = false; /* nothing to free but the session */
            s->cfd = -1;
            bth_worker_untrack(w, &s->wc);
            bth_worker_conn_closed(s->listener->stats);
            bth_snapshot_unref(s->snap);
            bth_free(s);
            return;
        }
        if (s->listener->tls != NULL) {
            SSL *ssl = bth_tls_server_new_ssl(s->listener->tls, fd);
            if (ssl != NULL)
                bth_conn_set_ssl(&s->cc, ssl);
        }
    } else {
        event_assign(&s->cev, w->base, fd, EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST,
                     on_client_event, s);
    }
    const struct bth_snap_action *act = &s->listener->default_action;
    s->group = act->nforwards > 0 ? act->forwards[0].group : NULL;
    if (s->group == NULL) {
        session_end(s, true);
        return;
    }
    bth_stats_add(s->listener->stats, w->id, BTH_ST_REQUESTS, 1);
    connect_next(s);
}

/* Once a second: ends the connections whose target was deregistered (after its delay) or
 * turned unhealthy, as NLB does when the group asks for it. */
static void session_sweep(struct bth_worker_conn *c, uint64_t now_ms)
{
    struct bth_tcp_session *s = bth_list_entry(c, struct bth_tcp_session, wc);
    struct bth_target *t = s->target;
    if (t == NULL || s->state != TS_FORWARDING)
        return;
    const struct bth_cfg_target_group *gc = s->group->cfg;
    if (atomic_load(&t->removed) && gc->connection_termination) {
        session_end(s, false); /* the deregistration delay is over */
        return;
    }
    if (atomic_load(&t->state) == BTH_TARGET_UNHEALTHY && gc->unhealthy_connection_termination &&
        !bth_lb_group_failing_open(s->group))
        session_end(s, true); /* as NLB: connections to an unhealthy target are reset */
}

static void session_abort(struct bth_worker_conn *c)
{
    session_end(bth_list_entry(c, struct bth_tcp_session, wc), false);
}

const struct bth_listener_ops bth_tcp_listener_ops = {
    .name = "TCP",
    .accept = session_start,
};
