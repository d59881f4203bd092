/* SPDX-License-Identifier: MIT */
/* Process life: start-up (config, sockets, workers, control), snapshot publication, signals
 * and the graceful stop. */
#include "app.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <grp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"
#include "config.h"
#include "cpu_count.h"
#include "control.h"
#include "discovery.h"
#include "health.h"
#include "http_front.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "snapshot.h"
#include "preflight.h"
#include "state_file.h"
#include "tls.h"
#include "sticky.h"
#include "tcp_proxy.h"
#include "udp_proxy.h"
#include "worker.h"

static void sd_notify_send(const char *msg);

static struct bth_config *load_config(const char *path)
{
    struct bth_err err;
    bth_err_init(&err);
    struct bth_config *cfg = path ? bth_config_load_file(path, &err)
                                  : bth_config_load_buffer("<default>", bth_config_default_yaml,
                                                           strlen(bth_config_default_yaml), &err);
    for (size_t i = 0; i < err.n; i++)
        bth_log(BTH_LOG_ERR, "%s", err.msgs[i]);
    bth_err_fini(&err);
    if (cfg != NULL)
        bth_config_log_warnings(cfg);
    return cfg;
}

/* One SO_REUSEPORT socket: the kernel spreads connections (and, by 4-tuple hash, UDP
 * flows) over the workers' sockets. <type> is SOCK_STREAM or SOCK_DGRAM. */
static int open_listener(const struct bth_cfg_listener *l, int type)
{
    int fd = socket(l->bind.ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    int one = 1, big = 4 * 1024 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (l->bind.ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (type == SOCK_DGRAM) {
        /* Bursts of datagrams wait in the kernel while a batch is processed. */
        /* The FORCE variants pass net.core.rmem_max when berth runs with CAP_NET_ADMIN. */
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) == -1)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) == -1)
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    }
    if (bind(fd, (const struct sockaddr *)&l->bind.ss, l->bind.len) == -1 ||
        (type == SOCK_STREAM && listen(fd, 4096) == -1)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* The old index of the listener of <old> with the same name, protocol and address as <l>,
 * or SIZE_MAX: such a listener keeps its sockets across a reload. */
static size_t find_kept(const struct bth_config *old, const struct bth_cfg_listener *l)
{
    for (size_t i = 0; i < old->nlisteners; i++) {
        const struct bth_cfg_listener *o = &old->listeners[i];
        if (strcmp(o->name, l->name) == 0 && o->protocol == l->protocol &&
            strcmp(o->bind.text, l->bind.text) == 0)
            return i;
    }
    return SIZE_MAX;
}

/* berth's own workers share each address through SO_REUSEPORT, which would also let a
 * second berth (or anything else of the same user with SO_REUSEPORT) silently take half of
 * the connections. Unless the listener says reuse_port, its address must be free: a bind
 * without SO_REUSEPORT fails with EADDRINUSE exactly when some socket holds it. TCP sets
 * SO_REUSEADDR so TIME_WAIT leftovers do not count; UDP must not (there it means sharing).
 * Returns 0, or -1 with errno set. */
static int probe_address_free(const struct bth_cfg_listener *l, int type)
{
    int fd = socket(l->bind.ss.ss_family, type | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    int one = 1;
    if (type == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (l->bind.ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    int rc = bind(fd, (const struct sockaddr *)&l->bind.ss, l->bind.len);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* Checks the listeners of <cfg> that are new (not in <old>, which is NULL at start) and not
 * shared on purpose. Returns 0, or -1 with "FILE:LINE:COL: ..." in <msg>. */
static int check_listeners_unshared(const struct bth_config *old, const struct bth_config *cfg,
                                    char *msg, size_t msgsz)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct bth_cfg_listener *l = &cfg->listeners[i];
        if (l->reuse_port || (old != NULL && find_kept(old, l) != SIZE_MAX))
            continue;
        bool tcp = l->protocol != BTH_PROTO_UDP,
             udp = l->protocol == BTH_PROTO_UDP || l->protocol == BTH_PROTO_TCP_UDP;
        if ((tcp && probe_address_free(l, SOCK_STREAM) != 0) ||
            (udp && probe_address_free(l, SOCK_DGRAM) != 0)) {
            snprintf(msg, msgsz, "%s:%d:%d: listener %s: bind() to %s failed: %s%s", cfg->path,
                     l->mark.line, l->mark.col, l->name, l->bind.text, strerror(errno),
                     errno == EADDRINUSE ? " (another process listens there; set reuse_port: "
                                           "true to share the address on purpose)"
                                         : "");
            return -1;
        }
    }
    return 0;
}

/* The sockets a listener needs: one stream socket, one datagram socket, or both. */
static size_t listener_specs(const struct bth_cfg_listener *l, size_t index,
                             struct bth_listen_spec out[2])
{
    switch (l->protocol) {
    case BTH_PROTO_HTTP:
    case BTH_PROTO_HTTPS:
        out[0] = (struct bth_listen_spec){-1, &bth_http_listener_ops, index, SIZE_MAX};
        return 1;
    case BTH_PROTO_TCP:
    case BTH_PROTO_TLS:
        out[0] = (struct bth_listen_spec){-1, &bth_tcp_listener_ops, index, SIZE_MAX};
        return 1;
    case BTH_PROTO_UDP:
        out[0] = (struct bth_listen_spec){-1, &bth_udp_listener_ops, index, SIZE_MAX};
        return 1;
    case BTH_PROTO_TCP_UDP:
        out[0] = (struct bth_listen_spec){-1, &bth_tcp_listener_ops, index, SIZE_MAX};
        out[1] = (struct bth_listen_spec){-1, &bth_udp_listener_ops, index, SIZE_MAX};
        return 2;
    default:
        return 0;
    }
}

static unsigned resolve_workers(unsigned configured)
{
    if (configured > 0)
        return configured;
    unsigned n = bth_cpu_count();
    bth_log(BTH_LOG_NOTICE,
            "workers: auto = %u (CPUs this process may use: affinity, cgroup quota)", n);
    return n;
}

static void close_specs(struct bth_listen_spec *specs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (specs[i].fd >= 0)
            close(specs[i].fd);
    }
}

/* Opens one worker's sockets for every listener. Returns the count, or -1 after logging. */
static ssize_t open_worker_sockets(const struct bth_config *cfg, struct bth_listen_spec *specs)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct bth_cfg_listener *l = &cfg->listeners[i];
        size_t k = listener_specs(l, i, specs + n);
        if (k == 0) {
            bth_log(BTH_LOG_ERR, "listener %s: protocol %s is not supported yet", l->name,
                    bth_proto_name(l->protocol));
            close_specs(specs, n);
            return -1;
        }
        for (size_t j = 0; j < k; j++) {
            struct bth_listen_spec *sp = &specs[n + j];
            sp->fd = open_listener(l, sp->ops->accept == NULL ? SOCK_DGRAM : SOCK_STREAM);
            if (sp->fd == -1) {
                bth_log(BTH_LOG_ERR, "listener %s: bind() to %s%s failed: %s", l->name,
                        l->bind.text, sp->ops->accept == NULL ? " (UDP)" : "", strerror(errno));
                close_specs(specs, n + j);
                return -1;
            }
        }
        n += k;
    }
    return (ssize_t)n;
}

