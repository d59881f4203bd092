/* SPDX-License-Identifier: MIT */
/* Main thread only. The control API (SPEC.md "Control API"): HTTP/1.1 + JSON on a Unix
 * socket, served by libevent's evhttp on the main event loop, ELBv2 names and errors. */
#ifndef BERTH_CONTROL_H
#define BERTH_CONTROL_H

struct bth_app;
struct bth_control;

/* Before anything else at start: refuses (-1, logged) when <path> is a socket another
 * process answers on (a second berth would take it over) or a file that is not a socket;
 * 0 when it is free or a stale socket left by a crash. */
int bth_control_check_socket(const char *path);

/* Binds <path> (mode 0660; a stale socket file is replaced) on the app's main loop.
 * Returns the server, or NULL after logging why. */
struct bth_control *bth_control_start(struct bth_app *app, const char *path);
/* Closes the control server; removes the socket file only if it is still the one this
 * berth bound (same device and inode). */
void bth_control_stop(struct bth_control *c);

#endif /* BERTH_CONTROL_H */
