/* SPDX-License-Identifier: MIT */
/* Worker threads: event loop, accept, the message queue from the main thread, and the
 * graceful stop (stop accepting, let sessions finish, exit at the deadline). */
#include "worker.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"
#include "log.h"
#include "mem.h"
#include "snapshot.h"
#include "stats.h"

#define ACCEPT_BATCH  64
#define ALOG_FLUSH_MS 200
/* A pause after accept() found no descriptor: long enough not to spin, short enough that
 * a client waiting in the backlog hardly notices (nginx waits 500 ms, HAProxy 100 ms). */
#define ACCEPT_PAUSE_MS 100
#define SHORTAGE_LOG_MS 10000 /* at most one warning per worker this often */

const struct timeval *bth_worker_timeout(struct bth_worker *w, uint64_t ms)
{
    for (unsigned i = 0; i < w->ntimeouts; i++) {
        if (w->timeouts[i].ms == ms)
            return w->timeouts[i].tv;
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    if (w->ntimeouts < sizeof(w->timeouts) / sizeof(w->timeouts[0])) {
        const struct timeval *c = event_base_init_common_timeout(w->base, &tv);
        if (c != NULL) {
            w->timeouts[w->ntimeouts].ms = ms;
            w->timeouts[w->ntimeouts].tv = c;
            w->ntimeouts++;
            return c;
        }
    }
    /* Rare durations: a thread-local slot is enough because event_add copies it. */
    static _Thread_local struct timeval spare;
    spare = tv;
    return &spare;
}

atomic_long bth_active_connections;

/* max_connections, per listener and per process, as ELB's RejectedConnectionCount: a
 * connection over the limit is closed at once. Returns true when <wl> may take one more and
 * counts it. */
static bool admit(struct bth_worker *w, struct bth_worker_listener *wl)
{
    const struct bth_snap_listener *l = &w->snap->listeners[wl->index];
    unsigned lmax = l->cfg->max_connections;
    unsigned pmax = w->snap->config->cfg->max_connections;
    long la = atomic_fetch_add_explicit(&l->stats->active, 1, memory_order_relaxed);
    long pa = atomic_fetch_add_explicit(&bth_active_connections, 1, memory_order_relaxed);
    if ((lmax == 0 || la < (long)lmax) && (pmax == 0 || pa < (long)pmax))
        return true;
    atomic_fetch_sub_explicit(&l->stats->active, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&bth_active_connections, 1, memory_order_relaxed);
    BTH_STAT_ADD(w->counters.rejected_connections, 1);
    bth_stats_add(l->stats, w->id, BTH_ST_REJECTED_CONNECTIONS, 1);
    return false;
}

void bth_worker_conn_closed(struct bth_stats *listener_stats)
{
    atomic_fetch_sub_explicit(&listener_stats->active, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&bth_active_connections, 1, memory_order_relaxed);
}

void bth_worker_track(struct bth_worker *w, struct bth_worker_conn *c,
                      const struct bth_conn_ops *ops, bool client)
{
    c->ops = ops;
    c->client = client;
    bth_list_push(!client ? &w->targets : ops->sweep != NULL ? &w->swept : &w->clients, &c->link);
    if (client) {
        w->nclients++;
        BTH_STAT_ADD(w->counters.active_connections, 1);
    }
}

static void check_stopped(struct bth_worker *w);

void bth_worker_untrack(struct bth_worker *w, struct bth_worker_conn *c)
{
    bth_list_remove(&c->link);
    if (c->client) {
        w->nclients--;
        BTH_STAT_ADD(w->counters.active_connections, -1);
        if (w->stopping && w->nclients == 0)
            check_stopped(w);
    }
}

unsigned long bth_worker_fd_reserve(unsigned long limit)
{
    unsigned long r = limit / 16;
    return r < 16 ? 16 : r > 1024 ? 1024 : r;
}

/* Sets w->fd_ceiling, the first descriptor number a client may not get: the open file
 * limit less the reserve. berth raised the soft limit to the hard one before the workers
 * start; a limit changed later from outside (prlimit) is not followed. */
static void set_fd_ceiling(struct bth_worker *w)
{
    struct rlimit rl;
    w->fd_ceiling = INT_MAX;
    w->fd_limit = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > INT_MAX)
        return;
    unsigned long limit = (unsigned long)rl.rlim_cur, reserve = bth_worker_fd_reserve(limit);
    w->fd_limit = limit;
    w->fd_ceiling = limit > reserve ? (int)(limit - reserve) : 0;
}

