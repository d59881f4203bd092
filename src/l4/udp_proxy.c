/* SPDX-License-Identifier: MIT */
/* NLB-mode UDP forwarding. The listener socket is read in batches of up to BATCH datagrams;
 * consecutive datagrams of one flow leave in one sendmmsg on the flow's connected socket,
 * with a PROXY v2 header in front of each when the group asks for it (as NLB does). Replies
 * are read in batches from the flow's socket and sent back from the listener's socket.
 *
 * Read coalescing: at a high datagram rate, waking up per readiness event reads only a few
 * datagrams at a time, and the cost of the wakeup, the epoll round and the send call is paid
 * for every few datagrams (on the target side too: its socket is woken per send). Like a
 * NIC's interrupt moderation, a drain that finds BUSY_MIN or more datagrams switches the
 * listener to polling: the readiness event is parked and a timerfd reads the socket every
 * COALESCE_US; the first tick that finds fewer than BUSY_MIN datagrams switches back. A lone
 * datagram never waits; under load a datagram waits at most COALESCE_US in berth. */
#include "udp_proxy.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "balancer.h"
#include "clock.h"
#include "config.h"
#include "flow_hash.h"
#include "log.h"
#include "mem.h"
#include "proxy_protocol.h"
#include "snapshot.h"
#include "stats.h"
#include "target.h"
#include "worker.h"

#define BATCH       32
#define DGRAM_MAX   65536
#define ROUNDS      8 /* batches per event, then yield */
#define COALESCE_US 100
#define BUSY_MIN    2

struct flow {
    struct bth_udp_listener *u; /* borrowed: owner */
    struct sockaddr_storage client;
    socklen_t client_len;
    struct sockaddr_storage local; /* the address the client dialled (listener or pktinfo) */
    uint64_t hash;
    int fd; /* connected to the target */
    struct event ev;
    struct bth_target *target;    /* one reference; counted in target->outstanding */
    struct bth_snap_group *group; /* borrowed from snap */
    struct bth_stats *stats;      /* borrowed from snap: the listener's counters (a reload
                                   * may move the listener to another index) */
    struct bth_snapshot *snap;    /* one reference */
    uint64_t last_ms;
    struct flow *hnext;   /* hash chain */
    struct bth_list link; /* on the listener's list of all flows */
};

struct bth_udp_listener {
    struct bth_worker *w;           /* borrowed */
    struct bth_worker_listener *wl; /* borrowed */
    struct event ev;                /* readiness of the listener socket */
    int tick_fd;                    /* owned: the coalescing timerfd, -1 when unavailable */
    struct event tick_ev;
    bool polling;          /* coalescing: ev parked, tick_ev reads the socket */
    struct flow **buckets; /* owned */
    size_t mask;
    size_t nflows;
    struct bth_list all; /* every flow, struct flow.link */
    uint64_t last_full_log_ms;
    bool gso_ok;   /* the kernel takes UDP_SEGMENT */
    bool wildcard; /* bound to 0.0.0.0 or [::]: replies must name the dialled address */
    /* batch buffers */
    uint8_t *data; /* owned: BATCH slots of DGRAM_MAX */
    struct mmsghdr in[BATCH], out[BATCH];
    struct iovec in_iov[BATCH], out_iov[BATCH][2];
    struct sockaddr_storage addrs[BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
        struct cmsghdr align;
    } ctl[BATCH];
    uint8_t pp2[BATCH][BTH_PP2_MAX];
};

static void on_flow_readable(evutil_socket_t fd, short what, void *arg);

static const struct bth_snap_listener *snap_listener(const struct bth_udp_listener *u)
{
    return &u->w->snap->listeners[u->wl->index];
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b,
                      socklen_t len)
{
    return memcmp(a, b, len) == 0;
}

