/* SPDX-License-Identifier: MIT */
/* Main thread only. The control API (SPEC.md "Control API"): HTTP/1.1 + JSON on a Unix
 * socket and, with a Bearer token, on control.listen, served by control_http.c on the main
 * event loop, ELBv2 names and errors. */
#ifndef BERTH_CONTROL_H
#define BERTH_CONTROL_H

struct bth_app;
struct bth_control;

/* Binds <path> (mode 0660; a stale socket file is replaced) on the app's main loop, and
 * control.listen when the config has it (its token file read first, so a bad one binds
 * nothing). Returns the server, or NULL after logging why. */
struct bth_control *bth_control_start(struct bth_app *app, const char *path);
void bth_control_stop(struct bth_control *c);

#endif /* BERTH_CONTROL_H */
