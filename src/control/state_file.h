/* SPDX-License-Identifier: MIT */
/* Main thread only. Persistence of what the control API changed: targets registered at run
 * time (per group) and the stickiness cookie key when no cookie_key_file is configured.
 * Saved atomically after every change (temporary file, fsync, rename, fsync of the
 * directory), loaded at start, so a restart or a crash loses no registration. */
#ifndef BERTH_STATE_FILE_H
#define BERTH_STATE_FILE_H

#include <stdbool.h>
#include <stdint.h>

#include "sticky.h"

struct bth_registry;

/* Writes the dynamic, non-draining targets of <reg> and <key> (NULL: none) to <path>.
 * Returns 0 or -errno (the previous file is left intact). */
int bth_state_save(const char *path, const struct bth_registry *reg,
                   const uint8_t key[BTH_STICKY_KEY_BYTES]);

/* Reads <path> into <reg> (registering its targets into groups that exist; targets of
 * groups no longer in the config, and entries that are not valid targets, are skipped with
 * a warning) and <key> (*<have_key> says whether the file had one). Returns 0 when loaded,
 * 1 when there is no file, 2 when it was unreadable or corrupt and <move_aside> moved it to
 * "<path>.corrupt-<unix time>" (logged; <reg> unchanged), -1 when it was unreadable or
 * corrupt otherwise (logged as "FILE:LINE:COL: message" where the position is known). */
int bth_state_load(const char *path, bool move_aside, struct bth_registry *reg,
                   uint8_t key[BTH_STICKY_KEY_BYTES], bool *have_key);

/* Whether <path> is absent or a whole state file start would load; -1 with
 * "FILE[:LINE:COL]: message" in <why> otherwise (for `berth -t`). */
int bth_state_check(const char *path, char *why, size_t whysz);

#endif /* BERTH_STATE_FILE_H */