static void flow_free(struct flow *f)
{
    struct bth_udp_listener *u = f->u;
    struct flow **p = &u->buckets[f->hash & u->mask];
    for (; *p != NULL; p = &(*p)->hnext) {
        if (*p == f) {
            *p = f->hnext;
            break;
        }
    }
    bth_list_remove(&f->link);
    u->nflows--;
    event_del(&f->ev);
    close(f->fd);
    atomic_fetch_sub_explicit(&f->target->outstanding, 1, memory_order_relaxed);
    bth_target_unref(f->target);
    bth_stats_add(f->stats, u->w->id, BTH_ST_UDP_FLOWS_CLOSED, 1);
    bth_snapshot_unref(f->snap);
    bth_free(f);
}

static struct bth_target *pick_target(struct bth_udp_listener *u, struct bth_snap_group *g,
                                      const struct sockaddr *client, uint64_t h)
{
    if (g->flow != NULL) {
        uint64_t key =
            g->cfg->stickiness == BTH_STICKY_SOURCE_IP ? bth_flow_hash_source(client) : h;
        struct bth_target *t = bth_flow_table_pick(g->flow, g->targets, g->ntargets, key);
        if (t != NULL)
            return t;
    }
    return bth_lb_pick_target(u->w->id, &u->w->rand, g, NULL, 0);
}

/* A datagram that would start a flow is dropped for lack of room: counted, and logged at
 * most every 10 s per listener and worker. */
static void reject_flow(struct bth_udp_listener *u, uint64_t now, const char *why)
{
    const struct bth_snap_listener *l = snap_listener(u);
    bth_stats_add(l->stats, u->w->id, BTH_ST_UDP_FLOWS_REJECTED, 1);
    if (u->last_full_log_ms != 0 && now - u->last_full_log_ms <= 10000)
        return;
    u->last_full_log_ms = now;
    bth_log(BTH_LOG_WARN, "listener %s: %s; new flows are dropped", l->cfg->name, why);
}

/* A new flow for <client>, or NULL (no target, table full, out of descriptors). */
static struct flow *flow_create(struct bth_udp_listener *u, const struct sockaddr_storage *client,
                                socklen_t clen, const struct sockaddr_storage *local, uint64_t h,
                                uint64_t now)
{
    const struct bth_snap_listener *l = snap_listener(u);
    if (u->nflows >= l->udp_max_flows) {
        char why[160];
        snprintf(why, sizeof(why), "UDP flow table full (%u flows%s)", l->udp_max_flows,
                 l->udp_max_flows < l->cfg->udp_max_flows
                     ? ": udp_max_flows, lowered by the open file limit"
                     : ": udp_max_flows");
        reject_flow(u, now, why);
        return NULL;
    }
    const struct bth_snap_action *act = &l->default_action;
    struct bth_snap_group *g = act->nforwards > 0 ? act->forwards[0].group : NULL;
    struct bth_target *t = g ? pick_target(u, g, (const struct sockaddr *)client, h) : NULL;
    if (t == NULL)
        return NULL;
    int fd = socket(t->addr.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        char why[160];
        snprintf(why, sizeof(why), "socket() for a UDP flow failed: %s", strerror(errno));
        reject_flow(u, now, why);
        return NULL;
    }
    int buf = 4 * 1024 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    if (connect(fd, (const struct sockaddr *)&t->addr.ss, t->addr.len) == -1) {
        close(fd);
        return NULL;
    }
    struct flow *f = bth_calloc(1, sizeof(*f));
    if (f == NULL) {
        close(fd);
        return NULL;
    }
    f->u = u;
    memcpy(&f->client, client, clen);
    f->client_len = clen;
    f->local = *local;
    f->hash = h;
    f->fd = fd;
    f->group = g;
    f->stats = l->stats;
    bth_snapshot_ref(u->w->snap);
    f->snap = u->w->snap;
    bth_target_ref(t);
    f->target = t;
    atomic_fetch_add_explicit(&t->outstanding, 1, memory_order_relaxed);
    f->last_ms = now;
    event_assign(&f->ev, u->w->base, fd, EV_READ | EV_PERSIST, on_flow_readable, f);
    event_add(&f->ev, NULL);
    f->hnext = u->buckets[h & u->mask];
    u->buckets[h & u->mask] = f;
    bth_list_push(&u->all, &f->link);
    u->nflows++;
    bth_stats_add(l->stats, u->w->id, BTH_ST_UDP_FLOWS_CREATED, 1);
    return f;
}