/* Parks or unparks the stream listeners' events (UDP listeners read with their own). */
static void set_accepting(struct bth_worker *w, bool on)
{
    for (size_t i = 0; i < w->nlisteners; i++) {
        struct bth_worker_listener *wl = w->listeners[i];
        if (wl->ops->accept == NULL || wl->fd < 0)
            continue;
        if (on)
            event_add(&wl->ev, NULL);
        else
            event_del(&wl->ev);
    }
    w->accept_paused = !on;
}

static void on_accept_timer(evutil_socket_t fd, short what, void *arg)
{
    struct bth_worker *w = arg;
    if (!w->stopping)
        set_accepting(w, true); /* a connection still waiting fires the listener at once */
}

/* accept() failed with <err> for lack of descriptors or memory: pause, and count and log
 * the episode once, not every retry. */
static void pause_accepting(struct bth_worker *w, int err)
{
    uint64_t now = bth_clock_mono_ms();
    if (w->shortage_since_ms == 0) {
        w->shortage_since_ms = now;
        BTH_STAT_ADD(w->counters.accept_pauses, 1);
        w->shortage_logged = w->shortage_log_ms == 0 || now - w->shortage_log_ms >= SHORTAGE_LOG_MS;
        if (w->shortage_logged) {
            w->shortage_log_ms = now;
            bth_log(BTH_LOG_WARN,
                    "worker %u: accept() failed: %s; not accepting for %dms at a time until it "
                    "succeeds",
                    w->id, strerror(err), ACCEPT_PAUSE_MS);
        }
    }
    if (!w->accept_paused) {
        set_accepting(w, false);
        struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
        evtimer_add(&w->accept_timer, &tv);
    }
}

/* An accept() succeeded: the shortage episode, if any, is over. */
static void end_shortage(struct bth_worker *w)
{
    if (w->shortage_logged)
        bth_log(BTH_LOG_NOTICE, "worker %u: accept() succeeds again, %llums after it first failed",
                w->id, (unsigned long long)(bth_clock_mono_ms() - w->shortage_since_ms));
    w->shortage_since_ms = 0;
    w->shortage_logged = false;
}

/* <cfd> lies in the reserve: the client is closed at once, counted like a max_connections
 * rejection (ELB's RejectedConnectionCount), and logged at most once per 10 s. */
static void reject_in_reserve(struct bth_worker *w, struct bth_worker_listener *wl, int cfd)
{
    close(cfd);
    BTH_STAT_ADD(w->counters.rejected_connections, 1);
    bth_stats_add(w->snap->listeners[wl->index].stats, w->id, BTH_ST_REJECTED_CONNECTIONS, 1);
    uint64_t now = bth_clock_mono_ms();
    if (w->reserve_log_ms == 0 || now - w->reserve_log_ms >= SHORTAGE_LOG_MS) {
        w->reserve_log_ms = now;
        bth_log(BTH_LOG_WARN,
                "worker %u: near the open file limit (%lu): new connections are closed at "
                "once; the last %lu descriptors are kept for target connections, health "
                "checks and the control socket",
                w->id, w->fd_limit, w->fd_limit - (unsigned long)w->fd_ceiling);
    }
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
    struct bth_worker_listener *wl = arg;
    struct bth_worker *w = wl->w;
    for (int i = 0; i < ACCEPT_BATCH && !w->stopping; i++) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd == -1) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting(w, errno);
            return;
        }
        if (w->shortage_since_ms != 0)
            end_shortage(w);
        if (cfd >= w->fd_ceiling) {
            reject_in_reserve(w, wl, cfd);
            continue;
        }
        if (!admit(w, wl)) {
            close(cfd);
            continue;
        }
        wl->ops->accept(w, wl, cfd);
    }
}

static void on_sweep_timer(evutil_socket_t fd, short what, void *arg)
{
    struct bth_worker *w = arg;
    uint64_t now = bth_clock_mono_ms();
    struct bth_list *it, *tmp;
    bth_list_foreach_safe(it, tmp, &w->swept)
    {
        struct bth_worker_conn *c = bth_list_entry(it, struct bth_worker_conn, link);
        c->ops->sweep(c, now); /* may free c */
    }
    for (size_t i = 0; i < w->nlisteners; i++) {
        struct bth_worker_listener *wl = w->listeners[i];
        if (wl->ops->sweep != NULL && wl->fd >= 0)
            wl->ops->sweep(wl, now);
    }
}

