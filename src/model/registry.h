/* SPDX-License-Identifier: MIT */
/* Main thread only. The registry of target groups and their targets: static targets from
 * the config file and dynamic ones from the control API. Every change is followed by a new
 * snapshot (bth_registry_build_snapshot) that the caller publishes to the workers. */
#ifndef BERTH_REGISTRY_H
#define BERTH_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "snapshot.h"

struct bth_target;
struct bth_snapshot;
struct bth_config_ref;
struct bth_stats;
struct bth_tls_server;
struct bth_tls_client;

struct bth_reg_group {
    char *name;                             /* owned */
    const struct bth_cfg_target_group *cfg; /* borrowed from the registry's config */
    struct bth_target **targets;            /* owned array, one reference each */
    size_t ntargets;
    size_t cap;
    /* Address -> position in targets, so registering N targets costs O(N) and not a scan
     * each: open addressing, positions + 1 (0 = empty), index_cap slots (a power of two, at
     * least twice ntargets). Built at the first lookup, kept up by appends, dropped (NULL)
     * when targets move. Owned. */
    uint32_t *index;
    size_t index_cap;
    bool compact;               /* drain_tick: targets marked removed are to leave the array */
    struct bth_stats *stats;    /* one reference: counters kept across reloads by name */
    struct bth_tls_client *tls; /* one reference for HTTPS/TLS groups, else NULL */
    bool failing_open;          /* the fail-open state last logged (health.c); kept on reload */
};

/* Called once when a drain ends (the target is gone from its group). */
typedef void (*bth_drain_done_cb)(void *arg);

struct bth_drain_waiter {
    bth_drain_done_cb cb;
    void *arg;
    struct bth_drain_waiter *next;
};

/* A deregistered target finishing its in-flight work. As ELB, it stays in its group's array
 * (state draining, so no new request picks it) until the deregistration delay passes, idle or
 * not; those waiting for it (Wait: true) hear as soon as nothing is in flight. */
struct bth_drain {
    char *group;                      /* owned: group name (group arrays move on reload) */
    struct bth_drain *prev;           /* in the registry's list, so it unlinks in O(1) */
    struct bth_target *target;        /* one reference held */
    uint64_t deadline_ms;             /* monotonic */
    int prev_state;                   /* restored when a re-register cancels the drain */
    struct bth_drain_waiter *waiters; /* owned */
    struct bth_drain *next;
};

struct bth_registry {
    struct bth_config_ref *config; /* one reference held */
    struct bth_reg_group *groups;  /* owned, in config order */
    size_t ngroups;
    struct bth_drain *drains;             /* owned list */
    struct bth_stats **listener_stats;    /* owned array (one reference each), config order */
    struct bth_tls_server **listener_tls; /* owned array (one reference each, NULL for plain
                                           * listeners), config order; set by the app */
    size_t nlistener_tls;                 /* entries in listener_tls */
    size_t nlisteners;
    unsigned nworkers;
    unsigned udp_flow_cap; /* UDP flows per worker and socket the open file limit allows,
                            * 0 = no cap; set by the app at start and reload */
    uint64_t generation;
    bth_snapshot_reap_fn snapshot_reap; /* set by the process: where dead snapshots go */
    void *snapshot_reap_arg;
    uint64_t reloads_ok, reloads_failed; /* main thread: counted for /metrics */
};

void bth_registry_init(struct bth_registry *reg, unsigned nworkers);
void bth_registry_fini(struct bth_registry *reg);

/* Adopts a new config: groups follow the file; static targets come from it, and targets
 * registered through the API stay in groups that still exist. Target objects with the same
 * address are reused, so their live state carries over. Takes a reference to <config>.
 * Returns 0, or -1 when out of memory (the registry is then unchanged). */
int bth_registry_apply_config(struct bth_registry *reg, struct bth_config_ref *config);

struct bth_reg_group *bth_registry_find_group(struct bth_registry *reg, const char *name);

/* The target of <g> with address <addr>, or NULL (a hash lookup). */
struct bth_target *bth_registry_find_target(const struct bth_reg_group *g,
                                            const struct bth_addr *addr);

/* Adds <addr> to <g> unless present (idempotent). Returns 0, or -1 when out of memory. */
int bth_registry_register(struct bth_registry *reg, struct bth_reg_group *g,
                          const struct bth_addr *addr, unsigned weight);

/* Removes <addr> from <g> at once if present; in-flight work keeps its own references.
 * Returns 1 when removed, 0 when it was not there. */
int bth_registry_deregister(struct bth_registry *reg, struct bth_reg_group *g,
                            const struct bth_addr *addr);

/* Starts draining <addr> in <g> for the group's deregistration_delay (a target already
 * draining keeps its deadline). Returns 1 when a drain started or is under way, 0 when the
 * target is not in the group, -1 when out of memory. */
int bth_registry_drain(struct bth_registry *reg, struct bth_reg_group *g,
                       const struct bth_addr *addr, uint64_t now_ms);

/* Calls <cb>(<arg>) when the drain of <addr> in <g> is complete: nothing in flight any more,
 * or its deadline; at once (before returning) when the target is not draining or idle. Returns 0 or
 * -1 (out of memory: <cb> is not called). */
int bth_registry_drain_wait(struct bth_registry *reg, struct bth_reg_group *g,
                            const struct bth_addr *addr, bth_drain_done_cb cb, void *arg);

/* Ends the drains past their deadline (the targets leave their groups, their waiters are
 * called) and answers the waiters of drains with nothing in flight. Returns the number
 * ended (the caller publishes when > 0). */
int bth_registry_drain_tick(struct bth_registry *reg, uint64_t now_ms);

/* The drain of <t>, or NULL (t->drain). */
struct bth_drain *bth_registry_find_drain(struct bth_registry *reg, const struct bth_target *t);

/* Installs the TLS contexts of the current config's listeners (<tls> has <n> entries, one
 * per listener; the registry takes over the references and drops the previous ones). */
void bth_registry_set_listener_tls(struct bth_registry *reg, struct bth_tls_server **tls, size_t n);

/* A new snapshot of the current state, with one reference for the caller; NULL on OOM. */
struct bth_snapshot *bth_registry_build_snapshot(struct bth_registry *reg);

#endif /* BERTH_REGISTRY_H */