static struct flow *flow_lookup(struct bth_udp_listener *u, const struct sockaddr_storage *client,
                                socklen_t clen, uint64_t *h)
{
    *h =
        bth_flow_hash_5tuple((const struct sockaddr *)client,
                             (const struct sockaddr *)&snap_listener(u)->cfg->bind.ss, IPPROTO_UDP);
    for (struct flow *f = u->buckets[*h & u->mask]; f != NULL; f = f->hnext) {
        if (f->hash == *h && f->client_len == clen && same_addr(&f->client, client, clen))
            return f;
    }
    return NULL;
}

/* With UDP GSO (Linux 4.18+), a run of equal-sized datagrams leaves in one sendmsg: the
 * kernel cuts it into datagrams of <size>, which saves a trip through the stack per
 * datagram. Returns true when sent (or when the kernel took the run and dropped it). */
static bool send_run_gso(struct bth_udp_listener *u, struct flow *f, int from, int to)
{
    size_t size = u->in[from].msg_len, total = 0;
    if (to - from < 2 || size == 0 || size > 8192 || !u->gso_ok)
        return false;
    for (int i = from; i < to; i++) {
        size_t len = u->in[i].msg_len;
        if ((i < to - 1 && len != size) || len > size || len == 0)
            return false; /* only the last datagram of a GSO run may be shorter */
        u->out_iov[i - from][0] = (struct iovec){u->in_iov[i].iov_base, len};
        total += len;
    }
    if (total > 65000)
        return false;
    struct iovec iov[BATCH];
    for (int i = from; i < to; i++)
        iov[i - from] = u->out_iov[i - from][0];
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl)); /* the padding after the cmsg goes to the kernel too */
    struct msghdr mh = {.msg_iov = iov,
                        .msg_iovlen = (size_t)(to - from),
                        .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t seg = (uint16_t)size;
    memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
    if (sendmsg(f->fd, &mh, MSG_DONTWAIT) >= 0 || errno == EAGAIN || errno == ENOBUFS)
        return true;
    if (errno == EIO || errno == EINVAL || errno == EOPNOTSUPP)
        u->gso_ok = false; /* no GSO here (or a device without it): batch the plain way */
    return false;
}

/* Sends datagrams [from, to) of the batch, all of flow <f>, in one sendmmsg. */
static void send_run(struct bth_udp_listener *u, struct flow *f, int from, int to)
{
    bool pp2 = f->group->cfg->proxy_protocol_v2;
    if (!pp2 && send_run_gso(u, f, from, to))
        return;
    for (int i = from; i < to; i++) {
        struct mmsghdr *m = &u->out[i - from];
        memset(&m->msg_hdr, 0, sizeof(m->msg_hdr));
        int k = 0;
        if (pp2) {
            size_t n = bth_pp2_encode((const struct sockaddr *)&f->client,
                                      (const struct sockaddr *)&f->local, SOCK_DGRAM, u->pp2[i]);
            u->out_iov[i][k++] = (struct iovec){u->pp2[i], n};
        }
        u->out_iov[i][k++] = (struct iovec){u->in_iov[i].iov_base, u->in[i].msg_len};
        m->msg_hdr.msg_iov = u->out_iov[i];
        m->msg_hdr.msg_iovlen = (size_t)k;
    }
    int n = to - from, off = 0;
    while (off < n) {
        int r = sendmmsg(f->fd, u->out + off, (unsigned)(n - off), MSG_DONTWAIT);
        if (r <= 0)
            break; /* a full socket buffer drops the rest, as the network would */
        off += r;
    }
}