static void adopt_snapshot(struct bth_worker *w, struct bth_snapshot *snap)
{
    struct bth_snapshot *old = w->snap;
    w->snap = snap;
    atomic_store_explicit(&w->applied_generation, snap->generation, memory_order_release);
    bth_snapshot_unref(old);
}

/* Stops accepting on <wl> and closes its socket (UDP: its flows end too). Idempotent. */
static void listener_close(struct bth_worker_listener *wl)
{
    if (wl->ops->accept == NULL && wl->proto != NULL) {
        wl->ops->close(wl); /* ends its flows; the socket stays ours */
        wl->proto = NULL;
    } else if (wl->ops->accept != NULL && wl->fd >= 0) {
        event_del(&wl->ev);
    }
    if (wl->fd >= 0) {
        close(wl->fd);
        wl->fd = -1;
    }
}

static void stop_listeners(struct bth_worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        listener_close(w->listeners[i]);
}

/* A listener object for <spec>, serving at once; NULL when out of memory (fd closed). */
static struct bth_worker_listener *listener_open(struct bth_worker *w,
                                                 const struct bth_listen_spec *spec)
{
    struct bth_worker_listener *wl = bth_calloc(1, sizeof(*wl));
    if (wl == NULL) {
        close(spec->fd);
        return NULL;
    }
    wl->w = w;
    wl->fd = spec->fd;
    wl->ops = spec->ops;
    wl->index = spec->index;
    if (wl->ops->accept == NULL) {
        if (wl->ops->open(w, wl) != 0) {
            close(wl->fd);
            bth_free(wl);
            return NULL;
        }
        return wl;
    }
    event_assign(&wl->ev, w->base, wl->fd, EV_READ | EV_PERSIST, on_accept, wl);
    event_add(&wl->ev, NULL);
    return wl;
}

/* Reload with listener changes: kept sockets stay open (no connection refused), new ones
 * start, removed ones stop accepting while their connections finish on the old snapshot.
 * Listener objects are never freed before the worker exits, since sessions point at them. */
static void adopt_listeners(struct bth_worker *w, struct bth_listen_spec *specs, size_t n,
                            struct bth_snapshot *snap)
{
    struct bth_worker_listener **next = bth_calloc(n ? n : 1, sizeof(*next));
    if (next == NULL) {
        for (size_t i = 0; i < n; i++) {
            if (specs[i].fd >= 0)
                close(specs[i].fd);
        }
        bth_snapshot_unref(snap); /* keep serving the old set */
        return;
    }
    bool *kept = bth_calloc(w->nlisteners ? w->nlisteners : 1, sizeof(*kept));
    size_t m = 0;
    /* A new listener reads its settings from the snapshot it comes with, by its index. */
    adopt_snapshot(w, snap);
    for (size_t i = 0; i < n; i++) {
        struct bth_worker_listener *wl = NULL;
        if (specs[i].fd < 0) {
            for (size_t j = 0; j < w->nlisteners && wl == NULL; j++) {
                struct bth_worker_listener *c = w->listeners[j];
                if (!(kept && kept[j]) && c->index == specs[i].old_index &&
                    c->ops == specs[i].ops) {
                    wl = c;
                    if (kept)
                        kept[j] = true;
                }
            }
        } else {
            wl = listener_open(w, &specs[i]);
        }
        if (wl != NULL) {
            wl->index = specs[i].index;
            next[m++] = wl;
        }
    }
    for (size_t j = 0; j < w->nlisteners; j++) {
        if (kept == NULL || !kept[j]) {
            struct bth_worker_listener *wl = w->listeners[j];
            listener_close(wl);
            wl->retired = true;
            wl->next_retired = w->retired;
            w->retired = wl;
        }
    }
    bth_free(kept);
    bth_free(w->listeners);
    w->listeners = next;
    w->nlisteners = m;
}

static void check_stopped(struct bth_worker *w)
{
    if (w->stopping && w->nclients == 0)
        event_base_loopbreak(w->base);
}

/* Asks every connection on <list> to close once idle (<abort>: at once). */
static void close_list(struct bth_list *list, bool abort)
{
    struct bth_list *it, *tmp;
    bth_list_foreach_safe(it, tmp, list)
    {
        struct bth_worker_conn *c = bth_list_entry(it, struct bth_worker_conn, link);
        if (abort)
            c->ops->abort(c);
        else if (c->ops->stop != NULL)
            c->ops->stop(c); /* may free c */
    }
}