/* The last reference of a snapshot was dropped. On a worker (often while a request ends)
 * it is pushed on a lock-free stack and the main loop is woken to free it; on the main
 * thread, or before the loop exists, it is freed at once. Any thread. */
static void reap_snapshot(struct bth_snapshot *s, void *arg)
{
    struct bth_app *app = arg;
    if (app->reap_ev == NULL || pthread_equal(pthread_self(), app->main_thread)) {
        bth_snapshot_destroy(s);
        return;
    }
    struct bth_snapshot *head = atomic_load_explicit(&app->reap_head, memory_order_relaxed);
    do {
        s->reap_next = head;
    } while (!atomic_compare_exchange_weak_explicit(&app->reap_head, &head, s, memory_order_release,
                                                    memory_order_relaxed));
    uint64_t one = 1;
    ssize_t r = write(app->reap_fd, &one, sizeof(one));
    (void)r;
}

/* Frees every snapshot the workers handed back. Main thread. */
static void reap_queued(struct bth_app *app)
{
    struct bth_snapshot *s = atomic_exchange_explicit(&app->reap_head, NULL, memory_order_acquire);
    while (s != NULL) {
        struct bth_snapshot *next = s->reap_next;
        bth_snapshot_destroy(s);
        s = next;
    }
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
    reap_queued(arg);
}

/* A worker's loop has ended (on that worker's thread); the main loop polls the count. */
static void on_worker_exited(void *arg)
{
    struct bth_app *app = arg;
    atomic_fetch_add(&app->workers_done, 1);
}

