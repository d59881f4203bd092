/* SPDX-License-Identifier: MIT */
/* State file: {"version":1,"cookie_key":"<hex>","target_groups":{"web":[{"Id":"10.0.1.5",
 * "Port":8080,"Weight":1}]}} written with the rename dance so readers only ever see a whole
 * file. */
#include "state_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "mem.h"
#include "registry.h"
#include "target.h"

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char *copy = bth_strdup(path);
    if (copy == NULL)
        return -ENOMEM;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bth_free(copy);
    if (fd == -1)
        return -errno;
    int rc = fsync(fd) == -1 ? -errno : 0;
    close(fd);
    return rc;
}

static char *put_uint(char *p, unsigned v)
{
    char d[12];
    int n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = d[--n];
    return p;
}

/* {"Id":"10.0.1.5","Port":8080,"Weight":1} into <out> (160 bytes), without printf: this
 * runs for every dynamic target on every API call. Returns the length. */
static size_t target_json(const struct bth_target *t, bool first, char *out)
{
    const char *text = t->addr.text, *colon = strrchr(text, ':');
    size_t idlen = colon ? (size_t)(colon - text) : strlen(text);
    if (idlen > 1 && text[0] == '[') {
        text++;
        idlen -= 2;
    }
    unsigned port = colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
    char *p = out;
    if (!first)
        *p++ = ',';
    memcpy(p, "{\"Id\":\"", 7);
    p += 7;
    memcpy(p, text, idlen);
    p += idlen;
    memcpy(p, "\",\"Port\":", 9);
    p = put_uint(p + 9, port);
    memcpy(p, ",\"Weight\":", 10);
    p = put_uint(p + 10, t->weight);
    *p++ = '}';
    return (size_t)(p - out);
}

/* Appends <s> to the growing buffer; returns 0 or -1. */
static int put(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < *len + n)
            c *= 2;
        char *b = bth_realloc(*buf, c);
        if (b == NULL)
            return -1;
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    return 0;
}

/* The whole file in one buffer, formatted without printf (see target_json), so saving after
 * every API call stays cheap next to the fsyncs. */
static char *serialize(const struct bth_registry *reg, const uint8_t *key, size_t *out_len)
{
    char *buf = NULL, tmp[160];
    size_t len = 0, cap = 0;
    int bad = put(&buf, &len, &cap, "{\"version\":1", 12);
    if (key != NULL) {
        static const char hex[] = "0123456789abcdef";
        char k[BTH_STICKY_KEY_BYTES * 2];
        for (int i = 0; i < BTH_STICKY_KEY_BYTES; i++) {
            k[2 * i] = hex[key[i] >> 4];
            k[2 * i + 1] = hex[key[i] & 15];
        }
        bad |= put(&buf, &len, &cap, ",\"cookie_key\":\"", 15);
        bad |= put(&buf, &len, &cap, k, sizeof(k));
        bad |= put(&buf, &len, &cap, "\"", 1);
    }
    bad |= put(&buf, &len, &cap, ",\"target_groups\":{", 18);
    for (size_t i = 0; i < reg->ngroups; i++) {
        const struct bth_reg_group *g = &reg->groups[i];
        int n = snprintf(tmp, sizeof(tmp), "%s\"%s\":[", i ? "," : "", g->name);
        bad |= put(&buf, &len, &cap, tmp, (size_t)n); /* names are [A-Za-z0-9._-] */
        bool first = true;
        for (size_t j = 0; j < g->ntargets; j++) {
            const struct bth_target *t = g->targets[j];
            if (!t->dynamic || t->discovered || atomic_load(&t->state) == BTH_TARGET_DRAINING)
                continue;
            n = (int)target_json(t, first, tmp);
            bad |= put(&buf, &len, &cap, tmp, (size_t)n);
            first = false;
        }
        bad |= put(&buf, &len, &cap, "]", 1);
    }
    bad |= put(&buf, &len, &cap, "}}\n", 3);
    if (bad) {
        bth_free(buf);
        return NULL;
    }
    *out_len = len;
    return buf;
}

int bth_state_save(const char *path, const struct bth_registry *reg,
                   const uint8_t key[BTH_STICKY_KEY_BYTES])
{
    size_t len;
    char *b = serialize(reg, key, &len);
    if (b == NULL)
        return -ENOMEM;
    char tmp[4096];
    int rc = 0;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        bth_free(b);
        return -ENAMETOOLONG;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd == -1) {
        rc = -errno;
        goto out;
    }
    rc = write_all(fd, b, len);
    if (rc == 0 && fdatasync(fd) == -1)
        rc = -errno;
    close(fd);
    if (rc == 0 && rename(tmp, path) == -1)
        rc = -errno;
    if (rc == 0)
        rc = fsync_dir_of(path);
    if (rc != 0)
        unlink(tmp);
out:
    bth_free(b);
    return rc;
}

/* Moves a file that could not be used to "<path>.corrupt-<unix time>" so the next save does
 * not overwrite what an operator may want to recover. Returns 0 or -1 (logged). */
static int set_aside(const char *path, const char *why)
{
    char aside[4096];
    snprintf(aside, sizeof(aside), "%s.corrupt-%lld", path, (long long)bth_clock_unix_s());
    if (rename(path, aside) != 0) {
        bth_log(BTH_LOG_ERR, "%s; moving it aside failed: %s", why, strerror(errno));
        return -1;
    }
    bth_log(BTH_LOG_ERR,
            "%s; state_file_recovery is move_aside: kept as %s, starting with the "
            "config's targets only",
            why, aside);
    return 0;
}

