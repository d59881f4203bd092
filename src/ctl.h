/* SPDX-License-Identifier: MIT */
/* The `berth ctl` client: one control-API call over the Unix socket per invocation.
 * Runs in its own short-lived process; no threads. */
#ifndef BERTH_CTL_H
#define BERTH_CTL_H

/* Runs `berth ctl ARGS`; <argv> starts after "ctl". Returns the process exit status. */
int bth_ctl_main(int argc, char **argv);

/* Parses "10.0.1.5:8080", "[fd00::5]:8080" or "Id=10.0.1.5,Port=8080" into an id and a
 * port. Returns 0 or -1. */
int bth_ctl_parse_target(const char *s, char *id, unsigned idsz, unsigned *port);

#endif /* BERTH_CTL_H */