static int start_workers(struct bth_app *app, const struct bth_config *cfg,
                         struct bth_snapshot *snap)
{
    size_t nl = cfg->nlisteners;
    struct bth_listen_spec *specs = bth_calloc(nl * 2 + 1, sizeof(*specs));
    app->workers = bth_calloc(app->nworkers, sizeof(*app->workers));
    if (specs == NULL || app->workers == NULL)
        goto fail;
    char msg[1024];
    if (check_listeners_unshared(NULL, cfg, msg, sizeof(msg)) != 0) {
        bth_log(BTH_LOG_ERR, "%s", msg);
        goto fail;
    }
    for (unsigned w = 0; w < app->nworkers; w++) {
        ssize_t n = open_worker_sockets(cfg, specs);
        if (n < 0)
            goto fail;
        bth_snapshot_ref(snap);
        app->workers[w] =
            bth_worker_create(w, specs, (size_t)n, snap, &app->accesslog, on_worker_exited, app);
        if (app->workers[w] == NULL) {
            bth_snapshot_unref(snap);
            close_specs(specs, (size_t)n);
            goto fail;
        }
    }
    bth_free(specs);
    for (size_t i = 0; i < nl; i++)
        bth_log(BTH_LOG_NOTICE, "listening on %s (%s)", cfg->listeners[i].bind.text,
                bth_proto_name(cfg->listeners[i].protocol));
    for (unsigned w = 0; w < app->nworkers; w++) {
        if (bth_worker_start(app->workers[w]) != 0)
            return -1;
    }
    return 0;
fail:
    bth_free(specs);
    return -1;
}

int bth_app_publish(struct bth_app *app)
{
    struct bth_snapshot *snap = bth_registry_build_snapshot(&app->registry);
    if (snap == NULL)
        return -1;
    app->published_generation = snap->generation;
    for (unsigned i = 0; i < app->nworkers; i++) {
        bth_snapshot_ref(snap);
        if (bth_worker_post(app->workers[i], BTH_MSG_SNAPSHOT, snap, 0) != 0)
            bth_snapshot_unref(snap);
    }
    bth_snapshot_unref(snap);
    return 0;
}

static void on_shutdown_poll(evutil_socket_t fd, short what, void *arg)
{
    struct bth_app *app = arg;
    (void)app;
    if (atomic_load(&app->workers_done) == app->nworkers)
        event_base_loopbreak(app->base);
}

void bth_app_stop(struct bth_app *app)
{
    if (app->stopping)
        return;
    app->stopping = true;
    const struct bth_config *cfg = app->registry.config->cfg;
    sd_notify_send("STOPPING=1");
    bth_log(BTH_LOG_NOTICE, "stopping: letting in-flight work finish (up to %llums)",
            (unsigned long long)cfg->shutdown_timeout_ms);
    for (unsigned i = 0; i < app->nworkers; i++)
        bth_worker_post(app->workers[i], BTH_MSG_STOP, NULL, cfg->shutdown_timeout_ms);
    bth_control_stop(app->control);
    app->control = NULL;
    app->shutdown_poll = event_new(app->base, -1, EV_PERSIST, on_shutdown_poll, app);
    struct timeval tv = {0, 50 * 1000};
    event_add(app->shutdown_poll, &tv);
}

static int load_tls(struct bth_app *app, const struct bth_config *cfg);

static bool listeners_changed(const struct bth_config *old, const struct bth_config *cfg)
{
    if (old->nlisteners != cfg->nlisteners)
        return true;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        if (find_kept(old, &cfg->listeners[i]) != i)
            return true;
    }
    return false;
}

/* One worker's sockets for the new listener set: kept listeners reuse their sockets (fd -1),
 * new ones get fresh SO_REUSEPORT sockets, bound now so a busy port fails the reload before
 * anything changes. Returns the count or -1 after adding an error. */
static ssize_t plan_worker_sockets(const struct bth_config *old, const struct bth_config *cfg,
                                   struct bth_listen_spec *specs, struct bth_err *err)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct bth_cfg_listener *l = &cfg->listeners[i];
        size_t keep = find_kept(old, l), k = listener_specs(l, i, specs + n);
        for (size_t j = 0; j < k; j++) {
            struct bth_listen_spec *sp = &specs[n + j];
            sp->old_index = keep;
            if (keep != SIZE_MAX)
                continue;
            sp->fd = open_listener(l, sp->ops->accept == NULL ? SOCK_DGRAM : SOCK_STREAM);
            if (sp->fd == -1) {
                bth_err_add(err, "%s:%d:%d: listener %s: bind() to %s failed: %s", cfg->path,
                            l->mark.line, l->mark.col, l->name, l->bind.text, strerror(errno));
                close_specs(specs, n + j);
                return -1;
            }
        }
        n += k;
    }
    return (ssize_t)n;
}

