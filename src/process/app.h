/* SPDX-License-Identifier: MIT */
/* Main thread only. The running process: config, registry, workers, listening sockets, the
 * control server. Owns start-up, snapshot publication and shutdown. */
#ifndef BERTH_APP_H
#define BERTH_APP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accesslog.h"
#include "registry.h"

struct event_base;
struct bth_worker;
struct bth_control;
struct bth_health;
struct bth_discovery;
struct bth_config_ref;

struct bth_app {
    char *config_path;       /* owned; NULL for the embedded default */
    struct event_base *base; /* owned: the main loop */
    struct bth_registry registry;
    struct bth_worker **workers; /* owned */
    unsigned nworkers;
    atomic_uint workers_done;      /* workers whose loop has ended (written by their threads) */
    uint64_t published_generation; /* of the last snapshot handed to the workers */
    struct bth_accesslog accesslog;
    struct bth_control *control;     /* owned */
    struct bth_health *health;       /* owned */
    struct bth_discovery *discovery; /* owned: DNS service discovery */
    struct event *signals[4];        /* owned */
    struct event *shutdown_poll;     /* owned */
    struct event *drain_timer;       /* owned: ends drains that are idle or due */
    struct event *ticket_timer;      /* owned: rotates TLS session ticket keys */
    /* Snapshots whose last reference a worker dropped wait here (a lock-free stack) until
     * the main loop frees them: no request pays for tearing a config generation down. */
    _Atomic(struct bth_snapshot *) reap_head;
    int reap_fd;           /* eventfd: wakes the main loop when reap_head gets one */
    struct event *reap_ev; /* owned */
    pthread_t main_thread;
    uint8_t cookie_key[32];
    bool cookie_key_in_state; /* the key is generated and kept in the state file */
    bool stopping;
    bool pid_file_written; /* ours to remove at exit */
    int exit_code;
};

/* Loads the config, binds every listener and the control socket, starts the workers and
 * logs "ready". Returns 0, or -1 after logging one clear line. */
int bth_app_start(struct bth_app *app, const char *config_path);

/* Runs the main loop until shutdown completes. Returns the exit status. */
int bth_app_run(struct bth_app *app);

/* Builds a snapshot from the registry and hands one reference to each worker. Returns 0
 * or -1 (out of memory; the workers keep the previous snapshot). */
int bth_app_publish(struct bth_app *app);

/* After a registry change: publishes a new snapshot and saves the state file (a failed
 * save is logged). Returns 0, or -1 when the snapshot could not be built (the workers keep
 * the previous one). */
int bth_app_commit(struct bth_app *app);

/* Writes the state file (when one is configured) from the registry as it is now, durably
 * (temporary file, fsync, rename, fsync of the directory). Returns 0 or -errno (logged).
 * The control API calls it before answering, and undoes the change when it fails. */
int bth_app_save_state(struct bth_app *app);

/* bth_app_commit without the save, for a caller that saved first. */
int bth_app_apply(struct bth_app *app);

/* Reloads the config file: the new file is parsed and validated whole (certificates too)
 * before anything changes; on any error the running config stays and <err> holds
 * "FILE:LINE:COL: message" lines. On success groups, rules, actions, timeouts and
 * certificates take effect for new requests and connections, targets keep their live
 * state, and API registrations stay in groups that still exist. Listeners (name, protocol,
 * address) and the worker count must be unchanged: changing them needs a restart.
 * control.listen and control.token_file take effect too: the token file is read again and a
 * changed address bound before anything changes. Returns 0 or -1. */
int bth_app_reload(struct bth_app *app, struct bth_err *err);

/* Starts a graceful stop: workers stop accepting and finish within shutdown_timeout. */
void bth_app_stop(struct bth_app *app);

void bth_app_fini(struct bth_app *app);

#endif /* BERTH_APP_H */
