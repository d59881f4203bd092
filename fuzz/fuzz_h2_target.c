/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: HTTP/2 from targets (h2_upstream.c), end to end on a real worker.
 *
 * The input is what an HTTP/2 target sends after its SETTINGS (which the harness sends
 * first): HEADERS, DATA, trailers, RST_STREAM, GOAWAY, WINDOW_UPDATE, anything. Three
 * HTTP/1.1 clients, each on an AF_UNIX socketpair served by bth_h1_session_accept() on a
 * worker that is never started as a thread (the harness runs its loop), send requests that
 * berth forwards over one HTTP/2 connection to the harness's target socket on 127.0.0.1, in
 * this order, so they are streams 1, 3 and 5 of one connection (one HTTP2 group):
 *   1  GET /a
 *   3  a gRPC call (POST, content-type application/grpc, a 5-byte message): its answer is
 *      framed for trailers whatever its length
 *   5  POST /upload with a 40 KB chunked body (flow control both ways)
 * The snapshot comes from a YAML config through the registry, as app.c builds it.
 *
 * Timing: the reserved bit of a frame header's stream id marks a pause (as in fuzz_h2.c):
 * the bytes up to the end of that frame are sent, the loop runs until nothing is left to do
 * (the clients read berth's answers), then the rest follows.
 *
 * After the input the clients close, the worker's stop and abort run as at shutdown, the
 * target's socket closes, and the harness checks that nothing is left behind: no tracked
 * connection, the snapshot and target reference counts and the in-flight and connection
 * counters back where they were. ASan's leak check covers the rest. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/event.h>

#include "accesslog.h"
#include "config.h"
#include "http_front.h"
#include "http_session.h"
#include "list.h"
#include "log.h"
#include "registry.h"
#include "snapshot.h"
#include "target.h"
#include "worker.h"

#define CONFIG_FMT                                                                                 \
    "workers: 1\n"                                                                                 \
    "access_log: off\n"                                                                            \
    "listeners:\n"                                                                                 \
    "  - name: web\n"                                                                              \
    "    protocol: HTTP\n"                                                                         \
    "    bind: 127.0.0.1:8080\n"                                                                   \
    "    default_action: {forward: {target_group: h2}}\n"                                          \
    "target_groups:\n"                                                                             \
    "  - name: h2\n"                                                                               \
    "    protocol_version: HTTP2\n"                                                                \
    "    health_check: {enabled: false}\n"                                                         \
    "    targets: [\"127.0.0.1:%u\"]\n"

#define NCLIENTS 3

static struct event_base *base;
static struct bth_registry reg;
static struct bth_snapshot *snap;
static struct bth_worker *worker;
static struct bth_worker_listener wl;
static struct bth_accesslog alog = {.fd = -1};
static int snap_refs;
static long target_refs;
static int listen_fd = -1;
static int target_fd = -1; /* the connection berth opened to the target */
static int client_fds[NCLIENTS];
static uint64_t progress;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_h2_target: %s\n", what);
    abort();
}

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_h2_target: after the input: %s\n", what);
        __builtin_trap();
    }
}

static long sum_target_refs(void)
{
    long sum = 0;
    for (size_t g = 0; g < snap->ngroups; g++)
        for (size_t t = 0; t < snap->groups[g].ntargets; t++)
            sum += atomic_load(&snap->groups[g].targets[t]->refcnt);
    return sum;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    const char *lvl = getenv("BERTH_FUZZ_LOG");
    if (bth_log_set_level(lvl != NULL ? lvl : "err") != 0)
        bth_log_set_level("err");
    bth_log_init();
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        listen(listen_fd, 16) != 0 || getsockname(listen_fd, (struct sockaddr *)&sin, &sl) != 0)
        die("target socket");
    unsigned port = ntohs(sin.sin_port);
    char yaml[4096];
    int n = snprintf(yaml, sizeof(yaml), CONFIG_FMT, port);
    if (n < 0 || (size_t)n >= sizeof(yaml))
        die("config text too long");
    struct bth_err err;
    bth_err_init(&err);
    struct bth_config *cfg = bth_config_load_buffer("fuzz_h2_target.yaml", yaml, (size_t)n, &err);
    if (cfg == NULL) {
        for (size_t i = 0; i < err.n; i++)
            fprintf(stderr, "fuzz_h2_target: config: %s\n", err.msgs[i]);
        die("config");
    }
    bth_err_fini(&err);
    struct bth_config_ref *ref = bth_config_ref_create(cfg);
    bth_registry_init(&reg, 1);
    if (ref == NULL || bth_registry_apply_config(&reg, ref) != 0)
        die("registry");
    bth_config_ref_unref(ref);
    if ((snap = bth_registry_build_snapshot(&reg)) == NULL)
        die("snapshot");
    alog.fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    bth_snapshot_ref(snap); /* the worker's */
    worker = bth_worker_create(0, NULL, 0, snap, &alog, NULL, NULL);
    if (worker == NULL)
        die("worker");
    base = worker->base;
    event_del(&worker->sweep_timer);
    event_del(&worker->flush_timer);
    wl.w = worker;
    wl.fd = -1;
    wl.ops = &bth_http_listener_ops;
    wl.index = 0;
    snap_refs = atomic_load(&snap->refcnt);
    target_refs = sum_target_refs();
}

/* Reads and drops what is waiting on <fd>; returns the bytes read. */
static size_t drain(int fd)
{
    size_t total = 0;
    char buf[65536];
    ssize_t n;
    while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0)
        total += (size_t)n;
    return total;
}

