/* SPDX-License-Identifier: MIT */
/* Main thread only. DNS service discovery: target groups with a `discovery` block are kept
 * in step with the A, AAAA or SRV records of a name. Each answer registers the new
 * addresses and drains the ones that left (as an API deregistration does); a failed or
 * empty answer keeps the last good set and is reported (log, metrics, health view). */
#ifndef BERTH_DISCOVERY_H
#define BERTH_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct bth_registry;
struct bth_discovery;

/* Called after an answer changed a group's targets: the caller publishes. */
typedef void (*bth_discovery_changed_cb)(void *arg);

struct bth_discovery_status {
    const char *name;       /* the DNS name */
    const char *type;       /* "A", "AAAA" or "SRV" */
    bool failing;           /* the last lookup failed; the last good set is kept */
    const char *last_error; /* "" when none */
    uint64_t failures;      /* lookups failed since start */
    size_t targets;         /* addresses in the last good answer */
    int64_t last_ok_age_ms; /* since the last good answer, -1: none yet */
};

struct bth_discovery *bth_discovery_create(struct event_base *base, struct bth_registry *reg,
                                           bth_discovery_changed_cb cb, void *arg);
void bth_discovery_destroy(struct bth_discovery *d);

/* Follows the registry's current config: starts lookups for new discovery blocks, keeps
 * those unchanged, and drains what a removed block had registered. Call after start-up
 * and after every reload. Returns 0 or -1 (out of memory). */
int bth_discovery_sync(struct bth_discovery *d);

/* The status of group <group>'s discovery; false when it has none. */
bool bth_discovery_status(const struct bth_discovery *d, const char *group,
                          struct bth_discovery_status *out);

struct evbuffer;
/* Appends berth_discovery_* metric families (Prometheus text) to <out>. */
void bth_discovery_metrics(const struct bth_discovery *d, struct evbuffer *out);

#endif /* BERTH_DISCOVERY_H */
