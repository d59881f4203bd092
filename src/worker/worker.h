/* SPDX-License-Identifier: MIT */
/* Worker threads. Each worker runs its own event_base (no libevent locking), owns its
 * listening sockets (one SO_REUSEPORT socket per listener), its connections, its pools and
 * its counters. The main thread talks to a worker only through its message queue
 * (bth_worker_post), which is the one lock a worker ever takes, and never per request. */
#ifndef BERTH_WORKER_H
#define BERTH_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "accesslog.h"
#include "list.h"
#include "rand.h"
#include "stats.h"

struct bth_snapshot;
struct bth_worker;
struct bth_worker_listener;

/* What a protocol gives the worker for one listening socket, as nginx's listening socket
 * carries its handler: the worker accepts, admits (max_connections, the fd reserve) and
 * hands over, knowing no protocol. One static table per protocol; the process layer picks
 * it per listener. Worker thread. */
struct bth_listener_ops {
    const char *name; /* for logs: "HTTP", "TCP", "UDP" */
    /* Stream listeners: serves the admitted connection <fd> (ownership passes). When it
     * cannot, it closes <fd> and calls bth_worker_conn_closed. */
    void (*accept)(struct bth_worker *w, struct bth_worker_listener *wl, int fd);
    /* Datagram listeners (accept is NULL): starts serving wl->fd and sets wl->proto.
     * Returns 0 or -1 (out of memory). */
    int (*open)(struct bth_worker *w, struct bth_worker_listener *wl);
    /* Datagram listeners: stops serving and frees wl->proto (its flows end); the worker
     * closes the socket. */
    void (*close)(struct bth_worker_listener *wl);
    /* Once a second while the listener serves (idle flows); may be NULL. */
    void (*sweep)(struct bth_worker_listener *wl, uint64_t now_ms);
};

/* Every connection a worker owns embeds one, so the worker can wait for, stop and cut its
 * connections without knowing their protocol. */
struct bth_worker_conn;

struct bth_conn_ops {
    /* A graceful stop began: close as soon as idle (may free the connection now). NULL:
     * the connection runs until it ends or the deadline cuts it. */
    void (*stop)(struct bth_worker_conn *c);
    /* The stop deadline passed or the worker exits: close and free now. */
    void (*abort)(struct bth_worker_conn *c);
    /* Once a second (targets deregistered or unhealthy); may be NULL. */
    void (*sweep)(struct bth_worker_conn *c, uint64_t now_ms);
};

struct bth_worker_conn {
    struct bth_list link; /* on one of the worker's lists: clients, swept or targets */
    const struct bth_conn_ops *ops;
    bool client; /* a client connection: counted, and a graceful stop waits for it */
};

/* What the main thread hands a worker for one listening socket. */
struct bth_listen_spec {
    int fd; /* ownership passes to the worker; -1: keep an existing socket */
    const struct bth_listener_ops *ops;
    size_t index;     /* index of the listener in the snapshot */
    size_t old_index; /* with fd -1: the kept listener's index in the current snapshot */
};

/* One listening socket of one worker. */
struct bth_worker_listener {
    struct bth_worker *w; /* borrowed: owner */
    int fd;               /* owned */
    const struct bth_listener_ops *ops;
    size_t index; /* index of the listener in the snapshot */
    struct event ev;
    void *proto;  /* owned by ops: a datagram listener's state (its flow table), else NULL */
    bool retired; /* removed by a reload: closed; its sessions keep their snapshot */
    struct bth_worker_listener *next_retired;
};

enum bth_msg_type {
    BTH_MSG_SNAPSHOT = 0, /* adopt <snapshot> (one reference passes to the worker) */
    BTH_MSG_STOP,         /* stop accepting; exit when connections are gone or at deadline */
    BTH_MSG_LISTENERS,    /* a reload changed listeners: adopt <specs> with <snapshot> */
};

struct bth_msg {
    enum bth_msg_type type;
    struct bth_snapshot *snapshot;
    struct bth_listen_spec *specs; /* owned (BTH_MSG_LISTENERS) */
    size_t nspecs;
    struct bth_msg *next;
};

struct bth_worker {
    unsigned id;
    pthread_t thread;
    bool started;                           /* the thread runs (bth_worker_start succeeded) */
    struct event_base *base;                /* owned */
    struct bth_snapshot *snap;              /* one reference held: the current snapshot */
    _Atomic uint64_t applied_generation;    /* snap's generation, for the main thread to
                                             * see when a change is in force */
    struct bth_worker_listener **listeners; /* owned array of owned listeners */
    size_t nlisteners;
    struct bth_worker_listener *retired; /* owned: closed by reloads, freed at exit */