static void free_plans(struct bth_listen_spec **plans, size_t *nplan, unsigned nworkers)
{
    for (unsigned w = 0; plans != NULL && w < nworkers; w++) {
        if (plans[w] != NULL) {
            close_specs(plans[w], nplan ? nplan[w] : 0);
            bth_free(plans[w]);
        }
    }
    bth_free(plans);
    bth_free(nplan);
}

static void log_listener_changes(const struct bth_config *old, const struct bth_config *cfg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        if (find_kept(old, &cfg->listeners[i]) == SIZE_MAX)
            bth_log(BTH_LOG_NOTICE, "listening on %s (%s)", cfg->listeners[i].bind.text,
                    bth_proto_name(cfg->listeners[i].protocol));
    }
    for (size_t i = 0; i < old->nlisteners; i++) {
        if (find_kept(cfg, &old->listeners[i]) == SIZE_MAX)
            bth_log(BTH_LOG_NOTICE, "no longer listening on %s (%s); its connections finish",
                    old->listeners[i].bind.text, bth_proto_name(old->listeners[i].protocol));
    }
}

int bth_app_reload(struct bth_app *app, struct bth_err *err)
{
    /* The old config stays alive until the new listener set is handed over. */
    struct bth_config_ref *old_ref = app->registry.config;
    bth_config_ref_ref(old_ref);
    const struct bth_config *old = old_ref->cfg, *old_listeners = old;
    struct bth_config *cfg = NULL;
    struct bth_config_ref *ref = NULL;
    struct bth_listen_spec **plans = NULL;
    size_t *nplan = NULL;
    struct bth_control_plan *ctl_plan = NULL;
    if (app->config_path == NULL) {
        bth_err_add(err, "berth runs on the embedded default config: nothing to reload");
        goto fail;
    }
    cfg = bth_config_load_file(app->config_path, err);
    if (cfg == NULL || bth_preflight(cfg, true, err) != 0)
        goto fail;
    bth_config_log_warnings(cfg);
    if (resolve_workers(cfg->workers) != app->nworkers) {
        bth_err_add(err, "%s: workers changed; restart berth to apply", cfg->path);
        goto fail;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        if (bth_tls_check_listener(&cfg->listeners[i], err) != 0)
            goto fail;
    }
    if (listeners_changed(old, cfg)) {
        char msg[1024];
        if (check_listeners_unshared(old, cfg, msg, sizeof(msg)) != 0) {
            bth_err_add(err, "%s", msg);
            goto fail;
        }
        plans = bth_calloc(app->nworkers, sizeof(*plans));
        nplan = bth_calloc(app->nworkers, sizeof(*nplan));
        if (plans == NULL || nplan == NULL)
            goto fail;
        for (unsigned w = 0; w < app->nworkers; w++) {
            plans[w] = bth_calloc(cfg->nlisteners * 2 + 1, sizeof(**plans));
            ssize_t n = plans[w] ? plan_worker_sockets(old, cfg, plans[w], err) : -1;
            if (n < 0)
                goto fail;
            nplan[w] = (size_t)n;
        }
    }
    /* control.listen and token_file: read and bound now, put in force with the rest. */
    if (app->control != NULL && bth_control_reconfigure(app->control, cfg, &ctl_plan, err) != 0)
        goto fail;
    ref = bth_config_ref_create(cfg);
    if (ref == NULL)
        goto fail;
    cfg = NULL; /* owned by ref */
    if (bth_registry_apply_config(&app->registry, ref) != 0 || load_tls(app, ref->cfg) != 0) {
        bth_err_add(err, "reload failed: out of memory or certificates unreadable");
        goto fail;
    }
    app->registry.udp_flow_cap = bth_udp_flow_budget(app->registry.config->cfg, app->nworkers);
    bth_config_ref_unref(ref);
    ref = NULL;
    if (ctl_plan != NULL)
        bth_control_apply(app->control, ctl_plan);
    ctl_plan = NULL;
    if (app->discovery != NULL)
        bth_discovery_sync(app->discovery); /* new, changed and removed discovery blocks */
    if (plans != NULL) {
        /* The workers take the new listeners and the matching snapshot in one message. */
        if (app->health != NULL)
            bth_health_sync(app->health);
        struct bth_snapshot *snap = bth_registry_build_snapshot(&app->registry);
        if (snap != NULL)
            app->published_generation = snap->generation;
        for (unsigned w = 0; w < app->nworkers && snap != NULL; w++) {
            bth_snapshot_ref(snap);
            if (bth_worker_post_listeners(app->workers[w], plans[w], nplan[w], snap) == 0)
                plans[w] = NULL;
            else
                bth_snapshot_unref(snap);
        }
        bth_snapshot_unref(snap);
        bth_app_save_state(app);
        log_listener_changes(old_listeners, app->registry.config->cfg);
    } else {
        bth_app_commit(app);
    }
    free_plans(plans, nplan, app->nworkers);
    bth_config_ref_unref(old_ref);
    app->registry.reloads_ok++;
    bth_log(BTH_LOG_NOTICE, "reloaded %s", app->config_path);
    return 0;
fail:
    bth_control_plan_free(ctl_plan);
    free_plans(plans, nplan, app->nworkers);
    bth_config_ref_unref(old_ref);
    bth_config_destroy(cfg);
    if (ref != NULL)
        bth_config_ref_unref(ref);
    app->registry.reloads_failed++;
    return -1;
}

