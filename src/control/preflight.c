/* SPDX-License-Identifier: MIT */
/* Start-time checks of what the config points at outside itself. Each check looks at the
 * same thing the start-up step would use, and in the same way where it can (the state file
 * goes through the loader's own parser), so `berth -t` agrees with a start. */
#include "preflight.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "mem.h"
#include "state_file.h"
#include "sticky.h"

/* Who berth runs as once it has dropped privileges: the files it writes after that (state
 * file saves) need this identity's permission, not root's. */
struct identity {
    uid_t uid;
    gid_t gid;
    const char *name; /* for messages */
};

static int resolve_identity(const struct bth_config *cfg, struct identity *id, struct bth_err *err);

int bth_preflight_identity(const struct bth_config *cfg, uid_t *uid, gid_t *gid,
                           struct bth_err *err)
{
    struct identity id;
    int rc = resolve_identity(cfg, &id, err);
    *uid = id.uid;
    *gid = id.gid;
    return rc;
}

static int resolve_identity(const struct bth_config *cfg, struct identity *id, struct bth_err *err)
{
    id->uid = geteuid();
    id->gid = getegid();
    id->name = NULL;
    int rc = 0;
    if (cfg->group != NULL) {
        struct group *g = getgrnam(cfg->group);
        if (g == NULL) {
            bth_err_add(err, "%s: group %s: no such group", cfg->path, cfg->group);
            rc = -1;
        } else {
            id->gid = g->gr_gid;
        }
    }
    if (cfg->user != NULL) {
        struct passwd *p = getpwnam(cfg->user);
        if (p == NULL) {
            bth_err_add(err, "%s: user %s: no such user", cfg->path, cfg->user);
            rc = -1;
        } else {
            id->uid = p->pw_uid;
            id->name = cfg->user;
            if (cfg->group == NULL)
                id->gid = p->pw_gid;
        }
    }
    return rc;
}

/* Whether <id> may create files in the directory <st> describes, from its mode bits (root
 * may; ACLs and supplementary groups are not considered). */
static bool dir_writable_by(const struct stat *st, const struct identity *id)
{
    if (id->uid == 0)
        return true;
    if (st->st_uid == id->uid)
        return (st->st_mode & S_IWUSR) && (st->st_mode & S_IXUSR);
    if (st->st_gid == id->gid)
        return (st->st_mode & S_IWGRP) && (st->st_mode & S_IXGRP);
    return (st->st_mode & S_IWOTH) && (st->st_mode & S_IXOTH);
}

/* The directory of <path> exists, is a directory, and (with <id>) <id> may create files in
 * it; root also needs it on a writable file system. <what> names the key in messages. */
static int check_dir_of(const struct bth_config *cfg, const char *what, const char *path,
                        const struct identity *id, struct bth_err *err)
{
    char *copy = bth_strdup(path);
    if (copy == NULL)
        return -1;
    const char *dir = dirname(copy);
    struct stat st;
    int rc = 0;
    if (stat(dir, &st) != 0) {
        bth_err_add(err, "%s: %s %s: directory %s: %s", cfg->path, what, path, dir,
                    strerror(errno));
        rc = -1;
    } else if (!S_ISDIR(st.st_mode)) {
        bth_err_add(err, "%s: %s %s: %s is not a directory", cfg->path, what, path, dir);
        rc = -1;
    } else if (id != NULL && (!dir_writable_by(&st, id) || access(dir, W_OK | X_OK) != 0)) {
        bth_err_add(err, "%s: %s %s: directory %s is not writable%s%s", cfg->path, what, path, dir,
                    id->name ? " by user " : "", id->name ? id->name : "");
        rc = -1;
    }
    bth_free(copy);
    return rc;
}

/* The TCP control listener's token, read exactly as the start reads it. */
static int check_token_file(const struct bth_config *cfg, struct bth_err *err)
{
    char *token = NULL, why[512];
    size_t len = 0;
    int rc = bth_control_read_token(cfg->control_token_file, &token, &len, why, sizeof(why));
    if (rc != 0)
        bth_err_add(err, "%s: %s", cfg->path, why);
    bth_control_free_token(token, len);
    return rc;
}

int bth_preflight_read_cookie_key(const char *path, uint8_t key[BTH_STICKY_KEY_BYTES], char *why,
                                  size_t whysz)
{
    FILE *f = fopen(path, "r");
    char text[256];
    size_t n = f ? fread(text, 1, sizeof(text), f) : 0;
    int rc = 0;
    if (f == NULL) {
        snprintf(why, whysz, "cookie_key_file %s: %s", path, strerror(errno));
        rc = -1;
    } else if (bth_sticky_parse_hex_key(text, n, key) != 0) {
        snprintf(why, whysz, "cookie_key_file %s: expected 64 hex characters", path);
        rc = -1;
    }
    if (f != NULL)
        fclose(f);
    return rc;
}

static int check_cookie_key_file(const struct bth_config *cfg, struct bth_err *err)
{
    uint8_t key[BTH_STICKY_KEY_BYTES];
    char why[512];
    int rc = bth_preflight_read_cookie_key(cfg->cookie_key_file, key, why, sizeof(why));
    if (rc != 0)
        bth_err_add(err, "%s: %s", cfg->path, why);
    return rc;
}

static int check_state_file(const struct bth_config *cfg, const struct identity *id, bool read_file,
                            struct bth_err *err)
{
    int rc = check_dir_of(cfg, "state_file", cfg->state_file, id, err);
    char why[1024];
    if (read_file && cfg->state_file_recovery == BTH_STATE_FAIL &&
        bth_state_check(cfg->state_file, why, sizeof(why)) != 0) {
        bth_err_add(err, "%s (start refuses it; state_file_recovery: move_aside sets it aside)",
                    why);
        rc = -1;
    }
    return rc;
}

static bool is_file_log(const char *spec)
{
    return spec != NULL && strcmp(spec, "stdout") != 0 && strcmp(spec, "off") != 0;
}

int bth_preflight(const struct bth_config *cfg, bool at_start, struct bth_err *err)
{
    struct identity id;
    int rc = resolve_identity(cfg, &id, err);
    if (cfg->control_listen != NULL && cfg->control_token_file != NULL)
        rc |= check_token_file(cfg, err);
    if (cfg->control_socket != NULL)
        rc |= check_dir_of(cfg, "control.socket", cfg->control_socket, NULL, err);
    if (cfg->state_file != NULL)
        rc |= check_state_file(cfg, &id, !at_start, err);
    if (cfg->cookie_key_file != NULL)
        rc |= check_cookie_key_file(cfg, err);
    /* Written before privileges are dropped: only the directory must be there. */
    if (cfg->pid_file != NULL)
        rc |= check_dir_of(cfg, "pid_file", cfg->pid_file, NULL, err);
    if (is_file_log(cfg->access_log))
        rc |= check_dir_of(cfg, "access_log", cfg->access_log, NULL, err);
    return rc == 0 ? 0 : -1;
}