/* The address the client sent to: the listener's own, or for a wildcard listener the one
 * IP_PKTINFO reports, with the listener's port. */
static void dialled_address(const struct bth_udp_listener *u, struct msghdr *mh,
                            struct sockaddr_storage *out)
{
    *out = snap_listener(u)->cfg->bind.ss;
    if (!u->wildcard)
        return;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
            ((struct sockaddr_in *)out)->sin_addr = pi.ipi_addr;
        } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
            ((struct sockaddr_in6 *)out)->sin6_addr = pi.ipi6_addr;
        }
    }
}

/* For a wildcard listener, a reply names its source address explicitly, so the client sees
 * it come from the address it dialled. */
static void set_reply_source(struct bth_udp_listener *u, struct flow *f, struct msghdr *mh, int i)
{
    if (!u->wildcard)
        return;
    mh->msg_control = u->ctl[i].buf;
    struct cmsghdr *cm = (struct cmsghdr *)u->ctl[i].buf;
    if (f->local.ss_family == AF_INET) {
        struct in_pktinfo pi = {0};
        pi.ipi_spec_dst = ((const struct sockaddr_in *)&f->local)->sin_addr;
        cm->cmsg_level = IPPROTO_IP;
        cm->cmsg_type = IP_PKTINFO;
        cm->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
        mh->msg_controllen = CMSG_SPACE(sizeof(pi));
    } else {
        struct in6_pktinfo pi = {0};
        pi.ipi6_addr = ((const struct sockaddr_in6 *)&f->local)->sin6_addr;
        cm->cmsg_level = IPPROTO_IPV6;
        cm->cmsg_type = IPV6_PKTINFO;
        cm->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
        mh->msg_controllen = CMSG_SPACE(sizeof(pi));
    }
}

/* Reads up to ROUNDS batches from the listener and forwards them; returns how many
 * datagrams it read. */
static int drain_listener(struct bth_udp_listener *u, evutil_socket_t fd)
{
    const struct bth_snap_listener *l = snap_listener(u);
    int total = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < BATCH; i++) {
            u->in[i].msg_hdr.msg_name = &u->addrs[i];
            u->in[i].msg_hdr.msg_namelen = sizeof(u->addrs[i]);
            u->in[i].msg_hdr.msg_iov = &u->in_iov[i];
            u->in[i].msg_hdr.msg_iovlen = 1;
            u->in[i].msg_hdr.msg_control = u->wildcard ? u->ctl[i].buf : NULL;
            u->in[i].msg_hdr.msg_controllen = u->wildcard ? sizeof(u->ctl[i].buf) : 0;
        }
        int n = recvmmsg(fd, u->in, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return total;
        total += n;
        uint64_t now = bth_clock_mono_ms(), bytes = 0;
        int start = 0;
        struct flow *run = NULL;
        for (int i = 0; i < n; i++) {
            bytes += u->in[i].msg_len;
            uint64_t h;
            socklen_t clen = u->in[i].msg_hdr.msg_namelen;
            struct flow *f = flow_lookup(u, &u->addrs[i], clen, &h);
            if (f == NULL) {
                struct sockaddr_storage local;
                dialled_address(u, &u->in[i].msg_hdr, &local);
                f = flow_create(u, &u->addrs[i], clen, &local, h, now);
            }
            if (f != run) {
                if (run != NULL)
                    send_run(u, run, start, i);
                run = f;
                start = i;
            }
            if (f != NULL)
                f->last_ms = now;
        }
        if (run != NULL)
            send_run(u, run, start, n);
        bth_stats_add(l->stats, u->w->id, BTH_ST_PROCESSED_BYTES, bytes);
        if (n < BATCH)
            break;
    }
    return total;
}