static void close_clients(struct bth_worker *w, bool abort)
{
    close_list(&w->clients, abort);
    close_list(&w->swept, abort);
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
    struct bth_worker *w = arg;
    if (bth_clock_mono_ms() >= w->stop_deadline_ms) {
        event_base_loopbreak(w->base);
        return;
    }
    /* Idle keep-alive connections close as soon as they are idle. */
    close_clients(w, false);
    check_stopped(w);
}

static void begin_stop(struct bth_worker *w, uint64_t grace_ms)
{
    if (w->stopping)
        return;
    w->stopping = true;
    w->stop_deadline_ms = bth_clock_mono_ms() + grace_ms;
    evtimer_del(&w->accept_timer);
    stop_listeners(w);
    event_assign(&w->stop_timer, w->base, -1, EV_PERSIST, on_stop_timer, w);
    struct timeval tv = {0, 100 * 1000};
    event_add(&w->stop_timer, &tv);
    on_stop_timer(-1, 0, w);
}

static void on_messages(evutil_socket_t fd, short what, void *arg)
{
    struct bth_worker *w = arg;
    uint64_t v;
    ssize_t r = read(w->mq_fd, &v, sizeof(v));
    (void)r;
    pthread_mutex_lock(&w->mq_lock);
    struct bth_msg *m = w->mq_head;
    w->mq_head = w->mq_tail = NULL;
    pthread_mutex_unlock(&w->mq_lock);
    while (m != NULL) {
        struct bth_msg *next = m->next;
        switch (m->type) {
        case BTH_MSG_SNAPSHOT:
            adopt_snapshot(w, m->snapshot);
            break;
        case BTH_MSG_STOP:
            begin_stop(w, (uint64_t)(uintptr_t)m->snapshot);
            break;
        case BTH_MSG_LISTENERS:
            if (w->stopping) {
                for (size_t i = 0; i < m->nspecs; i++) {
                    if (m->specs[i].fd >= 0)
                        close(m->specs[i].fd);
                }
                bth_snapshot_unref(m->snapshot);
            } else {
                adopt_listeners(w, m->specs, m->nspecs, m->snapshot);
            }
            bth_free(m->specs);
            break;
        }
        bth_free(m);
        m = next;
    }
}

static void on_flush_timer(evutil_socket_t fd, short what, void *arg)
{
    struct bth_worker *w = arg;
    bth_accesslog_flush(&w->alog);
}

struct bth_worker *bth_worker_create(unsigned id, const struct bth_listen_spec *specs,
                                     size_t nlisteners, struct bth_snapshot *snap,
                                     struct bth_accesslog *alog, void (*exited)(void *arg),
                                     void *exited_arg)
{
    struct bth_worker *w = bth_calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->id = id;
    w->exited = exited;
    w->exited_arg = exited_arg;
    bth_list_init(&w->clients);
    bth_list_init(&w->swept);
    bth_list_init(&w->targets);
    w->mq_fd = -1;
    pthread_mutex_init(&w->mq_lock, NULL);
    bth_rand_seed(&w->rand, (uint64_t)(uintptr_t)w);
    struct event_config *ec = event_config_new();
    if (ec == NULL)
        goto fail;
    event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (w->base == NULL)
        goto fail;
    w->mq_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->mq_fd == -1)
        goto fail;
    event_assign(&w->mq_ev, w->base, w->mq_fd, EV_READ | EV_PERSIST, on_messages, w);
    event_add(&w->mq_ev, NULL);
    w->listeners = bth_calloc(nlisteners ? nlisteners : 1, sizeof(*w->listeners));
    if (w->listeners == NULL)
        goto fail;
    w->snap = snap;
    atomic_init(&w->applied_generation, snap->generation);
    for (size_t i = 0; i < nlisteners; i++) {
        struct bth_worker_listener *wl = listener_open(w, &specs[i]);
        if (wl == NULL) {
            for (size_t j = i + 1; j < nlisteners; j++)
                close(specs[j].fd);
            goto fail_listeners;
        }
        w->listeners[w->nlisteners++] = wl;
    }
    set_fd_ceiling(w);
    evtimer_assign(&w->accept_timer, w->base, on_accept_timer, w);
    event_assign(&w->sweep_timer, w->base, -1, EV_PERSIST, on_sweep_timer, w);
    struct timeval sweep = {1, 0};
    event_add(&w->sweep_timer, &sweep);
    bth_accesslog_buf_init(&w->alog, alog);
    event_assign(&w->flush_timer, w->base, -1, EV_PERSIST, on_flush_timer, w);
    struct timeval tv = {0, ALOG_FLUSH_MS * 1000};
    event_add(&w->flush_timer, &tv);
    return w;
