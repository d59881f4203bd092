/* SPDX-License-Identifier: MIT */
/* Main thread only. The control API (README "Control API"): HTTP/1.1 + JSON on a Unix
 * socket and, with a Bearer token, on control.listen, served by control_http.c on the main
 * event loop, ELBv2 names and errors. */
#ifndef BERTH_CONTROL_H
#define BERTH_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

struct bth_config;
struct bth_control;
struct bth_control_plan;
struct bth_discovery_status;
struct bth_err;
struct bth_registry;
struct evbuffer;
struct event_base;

/* What the control API may ask of the process that runs it, given at start as health and
 * discovery get their callbacks: the control layer knows no app, workers or threads. Each
 * is called on the main thread with <arg>. */
struct bth_control_ops {
    /* Writes the state file from the registry as it is now: 0, or -errno (logged). */
    int (*save_state)(void *arg);
    /* Puts the registry's current state in force (health checks, workers) and returns once
     * the workers use it, so an answer means "in force": 0 or -1. */
    int (*apply)(void *arg);
    /* Reloads the config file, returning once the workers use it: 0, or -1 with
     * "FILE:LINE:COL: message" lines in <err>. */
    int (*reload)(void *arg, struct bth_err *err);
    /* Appends the process's metrics (workers, discovery) in Prometheus text to <out>. */
    void (*metrics)(void *arg, struct evbuffer *out);
    /* The DNS discovery state of group <name>: true with <ds> filled when it has one. */
    bool (*discovery)(void *arg, const char *name, struct bth_discovery_status *ds);
};

struct bth_control_deps {
    struct event_base *base;       /* the main loop */
    struct bth_registry *registry; /* read and changed by register/deregister calls */
    const struct bth_control_ops *ops;
    void *arg;
};

/* Reads the whole token file <file> into <*token> (owned by the caller, freed with
 * bth_control_free_token). Refuses a missing, non-regular, empty, world-readable or
 * over-long (4096 bytes) file, and a token with control characters in it (it could never
 * arrive in a header), writing one line saying why into <why>. The start, a reload and
 * `berth -t` all read it this way. Returns 0 or -1. */
int bth_control_read_token(const char *file, char **token, size_t *token_len, char *why,
                           size_t whysz);
/* Wipes and frees a token; NULL is fine. */
void bth_control_free_token(char *token, size_t len);

/* Before anything else at start: refuses (-1, logged) when <path> is a socket another
 * process answers on (a second berth would take it over) or a file that is not a socket;
 * 0 when it is free or a stale socket left by a crash. */
int bth_control_check_socket(const char *path);

/* Binds <path> (mode 0660; a stale socket file is replaced) on <deps>'s loop, and
 * control.listen when the registry's config has it (its token file read first, so a bad
 * one binds nothing). <deps> is copied. Returns the server, or NULL after logging why. */
struct bth_control *bth_control_start(const struct bth_control_deps *deps, const char *path);
/* Closes the control server; removes the socket file only if it is still the one this
 * berth bound (same device and inode). */
void bth_control_stop(struct bth_control *c);

/* Reload, step 1 of 2: prepares what <cfg> asks of control.listen and token_file. The token
 * file is read again; a new or changed address is bound (not yet accepting). Nothing in
 * force changes. Returns 0 with <*plan> set (the caller hands it to bth_control_apply or
 * bth_control_plan_free), or -1 with a "FILE: message" line added to <err>. */
int bth_control_reconfigure(struct bth_control *c, const struct bth_config *cfg,
                            struct bth_control_plan **plan, struct bth_err *err);

/* Reload, step 2: puts <plan> in force and frees it. Cannot fail. The new token is checked
 * from the next request on; a replaced TCP listener closes with its connections (one carrying
 * this reload still gets its answer). */
void bth_control_apply(struct bth_control *c, struct bth_control_plan *plan);

/* Drops a plan not applied (the reload failed later): a listener it bound is closed. NULL is a
 * no-op. */
void bth_control_plan_free(struct bth_control_plan *plan);

#endif /* BERTH_CONTROL_H */
