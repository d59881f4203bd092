/* SPDX-License-Identifier: MIT */
/* Main thread only, before anything is bound. Start-time checks of what the config points
 * at outside itself: the control token file (present, not world-readable), the state file
 * (its directory writable by the user berth will run as, the file loadable), the cookie key
 * file, the user and group, and the directories of the pid file, access log and control
 * socket. Shared by `berth -t` and the start, so a systemd ExecStartPre, an entrypoint or
 * CI catches what a restart would trip on. Certificates are checked by tls.h. */
#ifndef BERTH_PREFLIGHT_H
#define BERTH_PREFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sticky.h"

struct bth_config;
struct bth_err;

/* Runs every check, adding one "FILE: message" line to <err> per problem. <at_start> skips
 * reading the state file, which the start loads next with the same parser. Returns 0 when
 * all pass, else -1. */
int bth_preflight(const struct bth_config *cfg, bool at_start, struct bth_err *err);

/* The uid and gid berth runs as after dropping privileges (the config's user and group, or
 * its own). Returns 0, or -1 with one line per unknown name in <err>. */
int bth_preflight_identity(const struct bth_config *cfg, uid_t *uid, gid_t *gid,
                           struct bth_err *err);

/* Reads a cookie_key_file (64 hex characters) into <key>; -1 with why in <why>. The start
 * and the check read it this way. */
int bth_preflight_read_cookie_key(const char *path, uint8_t key[BTH_STICKY_KEY_BYTES], char *why,
                                  size_t whysz);

#endif /* BERTH_PREFLIGHT_H */