/* The parts every berth state file has; <why> gets "FILE: message" otherwise. */
static int check_shape(const char *path, json_t *root, char *why, size_t whysz)
{
    json_t *key = json_object_get(root, "cookie_key");
    if (!json_is_object(root) || json_integer_value(json_object_get(root, "version")) != 1 ||
        !json_is_object(json_object_get(root, "target_groups"))) {
        snprintf(why, whysz,
                 "%s: not a berth state file (an object with version 1 and "
                 "target_groups)",
                 path);
        return -1;
    }
    if (key != NULL && !json_is_string(key)) {
        snprintf(why, whysz, "%s: cookie_key is not a string", path);
        return -1;
    }
    const char *name;
    json_t *arr;
    json_object_foreach(json_object_get(root, "target_groups"), name, arr)
    {
        if (!json_is_array(arr)) {
            snprintf(why, whysz, "%s: target_groups.%s is not an array", path, name);
            return -1;
        }
    }
    return 0;
}

/* One saved target; false when it is not a target berth would accept today. */
static bool parse_entry(json_t *t, struct bth_addr *a, unsigned *weight)
{
    json_t *id = json_object_get(t, "Id"), *port = json_object_get(t, "Port");
    json_t *w = json_object_get(t, "Weight");
    if (!json_is_string(id) || !json_is_integer(port) || json_integer_value(port) < 1 ||
        json_integer_value(port) > 65535)
        return false;
    if (w != NULL &&
        (!json_is_integer(w) || json_integer_value(w) < 0 || json_integer_value(w) > 999))
        return false;
    *weight = w != NULL ? (unsigned)json_integer_value(w) : 1;
    return bth_addr_from_ip_port(json_string_value(id), (unsigned)json_integer_value(port), a) == 0;
}

/* Registers the saved targets of the groups that still exist. An entry berth cannot use is
 * skipped with a warning naming it: one bad entry never costs the others. */
static void register_saved(const char *path, json_t *groups, struct bth_registry *reg)
{
    const char *name;
    json_t *arr;
    json_object_foreach(groups, name, arr)
    {
        struct bth_reg_group *g = bth_registry_find_group(reg, name);
        if (g == NULL) {
            if (json_array_size(arr) > 0)
                bth_log(BTH_LOG_WARN,
                        "state file %s: group %s is not in the config; its %zu "
                        "target(s) are dropped",
                        path, name, json_array_size(arr));
            continue;
        }
        size_t i, refused = 0;
        json_t *t;
        json_array_foreach(arr, i, t)
        {
            struct bth_addr a;
            unsigned weight;
            const char *unusable;
            if (!parse_entry(t, &a, &weight)) {
                bth_log(BTH_LOG_WARN,
                        "state file %s: target_groups.%s[%zu] is not a valid "
                        "target; skipped",
                        path, name, i);
                continue;
            }
            /* Written by a berth that took such addresses: they are dropped, the rest kept. */
            if (!bth_addr_usable(&a, &unusable)) {
                if (refused++ == 0)
                    bth_log(BTH_LOG_WARN, "state file %s: group %s: unusable target %s dropped: %s",
                            path, name, a.text, unusable);
                continue;
            }
            if (bth_registry_register(reg, g, &a, weight) != 0)
                bth_log(BTH_LOG_ERR, "state file %s: out of memory registering %s", path, a.text);
        }
        if (refused > 1)
            bth_log(BTH_LOG_WARN, "state file %s: group %s: %zu unusable targets dropped in all",
                    path, name, refused);
    }
}

/* The parsed file when it is a whole berth state file; NULL with "FILE[:LINE:COL]: message"
 * in <why> otherwise, or with <why> empty when there is no file. */
static json_t *read_checked(const char *path, char *why, size_t whysz)
{
    why[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        if (errno != ENOENT)
            snprintf(why, whysz, "%s: %s", path, strerror(errno));
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadfd(fd, 0, &jerr);
    close(fd);
    if (root == NULL) {
        /* An empty or torn file is a parse error at its end: say where. */
        snprintf(why, whysz, "%s:%d:%d: state file is not valid JSON: %s", path,
                 jerr.line > 0 ? jerr.line : 1, jerr.column > 0 ? jerr.column : 1, jerr.text);
        return NULL;
    }
    json_t *k = json_object_get(root, "cookie_key");
    uint8_t key[BTH_STICKY_KEY_BYTES];
    if (check_shape(path, root, why, whysz) == 0 && k != NULL &&
        bth_sticky_parse_hex_key(json_string_value(k), strlen(json_string_value(k)), key) != 0)
        snprintf(why, whysz, "%s: cookie_key is not 64 hex characters", path);
    if (why[0] != '\0') {
        json_decref(root);
        return NULL;
    }
    return root;
}

int bth_state_check(const char *path, char *why, size_t whysz)
{
    json_t *root = read_checked(path, why, whysz);
    json_decref(root);
    return why[0] == '\0' ? 0 : -1;
}

int bth_state_load(const char *path, bool move_aside, struct bth_registry *reg,
                   uint8_t key[BTH_STICKY_KEY_BYTES], bool *have_key)
{
    *have_key = false;
    char why[1024];
    json_t *root = read_checked(path, why, sizeof(why));
    if (root == NULL && why[0] == '\0')
        return 1;
    if (root == NULL) {
        if (move_aside)
            return set_aside(path, why) == 0 ? 2 : -1;
        bth_log(BTH_LOG_ERR,
                "%s; refusing to start so no registration is lost (repair or remove the file, "
                "or set state_file_recovery: move_aside)",
                why);
        return -1;
    }
    json_t *k = json_object_get(root, "cookie_key");
    if (k != NULL)
        bth_sticky_parse_hex_key(json_string_value(k), strlen(json_string_value(k)), key);
    *have_key = k != NULL;
    register_saved(path, json_object_get(root, "target_groups"), reg);
    json_decref(root);
    return 0;
}