static void reload_from_signal(struct bth_app *app)
{
    struct bth_err err;
    bth_err_init(&err);
    if (bth_app_reload(app, &err) != 0) {
        for (size_t i = 0; i < err.n; i++)
            bth_log(BTH_LOG_ERR, "%s", err.msgs[i]);
        bth_log(BTH_LOG_ERR, "reload failed: the running config stays in force");
    }
    bth_err_fini(&err);
}

/* systemd's readiness protocol (sd_notify): one datagram to $NOTIFY_SOCKET. */
static void sd_notify_send(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || (path[0] != '/' && path[0] != '@'))
        return;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n >= sizeof(sun.sun_path))
        return;
    memcpy(sun.sun_path, path, n);
    if (sun.sun_path[0] == '@')
        sun.sun_path[0] = '\0'; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return;
    sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
    close(fd);
}

static int write_pid_file(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        bth_log(BTH_LOG_ERR, "pid_file %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "%ld\n", (long)getpid());
    fclose(f);
    return 0;
}

/* Drops root after every socket is bound (user/group in the config). */
static int drop_privileges(const struct bth_config *cfg)
{
    if (cfg->user == NULL && cfg->group == NULL)
        return 0;
    uid_t uid;
    gid_t gid;
    struct bth_err err;
    bth_err_init(&err);
    int rc = bth_preflight_identity(cfg, &uid, &gid, &err);
    for (size_t i = 0; i < err.n; i++)
        bth_log(BTH_LOG_ERR, "%s", err.msgs[i]);
    bth_err_fini(&err);
    if (rc != 0)
        return -1;
    if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        bth_log(BTH_LOG_ERR, "dropping privileges to %s:%s failed: %s", cfg->user ? cfg->user : "-",
                cfg->group ? cfg->group : "-", strerror(errno));
        return -1;
    }
    bth_log(BTH_LOG_NOTICE, "running as uid %d gid %d", (int)uid, (int)gid);
    return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct bth_app *app = arg;
    if (sig == SIGUSR1) {
        const char *spec = app->registry.config->cfg->access_log;
        int rc = bth_accesslog_reopen(&app->accesslog, spec);
        if (rc != 0)
            bth_log(BTH_LOG_ERR, "reopening access log %s failed: %s", spec, strerror(-rc));
        else
            bth_log(BTH_LOG_NOTICE, "access log reopened");
        return;
    }
    if (sig == SIGHUP) {
        if (!app->stopping)
            reload_from_signal(app);
        return;
    }
    if (app->stopping) {
        bth_log(BTH_LOG_NOTICE, "second signal: exiting now");
        _exit(0);
    }
    bth_app_stop(app);
}

int bth_app_save_state(struct bth_app *app)
{
    const struct bth_config *cfg = app->registry.config->cfg;
    if (cfg->state_file == NULL)
        return 0;
    int rc = bth_state_save(cfg->state_file, &app->registry,
                            app->cookie_key_in_state ? app->cookie_key : NULL);
    if (rc != 0)
        bth_log(BTH_LOG_ERR, "state file %s: write failed: %s", cfg->state_file, strerror(-rc));
    return rc;
}

