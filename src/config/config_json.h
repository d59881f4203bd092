/* SPDX-License-Identifier: MIT */
/* The config in force as JSON, for GET /v1/config (README "Control API"). Main thread only
 * (the control API runs there); reads a published, immutable config. Never emits secrets:
 * files that hold them appear by path only. */
#ifndef BERTH_CONFIG_JSON_H
#define BERTH_CONFIG_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* For the enums below; C has no forward declaration of an enum. */
#include "config.h"

/* Renders <cfg> with the config file's key names: durations as strings in their largest
 * exact unit ("30s", "500ms"), sizes as integers in bytes, enums by name, unset optional
 * strings as null. Returns a new reference the caller owns, or NULL when out of memory. */
json_t *bth_config_to_json(const struct bth_config *cfg);

/* Writes <ms> as "<n><unit>" with the largest unit (d, h, m, s, ms) that divides it exactly;
 * 0 is "0s". Returns <buf>. */
char *bth_config_fmt_duration(uint64_t ms, char *buf, size_t len);

/* Enum names as the config file spells them. */
const char *bth_stickiness_name(enum bth_stickiness_type t);
const char *bth_action_type_name(enum bth_action_type t);

#endif /* BERTH_CONFIG_JSON_H */