/* The target side: takes berth's connection when it comes, and reads what berth sends. */
static void target_poll(void)
{
    if (target_fd < 0) {
        target_fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (target_fd >= 0) {
            static const uint8_t settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
            if (write(target_fd, settings, sizeof(settings)) != sizeof(settings))
                die("target settings");
            progress++;
        }
    }
    if (drain(target_fd) > 0)
        progress++;
    for (int i = 0; i < NCLIENTS; i++) {
        if (drain(client_fds[i]) > 0)
            progress++;
    }
}

static void run_loop(void)
{
    int idle = 0;
    for (int i = 0; i < 10000 && idle < 2; i++) {
        uint64_t before = progress;
        event_base_loop(base, EVLOOP_NONBLOCK);
        target_poll();
        if (progress == before && event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE) == 0)
            idle++;
        else
            idle = 0;
    }
}

/* Sends <n> bytes as the target, running the loop while the socket is full. */
static void target_send(const uint8_t *p, size_t n)
{
    while (n > 0 && target_fd >= 0) {
        ssize_t w = write(target_fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            uint64_t before = progress;
            run_loop();
            if (progress == before)
                return; /* berth reads no more */
            continue;
        }
        return; /* berth closed the connection */
    }
}

static void client_start(int i, const char *req, size_t len)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        die("socketpair");
    client_fds[i] = sv[1];
    if (write(sv[1], req, len) != (ssize_t)len)
        die("client write");
    atomic_fetch_add(&snap->listeners[0].stats->active, 1); /* admit() as worker.c */
    atomic_fetch_add(&bth_active_connections, 1);
    struct sockaddr_storage peer;
    memset(&peer, 0, sizeof(peer));
    struct sockaddr_in *pin = (struct sockaddr_in *)&peer;
    pin->sin_family = AF_INET;
    pin->sin_port = htons((uint16_t)(40000 + i));
    pin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bth_h1_session_accept(worker, &wl, sv[0], &peer);
    run_loop(); /* one stream after another: ids 1, 3, 5 */
}

static void walk(struct bth_list *list, bool abort_them)
{
    struct bth_list *it, *tmp;
    bth_list_foreach_safe(it, tmp, list)
    {
        struct bth_worker_conn *c = bth_list_entry(it, struct bth_worker_conn, link);
        if (abort_them)
            c->ops->abort(c);
        else if (c->ops->stop != NULL)
            c->ops->stop(c);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (worker == NULL)
        setup();
    worker->rand.s = 0x9E3779B97F4A7C15ULL;
    worker->next_conn_id = 0;

    static const char get[] = "GET /a HTTP/1.1\r\nHost: t.example\r\n\r\n";
    static const char call[] = "POST /grpc.Svc/Call HTTP/1.1\r\nHost: t.example\r\n"
                               "Content-Type: application/grpc\r\nContent-Length: 5\r\n\r\n"
                               "\0\0\0\0\0";
    client_start(0, get, sizeof(get) - 1);
    client_start(1, call, sizeof(call) - 1);
    static char upload[41000];
    static size_t upload_len;
    if (upload_len == 0) {
        int n = snprintf(upload, sizeof(upload),
                         "POST /upload HTTP/1.1\r\nHost: t.example\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n9c40\r\n");
        memset(upload + n, 'u', 40000);
        memcpy(upload + n + 40000, "\r\n0\r\n\r\n", 7);
        upload_len = (size_t)n + 40007;
    }
    client_start(2, upload, upload_len);

    /* Segments up to the end of each frame whose reserved bit is set, then the rest. */
    size_t pos = 0, from = 0;
    while (pos + 9 <= size) {
        size_t len = (size_t)data[pos] << 16 | (size_t)data[pos + 1] << 8 | data[pos + 2];
        size_t end = pos + 9 + len;
        if (end > size)
            break;
        if (data[pos + 5] & 0x80) {
            target_send(data + from, end - from);
            run_loop();
            from = end;
        }
        pos = end;
    }
    if (size > from)
        target_send(data + from, size - from);
    run_loop();

    /* The end: the clients go, the worker stops and cuts what is left, the target closes. */
    for (int i = 0; i < NCLIENTS; i++) {
        shutdown(client_fds[i], SHUT_WR);
    }
    run_loop();
    walk(&worker->clients, false);
    run_loop();
    walk(&worker->clients, true);
    walk(&worker->targets, true);
    for (int i = 0; i < NCLIENTS; i++) {
        close(client_fds[i]);
        client_fds[i] = -1;
    }
    if (target_fd >= 0) {
        close(target_fd);
        target_fd = -1;
    }
    int stray;
    while ((stray = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
        close(stray); /* a second connection berth opened (after a GOAWAY) */
    event_base_loop(base, EVLOOP_NONBLOCK);

    check(bth_list_empty(&worker->clients) && bth_list_empty(&worker->swept) &&
              bth_list_empty(&worker->targets) && worker->nclients == 0,
          "a connection is still tracked");
    check(atomic_load(&snap->refcnt) == snap_refs, "snapshot reference count changed");
    check(atomic_load(&bth_active_connections) == 0 &&
              atomic_load(&snap->listeners[0].stats->active) == 0,
          "active connection count not back to 0");
    for (size_t g = 0; g < snap->ngroups; g++) {
        for (size_t t = 0; t < snap->groups[g].ntargets; t++) {
            struct bth_target *tg = snap->groups[g].targets[t];
            check(atomic_load(&tg->outstanding) == 0, "a target's in-flight count is not 0");
            check(atomic_load(&tg->active_conns) == 0, "a target's connection count is not 0");
        }
    }
    check(sum_target_refs() == target_refs, "a target reference was kept");
    return 0;
}