int bth_app_apply(struct bth_app *app)
{
    if (app->health != NULL)
        bth_health_sync(app->health); /* new targets start in state initial */
    return bth_app_publish(app);
}

int bth_app_commit(struct bth_app *app)
{
    int rc = bth_app_apply(app);
    bth_app_save_state(app);
    return rc;
}

/* Loads the certificates of every HTTPS listener; logs "FILE: message" per problem. */
static int load_tls(struct bth_app *app, const struct bth_config *cfg)
{
    struct bth_tls_server **tls = bth_calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(*tls));
    struct bth_err err;
    bth_err_init(&err);
    int rc = tls == NULL ? -1 : 0;
    for (size_t i = 0; rc == 0 && i < cfg->nlisteners; i++) {
        if ((cfg->listeners[i].protocol == BTH_PROTO_HTTPS ||
             cfg->listeners[i].protocol == BTH_PROTO_TLS) &&
            (tls[i] = bth_tls_server_create(&cfg->listeners[i], &err)) == NULL)
            rc = -1;
    }
    for (size_t i = 0; i < err.n; i++)
        bth_log(BTH_LOG_ERR, "%s", err.msgs[i]);
    bth_err_fini(&err);
    if (rc != 0) {
        for (size_t i = 0; tls != NULL && i < cfg->nlisteners; i++)
            bth_tls_server_unref(tls[i]);
        bth_free(tls);
        return -1;
    }
    bth_registry_set_listener_tls(&app->registry, tls, cfg->nlisteners);
    return 0;
}

static void on_ticket_rotation(evutil_socket_t fd, short what, void *arg)
{
    bth_tls_rotate_ticket_key();
}

/* Target states changed: the snapshot settles slow start and the workers see it. */
static void on_health_changed(void *arg)
{
    struct bth_app *app = arg;
    if (app->workers != NULL)
        bth_app_publish(app);
}

static void on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
    struct bth_app *app = arg;
    if (bth_registry_drain_tick(&app->registry, bth_clock_mono_ms()) > 0)
        bth_app_commit(app);
}

/* DNS answers changed a group: new targets get checked, and the workers see them. */
static void on_discovery_changed(void *arg)
{
    struct bth_app *app = arg;
    if (app->health != NULL)
        bth_health_sync(app->health);
    if (app->workers != NULL)
        bth_app_publish(app);
}

/* Dynamic registrations and, when no cookie_key_file is set, the cookie key come back from
 * the state file. */
static int load_state(struct bth_app *app, const struct bth_config *cfg, bool *have_key)
{
    *have_key = false;
    if (cfg->state_file == NULL)
        return 0;
    int rc = bth_state_load(cfg->state_file, cfg->state_file_recovery == BTH_STATE_MOVE_ASIDE,
                            &app->registry, app->cookie_key, have_key);
    if (rc == 0)
        bth_log(BTH_LOG_NOTICE, "state file %s loaded", cfg->state_file);
    return rc < 0 ? -1 : 0;
}

/* The stickiness cookie key: from cookie_key_file (share it across a fleet), else the one
 * kept in the state file, else a new random one (kept in the state file when there is
 * one, so cookies survive restarts). */
static int setup_sticky_key(struct bth_app *app, const struct bth_config *cfg, bool state_key)
{
    uint8_t *key = app->cookie_key;
    if (cfg->cookie_key_file == NULL) {
        if (!state_key && bth_sticky_random_key(key) != 0)
            return -1;
        app->cookie_key_in_state = cfg->state_file != NULL;
        bth_sticky_set_key(key);
        return 0;
    }
    char why[512];
    if (bth_preflight_read_cookie_key(cfg->cookie_key_file, key, why, sizeof(why)) != 0) {
        bth_log(BTH_LOG_ERR, "%s", why);
        return -1;
    }
    bth_sticky_set_key(key);
    return 0;
}

/* Connections, pipes and health checks all need descriptors: raise the soft limit to the
 * hard one, and say so when that is still small. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            bth_log(BTH_LOG_WARN, "setrlimit(RLIMIT_NOFILE) failed: %s", strerror(errno));
    }
    if (rl.rlim_cur < 4096)
        bth_log(BTH_LOG_WARN,
                "open file limit is only %llu (raise the hard limit for more "
                "connections)",
                (unsigned long long)rl.rlim_cur);
}

/* ---- what the control API may ask of the process (struct bth_control_ops) ---- */