    pthread_mutex_t mq_lock;
    struct bth_msg *mq_head; /* owned; guarded by mq_lock */
    struct bth_msg *mq_tail;
    int mq_fd; /* eventfd that wakes the loop */
    struct event mq_ev;

    struct bth_list clients;  /* struct bth_worker_conn of client connections without sweep */
    struct bth_list swept;    /* ... and those with one: the once-a-second sweep walks only
                               * these, not every idle keep-alive connection */
    struct bth_list targets;  /* struct bth_worker_conn of every connection to a target */
    size_t nclients;          /* on clients and swept */
    struct event sweep_timer; /* once a second: connection and listener sweeps */
    /* Out of descriptors (accept() fails with EMFILE, ENFILE, ENOBUFS or ENOMEM): retrying
     * at once would spin, since the connection stays in the backlog. The stream listeners'
     * events are parked for a moment instead, as nginx and HAProxy do. */
    struct event accept_timer;  /* ends a pause */
    bool accept_paused;         /* the stream listeners' events are parked */
    uint64_t shortage_since_ms; /* first failed accept() of this episode; 0: none */
    uint64_t shortage_log_ms;   /* when the last episode was logged (one per 10 s) */
    bool shortage_logged;       /* this episode was logged: its end is logged too */
    unsigned long fd_limit;     /* RLIMIT_NOFILE when the worker was created; 0: none */
    int fd_ceiling;             /* an accepted descriptor at or above it is closed at once: the
                                 * ones above are left to target connections, health checks
                                 * and the control socket (bth_worker_fd_reserve) */
    uint64_t reserve_log_ms;    /* when a connection closed for the reserve was last logged */
    uint64_t next_conn_id;
    bool stopping;
    uint64_t stop_deadline_ms;
    struct event stop_timer;

    struct bth_rand rand; /* request ids, balancing choices */
    struct {
        uint64_t ms;
        const struct timeval *tv; /* libevent common timeout: O(1) add and delete */
    } timeouts[16];
    unsigned ntimeouts;
    struct event flush_timer; /* access log flush */

    struct bth_counters counters;
    void (*exited)(void *arg); /* see bth_worker_create */
    void *exited_arg;
    struct bth_accesslog_buf alog;
};

/* Creates a worker with <nlisteners> listening sockets (their fds pass to the worker) and a
 * first snapshot reference. <exited>(<exited_arg>) is called on the worker's thread when its
 * loop has ended and every connection is closed. Main thread. NULL on failure. */
struct bth_worker *bth_worker_create(unsigned id, const struct bth_listen_spec *specs,
                                     size_t nlisteners, struct bth_snapshot *snap,
                                     struct bth_accesslog *alog, void (*exited)(void *arg),
                                     void *exited_arg);
int bth_worker_start(struct bth_worker *w);
/* Waits for the thread and frees the worker. Main thread, after BTH_MSG_STOP. */
void bth_worker_join_destroy(struct bth_worker *w);

/* Hands the worker a new listener set together with the snapshot it matches (one
 * reference and <specs> pass to the worker). Main thread. Returns 0 or -1 (OOM: nothing
 * passed). */
int bth_worker_post_listeners(struct bth_worker *w, struct bth_listen_spec *specs, size_t n,
                              struct bth_snapshot *snap);

/* Queues a message for the worker (any thread). Returns 0 or -1 (OOM). */
int bth_worker_post(struct bth_worker *w, enum bth_msg_type type, struct bth_snapshot *snap,
                    uint64_t arg_ms);

/* Client connections open in the whole process (max_connections). */
extern atomic_long bth_active_connections;

/* A client connection admitted on a listener whose counters are <listener_stats> ended. */
void bth_worker_conn_closed(struct bth_stats *listener_stats);

/* Puts <c> on the worker's client or target list with <ops>. Worker thread. */
void bth_worker_track(struct bth_worker *w, struct bth_worker_conn *c,
                      const struct bth_conn_ops *ops, bool client);

/* Takes <c> off its list; a graceful stop may end when the last client goes. Worker thread. */
void bth_worker_untrack(struct bth_worker *w, struct bth_worker_conn *c);

/* How many descriptors at the top of an open file limit of <limit> workers leave alone
 * when they accept: a client needs a second descriptor toward its target, and the main
 * thread needs some for the control socket, health checks, DNS and the state file. 1/16 of
 * the limit, at least 16 and at most 1024. Any thread. */
unsigned long bth_worker_fd_reserve(unsigned long limit);

/* A timeval for event_add() of <ms> milliseconds. Durations used often (the listeners'
 * timeouts) become libevent common timeouts, whose queues make add and delete O(1) instead
 * of a heap operation per request. Worker thread. */
const struct timeval *bth_worker_timeout(struct bth_worker *w, uint64_t ms);

#endif /* BERTH_WORKER_H */