static void set_polling(struct bth_udp_listener *u, bool on)
{
    long ns = on ? COALESCE_US * 1000L : 0;
    struct itimerspec its = {.it_interval = {0, ns}, .it_value = {0, ns}};
    if (timerfd_settime(u->tick_fd, 0, &its, NULL) == -1)
        return; /* stay as we are: event-driven reading keeps working */
    if (on) {
        event_del(&u->ev);
    } else {
        event_add(&u->ev, NULL);
    }
    u->polling = on;
}

static void on_listener_readable(evutil_socket_t fd, short what, void *arg)
{
    struct bth_udp_listener *u = arg;
    (void)what;
    if (drain_listener(u, fd) >= BUSY_MIN && u->tick_fd != -1)
        set_polling(u, true);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct bth_udp_listener *u = arg;
    uint64_t expirations;
    (void)what;
    if (read(fd, &expirations, sizeof(expirations)) == -1 && errno != EAGAIN)
        return;
    if (!u->polling)
        return; /* a tick that raced the switch back */
    if (drain_listener(u, u->wl->fd) < BUSY_MIN)
        set_polling(u, false);
}

/* Replies from the target: batch them back to the client from the listener's socket. */
static void on_flow_readable(evutil_socket_t fd, short what, void *arg)
{
    struct flow *f = arg;
    struct bth_udp_listener *u = f->u;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < BATCH; i++) {
            memset(&u->in[i].msg_hdr, 0, sizeof(u->in[i].msg_hdr));
            u->in[i].msg_hdr.msg_iov = &u->in_iov[i];
            u->in[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, u->in, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return; /* ICMP errors (ECONNREFUSED) end here too; the flow expires when idle */
        uint64_t bytes = 0;
        for (int i = 0; i < n; i++) {
            struct mmsghdr *m = &u->out[i];
            memset(&m->msg_hdr, 0, sizeof(m->msg_hdr));
            u->out_iov[i][0] = (struct iovec){u->in_iov[i].iov_base, u->in[i].msg_len};
            m->msg_hdr.msg_iov = u->out_iov[i];
            m->msg_hdr.msg_iovlen = 1;
            m->msg_hdr.msg_name = &f->client;
            m->msg_hdr.msg_namelen = f->client_len;
            set_reply_source(u, f, &m->msg_hdr, i);
            bytes += u->in[i].msg_len;
        }
        int off = 0;
        while (off < n) {
            int r = sendmmsg(u->wl->fd, u->out + off, (unsigned)(n - off), MSG_DONTWAIT);
            if (r <= 0)
                break;
            off += r;
        }
        f->last_ms = bth_clock_mono_ms();
        bth_stats_add(snap_listener(u)->stats, u->w->id, BTH_ST_PROCESSED_BYTES, bytes);
        if (n < BATCH)
            return;
    }
}

/* Once a second: expires idle flows and ends flows whose target was removed (with
 * connection termination) or turned unhealthy. */
static void listener_sweep(struct bth_worker_listener *wl, uint64_t now)
{
    struct bth_udp_listener *u = wl->proto;
    uint64_t idle = snap_listener(u)->cfg->idle_timeout_ms;
    struct bth_list *it, *tmp;
    bth_list_foreach_safe(it, tmp, &u->all)
    {
        struct flow *f = bth_list_entry(it, struct flow, link);
        const struct bth_cfg_target_group *gc = f->group->cfg;
        struct bth_target *t = f->target;
        bool unhealthy = atomic_load(&t->state) == BTH_TARGET_UNHEALTHY &&
                         gc->unhealthy_connection_termination &&
                         !bth_lb_group_failing_open(f->group);
        if (now - f->last_ms >= idle || (atomic_load(&t->removed) && gc->connection_termination) ||
            unhealthy)
            flow_free(f);
    }
}