static int control_save_state(void *arg)
{
    return bth_app_save_state(arg);
}

/* Waits until every worker uses the last published snapshot, so an answer the control API
 * gives means "in force": the next connection sees the change. Workers adopt a snapshot
 * within microseconds of its message; the wait is bounded (a worker stuck in a long batch, or
 * gone at shutdown, does not hold the main loop for more than APPLY_WAIT_MS). */
#define APPLY_WAIT_MS 200
static void wait_applied(struct bth_app *app)
{
    uint64_t deadline = bth_clock_mono_ms() + APPLY_WAIT_MS;
    for (unsigned i = 0; app->workers != NULL && i < app->nworkers; i++) {
        struct bth_worker *w = app->workers[i];
        while (w != NULL && w->started &&
               atomic_load_explicit(&w->applied_generation, memory_order_acquire) <
                   app->published_generation &&
               bth_clock_mono_ms() < deadline) {
            struct timespec ts = {0, 20 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

static int control_apply(void *arg)
{
    int rc = bth_app_apply(arg);
    if (rc == 0)
        wait_applied(arg);
    return rc;
}

static int control_reload(void *arg, struct bth_err *err)
{
    int rc = bth_app_reload(arg, err);
    if (rc == 0)
        wait_applied(arg);
    return rc;
}

static void control_metrics(void *arg, struct evbuffer *out)
{
    struct bth_app *app = arg;
    bth_metrics_render(out, app->workers, app->nworkers, &app->registry);
    bth_discovery_metrics(app->discovery, out);
}

static bool control_discovery(void *arg, const char *name, struct bth_discovery_status *ds)
{
    struct bth_app *app = arg;
    return bth_discovery_status(app->discovery, name, ds);
}

/* The checks `berth -t` runs, so a start fails the same way, before anything is bound. */
static int preflight(const struct bth_config *cfg)
{
    struct bth_err err;
    bth_err_init(&err);
    int rc = bth_preflight(cfg, true, &err);
    for (size_t i = 0; i < err.n; i++)
        bth_log(BTH_LOG_ERR, "%s", err.msgs[i]);
    bth_err_fini(&err);
    return rc;
}

int bth_app_start(struct bth_app *app, const char *config_path)
{
    memset(app, 0, sizeof(*app));
    app->accesslog.fd = -1;
    app->reap_fd = -1;
    app->main_thread = pthread_self();
    app->config_path = config_path ? bth_strdup(config_path) : NULL;
    raise_nofile();
    struct bth_config *cfg = load_config(config_path);
    if (cfg == NULL) {
        bth_log(BTH_LOG_ERR, "cannot start: invalid config %s",
                config_path ? config_path : "<default>");
        return -1;
    }
    if (cfg->log_level != NULL)
        bth_log_set_level(cfg->log_level);
    if (preflight(cfg) != 0) {
        bth_config_destroy(cfg);
        return -1;
    }
    struct bth_config_ref *ref = bth_config_ref_create(cfg);
    if (ref == NULL) {
        bth_config_destroy(cfg);
        return -1;
    }
    app->nworkers = resolve_workers(cfg->workers);
    bth_registry_init(&app->registry, app->nworkers);
    app->registry.snapshot_reap = reap_snapshot;
    app->registry.snapshot_reap_arg = app;
    int rc = bth_registry_apply_config(&app->registry, ref);
    bth_config_ref_unref(ref);
    if (rc != 0)
        return -1;
    app->registry.udp_flow_cap = bth_udp_flow_budget(app->registry.config->cfg, app->nworkers);
    if (bth_tls_init() != 0 || load_tls(app, cfg) != 0)
        return -1;
    int e = bth_accesslog_open(&app->accesslog, cfg->access_log);
    if (e != 0) {
        bth_log(BTH_LOG_ERR, "access log %s: open() failed: %s", cfg->access_log, strerror(-e));
        return -1;
    }
    app->base = event_base_new();
    if (app->base == NULL)
        return -1;
    app->reap_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    app->reap_ev = app->reap_fd == -1
                       ? NULL
                       : event_new(app->base, app->reap_fd, EV_READ | EV_PERSIST, on_reap, app);
    if (app->reap_ev == NULL || event_add(app->reap_ev, NULL) != 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        app->signals[i] = evsignal_new(app->base, sigs[i], on_signal, app);
        evsignal_add(app->signals[i], NULL);
    }
    bool state_key;
    if (bth_control_check_socket(cfg->control_socket) != 0)
        return -1; /* before the state file: a second berth must not write it */
    if (load_state(app, cfg, &state_key) != 0 || setup_sticky_key(app, cfg, state_key) != 0)
        return -1;
    /* A fresh key, or a file set aside, is written back at once; a state file that cannot
     * be written would fail every registration, so it fails the start instead. */
    if (bth_app_save_state(app) != 0)
        return -1;
    app->health =
        bth_health_create(app->base, &app->registry, app->nworkers, on_health_changed, app);
    if (app->health == NULL)
        return -1;
    bth_health_sync(app->health);
    static const struct bth_control_ops control_ops = {
        .save_state = control_save_state,
        .apply = control_apply,
        .reload = control_reload,
        .metrics = control_metrics,
        .discovery = control_discovery,
    };
    const struct bth_control_deps deps = {app->base, &app->registry, &control_ops, app};
    app->control = bth_control_start(&deps, cfg->control_socket);
    if (app->control == NULL)
        return -1;
    struct bth_snapshot *snap = bth_registry_build_snapshot(&app->registry);
    if (snap == NULL)
        return -1;
    rc = start_workers(app, cfg, snap);
    bth_snapshot_unref(snap);
    if (rc != 0)
        return -1;
    /* Ticket keys rotate every 12 hours; the previous key still resumes sessions. */
    app->ticket_timer = event_new(app->base, -1, EV_PERSIST, on_ticket_rotation, app);
    struct timeval ttv = {12 * 3600, 0};
    event_add(app->ticket_timer, &ttv);
    app->drain_timer = event_new(app->base, -1, EV_PERSIST, on_drain_timer, app);
    struct timeval dtv = {0, 50 * 1000};
    event_add(app->drain_timer, &dtv);
    app->discovery = bth_discovery_create(app->base, &app->registry, on_discovery_changed, app);
    if (app->discovery == NULL || bth_discovery_sync(app->discovery) != 0)
        return -1;
    if (cfg->pid_file != NULL) {
        if (write_pid_file(cfg->pid_file) != 0)
            return -1;
        app->pid_file_written = true;
    }
    if (drop_privileges(cfg) != 0)
        return -1;
    bth_log(BTH_LOG_NOTICE, "control socket %s", cfg->control_socket);
    bth_log(BTH_LOG_NOTICE, "ready");
    sd_notify_send("READY=1");
    return 0;
}

int bth_app_run(struct bth_app *app)
{
    event_base_dispatch(app->base);
    return app->exit_code;
}

void bth_app_fini(struct bth_app *app)
{
    if (app->pid_file_written && app->registry.config->cfg->pid_file != NULL)
        unlink(app->registry.config->cfg->pid_file);
    /* After a start-up failure the workers run without having been told to stop: a join
     * alone would wait for ever. They stop at once (nothing is in flight yet). */
    for (unsigned i = 0; !app->stopping && app->workers != NULL && i < app->nworkers; i++) {
        if (app->workers[i] != NULL && app->workers[i]->started)
            bth_worker_post(app->workers[i], BTH_MSG_STOP, NULL, 0);
    }
    for (unsigned i = 0; app->workers != NULL && i < app->nworkers; i++) {
        if (app->workers[i] != NULL)
            bth_worker_join_destroy(app->workers[i]);
    }
    bth_free(app->workers);
    if (app->reap_ev != NULL) {
        event_free(app->reap_ev);
        app->reap_ev = NULL; /* from here on a last release frees at once */
    }
    reap_queued(app);
    if (app->reap_fd != -1)
        close(app->reap_fd);
    bth_control_stop(app->control);
    bth_discovery_destroy(app->discovery);
    bth_health_destroy(app->health);
    bth_registry_fini(&app->registry);
    bth_accesslog_close(&app->accesslog);
    for (size_t i = 0; i < sizeof(app->signals) / sizeof(app->signals[0]); i++) {
        if (app->signals[i])
            event_free(app->signals[i]);
    }
    if (app->shutdown_poll)
        event_free(app->shutdown_poll);
    if (app->drain_timer)
        event_free(app->drain_timer);
    if (app->ticket_timer)
        event_free(app->ticket_timer);
    bth_tls_fini();
    if (app->base)
        event_base_free(app->base);
    bth_free(app->config_path);
}