fail_listeners:
    for (size_t i = 0; i < w->nlisteners; i++) {
        listener_close(w->listeners[i]);
        bth_free(w->listeners[i]);
    }
    bth_free(w->listeners);
    w->snap = NULL; /* the caller keeps its reference on failure */
fail:
    if (w->mq_fd >= 0)
        close(w->mq_fd);
    if (w->base)
        event_base_free(w->base);
    bth_free(w);
    return NULL;
}

static void *worker_main(void *arg)
{
    struct bth_worker *w = arg;
    event_base_dispatch(w->base);
    /* Past the deadline: whatever is left is cut, clients first (they hand their target
     * connections back), then the target connections left in pools. */
    close_clients(w, true);
    close_list(&w->targets, true);
    stop_listeners(w); /* UDP flows end with their listener */
    bth_accesslog_flush(&w->alog);
    if (w->exited != NULL)
        w->exited(w->exited_arg);
    return NULL;
}

int bth_worker_start(struct bth_worker *w)
{
    w->started = pthread_create(&w->thread, NULL, worker_main, w) == 0;
    return w->started ? 0 : -1;
}

void bth_worker_join_destroy(struct bth_worker *w)
{
    if (w->started)
        pthread_join(w->thread, NULL);
    stop_listeners(w);
    event_del(&w->mq_ev);
    event_del(&w->flush_timer);
    event_del(&w->sweep_timer);
    event_del(&w->accept_timer);
    if (w->stopping)
        event_del(&w->stop_timer);
    close(w->mq_fd);
    for (struct bth_msg *m = w->mq_head, *n; m != NULL; m = n) {
        n = m->next;
        if (m->type == BTH_MSG_SNAPSHOT || m->type == BTH_MSG_LISTENERS)
            bth_snapshot_unref(m->snapshot);
        for (size_t i = 0; i < m->nspecs; i++) {
            if (m->specs[i].fd >= 0)
                close(m->specs[i].fd);
        }
        bth_free(m->specs);
        bth_free(m);
    }
    bth_accesslog_buf_fini(&w->alog);
    bth_snapshot_unref(w->snap);
    for (size_t i = 0; i < w->nlisteners; i++)
        bth_free(w->listeners[i]);
    bth_free(w->listeners);
    while (w->retired != NULL) {
        struct bth_worker_listener *wl = w->retired;
        w->retired = wl->next_retired;
        bth_free(wl);
    }
    event_base_free(w->base);
    pthread_mutex_destroy(&w->mq_lock);
    bth_free(w);
}

static void enqueue(struct bth_worker *w, struct bth_msg *m)
{
    pthread_mutex_lock(&w->mq_lock);
    if (w->mq_tail)
        w->mq_tail->next = m;
    else
        w->mq_head = m;
    w->mq_tail = m;
    pthread_mutex_unlock(&w->mq_lock);
    uint64_t one = 1;
    ssize_t r = write(w->mq_fd, &one, sizeof(one));
    (void)r;
}

int bth_worker_post_listeners(struct bth_worker *w, struct bth_listen_spec *specs, size_t n,
                              struct bth_snapshot *snap)
{
    struct bth_msg *m = bth_calloc(1, sizeof(*m));
    if (m == NULL)
        return -1;
    m->type = BTH_MSG_LISTENERS;
    m->snapshot = snap;
    m->specs = specs;
    m->nspecs = n;
    enqueue(w, m);
    return 0;
}

int bth_worker_post(struct bth_worker *w, enum bth_msg_type type, struct bth_snapshot *snap,
                    uint64_t arg_ms)
{
    struct bth_msg *m = bth_calloc(1, sizeof(*m));
    if (m == NULL)
        return -1;
    m->type = type;
    m->snapshot = type == BTH_MSG_STOP ? (struct bth_snapshot *)(uintptr_t)arg_ms : snap;
    enqueue(w, m);
    return 0;
}