/* Starts serving <wl>'s UDP socket (the socket stays owned by <wl>); 0 or -1 on OOM. */
static int listener_open(struct bth_worker *w, struct bth_worker_listener *wl)
{
    struct bth_udp_listener *u = bth_calloc(1, sizeof(*u));
    if (u == NULL)
        return -1;
    bth_list_init(&u->all);
    u->w = w;
    u->wl = wl;
    size_t want = w->snap->listeners[wl->index].udp_max_flows, nb = 1024;
    while (nb < want && nb < (1u << 20))
        nb <<= 1;
    u->buckets = bth_calloc(nb, sizeof(*u->buckets));
    u->data = bth_malloc((size_t)BATCH * DGRAM_MAX);
    if (u->buckets == NULL || u->data == NULL) {
        bth_free(u->buckets);
        bth_free(u->data);
        bth_free(u);
        return -1;
    }
    u->mask = nb - 1;
    u->gso_ok = true;
    const struct sockaddr_storage *b = &w->snap->listeners[wl->index].cfg->bind.ss;
    int one = 1;
    if (b->ss_family == AF_INET) {
        u->wildcard = ((const struct sockaddr_in *)b)->sin_addr.s_addr == htonl(INADDR_ANY);
        if (u->wildcard)
            setsockopt(wl->fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
    } else {
        u->wildcard = IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)b)->sin6_addr);
        if (u->wildcard)
            setsockopt(wl->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
    }
    for (int i = 0; i < BATCH; i++)
        u->in_iov[i] = (struct iovec){u->data + (size_t)i * DGRAM_MAX, DGRAM_MAX};
    event_assign(&u->ev, w->base, wl->fd, EV_READ | EV_PERSIST, on_listener_readable, u);
    event_add(&u->ev, NULL);
    u->tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (u->tick_fd != -1) {
        event_assign(&u->tick_ev, w->base, u->tick_fd, EV_READ | EV_PERSIST, on_tick, u);
        event_add(&u->tick_ev, NULL);
    }
    wl->proto = u;
    return 0;
}

/* Ends every flow and frees the table. */
static void listener_close(struct bth_worker_listener *wl)
{
    struct bth_udp_listener *u = wl->proto;
    if (u == NULL)
        return;
    event_del(&u->ev);
    if (u->tick_fd != -1) {
        event_del(&u->tick_ev);
        close(u->tick_fd);
    }
    while (!bth_list_empty(&u->all))
        flow_free(bth_list_entry(u->all.next, struct flow, link));
    bth_free(u->buckets);
    bth_free(u->data);
    bth_free(u);
}

static bool is_udp(const struct bth_cfg_listener *l)
{
    return l->protocol == BTH_PROTO_UDP || l->protocol == BTH_PROTO_TCP_UDP;
}

unsigned bth_udp_flow_budget(const struct bth_config *cfg, unsigned nworkers)
{
    unsigned nudp = 0;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        nudp += is_udp(&cfg->listeners[i]);
    struct rlimit rl;
    if (nudp == 0 || nworkers == 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0 ||
        rl.rlim_cur == RLIM_INFINITY)
        return 0;
    unsigned long long per = (unsigned long long)rl.rlim_cur / 2 / nudp / nworkers;
    unsigned cap = per == 0 ? 1 : per > UINT_MAX ? UINT_MAX : (unsigned)per;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct bth_cfg_listener *l = &cfg->listeners[i];
        if (is_udp(l) && l->udp_max_flows > cap)
            bth_log(BTH_LOG_WARN,
                    "listener %s: udp_max_flows %u lowered to %u by the open file limit %llu "
                    "(half of it for UDP flows, shared by %u worker(s) x %u UDP listener(s))",
                    l->name, l->udp_max_flows, cap, (unsigned long long)rl.rlim_cur, nworkers,
                    nudp);
    }
    return cap;
}

const struct bth_listener_ops bth_udp_listener_ops = {
    .name = "UDP",
    .open = listener_open,
    .close = listener_close,
    .sweep = listener_sweep,
};
