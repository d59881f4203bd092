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

struct bth_config;
struct bth_err;

/* Runs every check, adding one "FILE: message" line to <err> per problem. <at_start> skips
 * reading the state file, which the start loads next with the same parser. Returns 0 when
 * all pass, else -1. */
int bth_preflight(const struct bth_config *cfg, bool at_start, struct bth_err *err);

#endif /* BERTH_PREFLIGHT_H */
