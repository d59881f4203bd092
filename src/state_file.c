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

#include "config.h"
#include "log.h"
#include "mem.h"
#include "registry.h"
#include "target.h"

/* Splits a target's "ip:port" / "[v6]:port" text into the ELBv2 Id and Port. */
static void split_text(const char *text, char *id, size_t idsz, unsigned *port)
{
    const char *colon = strrchr(text, ':');
    size_t n = colon ? (size_t)(colon - text) : strlen(text);
    if (n > 1 && text[0] == '[') {
        text++;
        n -= 2;
    }
    snprintf(id, idsz, "%.*s", (int)n, text);
    *port = colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
}

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

int bth_state_save(const char *path, const struct bth_registry *reg,
                   const uint8_t key[BTH_STICKY_KEY_BYTES])
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return -ENOMEM;
    evbuffer_add_printf(b, "{\"version\":1");
    if (key != NULL) {
        evbuffer_add_printf(b, ",\"cookie_key\":\"");
        for (int i = 0; i < BTH_STICKY_KEY_BYTES; i++)
            evbuffer_add_printf(b, "%02x", key[i]);
        evbuffer_add(b, "\"", 1);
    }
    evbuffer_add_printf(b, ",\"target_groups\":{");
    for (size_t i = 0; i < reg->ngroups; i++) {
        const struct bth_reg_group *g = &reg->groups[i];
        evbuffer_add_printf(b, "%s\"%s\":[", i ? "," : "", g->name); /* names are [A-Za-z0-9._-] */
        bool first = true;
        for (size_t j = 0; j < g->ntargets; j++) {
            const struct bth_target *t = g->targets[j];
            if (!t->dynamic || atomic_load(&t->state) == BTH_TARGET_DRAINING)
                continue;
            char id[64];
            unsigned port;
            split_text(t->addr.text, id, sizeof(id), &port);
            evbuffer_add_printf(b, "%s{\"Id\":\"%s\",\"Port\":%u,\"Weight\":%u}", first ? "" : ",",
                                id, port, t->weight);
            first = false;
        }
        evbuffer_add(b, "]", 1);
    }
    evbuffer_add(b, "}}\n", 3);

    char tmp[4096];
    int rc = 0;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        evbuffer_free(b);
        return -ENAMETOOLONG;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd == -1) {
        rc = -errno;
        goto out;
    }
    size_t len = evbuffer_get_length(b);
    rc = write_all(fd, (const char *)evbuffer_pullup(b, -1), len);
    if (rc == 0 && fsync(fd) == -1)
        rc = -errno;
    close(fd);
    if (rc == 0 && rename(tmp, path) == -1)
        rc = -errno;
    if (rc == 0)
        rc = fsync_dir_of(path);
    if (rc != 0)
        unlink(tmp);
out:
    evbuffer_free(b);
    return rc;
}

static void set_aside(const char *path, const char *why)
{
    char aside[4096];
    snprintf(aside, sizeof(aside), "%s.corrupt-%lld", path, (long long)time(NULL));
    if (rename(path, aside) == 0)
        bth_log(BTH_LOG_ERR, "state file %s: %s; kept aside as %s, starting with the config's "
                             "targets only",
                path, why, aside);
    else
        bth_log(BTH_LOG_ERR, "state file %s: %s; rename() failed: %s; starting with the "
                             "config's targets only",
                path, why, strerror(errno));
}

/* Checks the whole document first, so a half-valid file changes nothing. */
static int validate(json_t *root, char *why, size_t whysz)
{
    json_t *groups = json_object_get(root, "target_groups");
    if (!json_is_object(root) || json_integer_value(json_object_get(root, "version")) != 1 ||
        !json_is_object(groups)) {
        snprintf(why, whysz, "not a berth state file (version 1 with target_groups)");
        return -1;
    }
    json_t *key = json_object_get(root, "cookie_key");
    if (key != NULL && !json_is_string(key)) {
        snprintf(why, whysz, "cookie_key is not a string");
        return -1;
    }
    const char *name;
    json_t *arr;
    json_object_foreach(groups, name, arr)
    {
        if (!json_is_array(arr)) {
            snprintf(why, whysz, "target_groups.%s is not an array", name);
            return -1;
        }
        size_t i;
        json_t *t;
        json_array_foreach(arr, i, t)
        {
            struct bth_addr a;
            json_t *port = json_object_get(t, "Port"), *w = json_object_get(t, "Weight");
            if (!json_is_string(json_object_get(t, "Id")) || !json_is_integer(port) ||
                json_integer_value(port) < 1 || json_integer_value(port) > 65535 ||
                (w != NULL && (!json_is_integer(w) || json_integer_value(w) < 0 ||
                               json_integer_value(w) > 999)) ||
                bth_addr_from_ip_port(json_string_value(json_object_get(t, "Id")),
                                      (unsigned)json_integer_value(port), &a) != 0) {
                snprintf(why, whysz, "target_groups.%s[%zu] is not a valid target", name, i);
                return -1;
            }
        }
    }
    return 0;
}

int bth_state_load(const char *path, struct bth_registry *reg, uint8_t key[BTH_STICKY_KEY_BYTES],
                   bool *have_key)
{
    *have_key = false;
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return 1;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    char why[512] = "";
    if (root == NULL) {
        snprintf(why, sizeof(why), "%d:%d: %s", jerr.line, jerr.column, jerr.text);
        set_aside(path, why);
        return -1;
    }
    json_t *k = json_object_get(root, "cookie_key");
    if (validate(root, why, sizeof(why)) != 0 ||
        (k != NULL && bth_sticky_parse_hex_key(json_string_value(k),
                                               strlen(json_string_value(k)), key) != 0)) {
        if (k != NULL && why[0] == '\0')
            snprintf(why, sizeof(why), "cookie_key is not 64 hex characters");
        json_decref(root);
        set_aside(path, why);
        return -1;
    }
    *have_key = k != NULL;
    const char *name;
    json_t *arr;
    json_object_foreach(json_object_get(root, "target_groups"), name, arr)
    {
        struct bth_reg_group *g = bth_registry_find_group(reg, name);
        if (g == NULL) {
            if (json_array_size(arr) > 0)
                bth_log(BTH_LOG_WARN, "state file %s: group %s is not in the config; its %zu "
                                      "target(s) are dropped",
                        path, name, json_array_size(arr));
            continue;
        }
        size_t i;
        json_t *t;
        json_array_foreach(arr, i, t)
        {
            struct bth_addr a;
            json_t *w = json_object_get(t, "Weight");
            bth_addr_from_ip_port(json_string_value(json_object_get(t, "Id")),
                                  (unsigned)json_integer_value(json_object_get(t, "Port")), &a);
            bth_registry_register(reg, g, &a, w ? (unsigned)json_integer_value(w) : 1);
        }
    }
    json_decref(root);
    return 0;
}
