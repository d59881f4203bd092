/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: HTTP/2 to clients, end to end on a real berth HTTP/2 connection.
 *
 * The input is what an HTTP/2 client sends after the connection preface (which the harness
 * sends first). It goes, on one end of an AF_UNIX socketpair, through the path an h2c
 * client takes: the bytes are read into a struct bth_conn as http_front.c reads them (up to
 * 16 KiB, the preface among them), then bth_h2_session_start() serves it on a real worker
 * (bth_worker_create, never started as a thread: the harness runs its event loop) with a
 * snapshot built by the registry from a YAML config (bth_config_load_buffer), as app.c
 * builds them. Each stream therefore runs berth's HTTP/1 front session: routing, fixed
 * responses, redirects, forwards, retries, stickiness, the access log (to /dev/null).
 *
 * Targets: group "live" is a tiny HTTP/1.1 server inside the harness, on the same event
 * loop (no thread): a listening socket on 127.0.0.1, llhttp parsing each request, and a
 * canned answer chosen by a word in the request target ("/chunked", "/big", "/close",
 * "/short", "/slow", "/reset", "/garbage", "/204", "/304", "/100", "/103", "/101", "/early",
 * "/headers", "/500"; else 200 "ok"), so the fuzzer reaches every way berth turns an
 * HTTP/1.1 answer into HEADERS, DATA and trailers. Group "dead" is 127.0.0.1:1, where
 * nothing listens (connect refused: 502/503).
 *
 * Timing: a client does not send everything at once. The reserved bit of a frame header's
 * stream id (RFC 9113 4.1: "MUST be ignored when receiving"; nghttp2 masks it) marks a
 * pause: the bytes up to the end of that frame are sent, then the loop runs until berth and
 * the target have nothing left to do, then the rest follows. So one input can put a
 * RST_STREAM or a WINDOW_UPDATE before or after the target's answer; berth sees exactly the
 * input's bytes either way.
 *
 * The client reads what berth sends at pauses, when its own sends block, and after the
 * input; not while it sends the last segment, so berth's output piles up (its socket's send
 * buffer is small) and its backpressure runs.
 *
 * After the input: a sweep as the worker's once-a-second timer would run it (ping_interval
 * reached: PING), the loop; a graceful stop (GOAWAY) as at shutdown, the loop; then, by the
 * number of pauses in the input (mod 3), the client's FIN, or nothing, or a second sweep
 * that finds the PING unanswered, the loop; then whatever is left is cut as at the stop
 * deadline (the connections' abort ops, the pooled target connections), the target server's
 * connections are closed, and the harness checks that nothing is left behind: no tracked
 * connection, the snapshot and target reference counts, in-flight and connection counters
 * back where they were. ASan's leak check covers the rest.
 *
 * The event loop is run with EVLOOP_NONBLOCK until a pass finds nothing to do (and the
 * client, when reading, got nothing more). The worker's own timers (sweep, access log
 * flush) are removed so that runs do not depend on the wall clock; berth's timeouts
 * (seconds: idle, header, GOAWAY grace) never fire within one input. The balancer's random
 * generator is reset per input.
 *
 * BERTH_FUZZ_LOG=debug (or info, ...) turns berth's log on; it is off (err) by default.
 * BERTH_FUZZ_H2_DUMP=FILE writes what berth sent to the client (every input, one after the
 * other) to FILE, to look at with an HTTP/2 decoder. */
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
#include <event2/buffer.h>
#include <event2/event.h>
#include <llhttp.h>

#include "accesslog.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "h2_session.h"
#include "http_front.h"
#include "list.h"
#include "log.h"
#include "registry.h"
#include "snapshot.h"
#include "sticky.h"
#include "target.h"
#include "worker.h"

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#define CONFIG_FMT                                                                                 \
    "workers: 1\n"                                                                                 \
    "access_log: off\n"                                                                            \
    "listeners:\n"                                                                                 \
    "  - name: h2\n"                                                                               \
    "    protocol: HTTP\n"                                                                         \
    "    bind: 127.0.0.1:8080\n"                                                                   \
    "    h2c: true\n"                                                                              \
    "    max_request_line: 1k\n"                                                                   \
    "    max_header_size: 2k\n"                                                                    \
    "    http2:\n"                                                                                 \
    "      max_concurrent_streams: 16\n"                                                           \
    "      initial_window_size: 4k\n"                                                              \
    "      max_header_list_size: 3k\n"                                                             \
    "      ping_interval: 1s\n"                                                                    \
    "    rules:\n"                                                                                 \
    "      - priority: 1\n"                                                                        \
    "        conditions: {host: [\"fixed.test\"]}\n"                                               \
    "        action: {fixed_response: {status: 200, content_type: text/plain, body: "              \
    "\"fixed\\n\"}}\n"                                                                             \
    "      - priority: 2\n"                                                                        \
    "        conditions: {path: [\"/redirect*\"]}\n"                                               \
    "        action: {redirect: {protocol: HTTPS, port: \"443\", path: \"/new/#{path}\",\n"        \
    "                            query: \"#{query}&r=1\", status: 302}}\n"                         \
    "      - priority: 3\n"                                                                        \
    "        conditions: {path: [\"/dead*\"]}\n"                                                   \
    "        action: {forward: {target_group: dead}}\n"                                            \
    "      - priority: 4\n"                                                                        \
    "        conditions: {headers: {x-env: [\"canary*\"]}, method: [GET, HEAD]}\n"                 \
    "        action: {fixed_response: {status: 503, content_type: application/json,\n"             \
    "                                  body: \"{\\\"e\\\":1}\"}}\n"                                \
    "      - priority: 5\n"                                                                        \
    "        conditions: {query: {v: [\"2\"]}}\n"                                                  \
    "        action: {forward: {target_groups: [{name: live, weight: 1}, {name: dead, weight: "    \
    "1}]}}\n"                                                                                      \
    "      - priority: 6\n"                                                                        \
    "        conditions: {host: [\"*.sticky.test\"]}\n"                                            \
    "        action: {forward: {target_groups: [{name: live, weight: 3}, {name: dead, weight: "    \
    "1}],\n"                                                                                       \
    "                           stickiness: 1h}}\n"                                                \
    "    default_action: {forward: {target_group: live}}\n"                                        \
    "target_groups:\n"                                                                             \
    "  - name: live\n"                                                                             \
    "    health_check: {enabled: false}\n"                                                         \
    "    stickiness: {type: lb_cookie, duration: 1h}\n"                                            \
    "    targets: [\"127.0.0.1:%u\"]\n"                                                            \
    "  - name: dead\n"                                                                             \
    "    health_check: {enabled: false}\n"                                                         \
    "    targets: [\"127.0.0.1:1\"]\n"

/* ---- the target: an HTTP/1.1 server on the worker's loop ------------------------------------ */

enum answer {
    A_OK = 0,
    A_SLOW,
    A_RESET,
    A_GARBAGE,
    A_CLOSE,
    A_SHORT,
    A_CHUNKED,
    A_BIG,
    A_204,
    A_304,
    A_100,
    A_103,
    A_101,
    A_EARLY,
    A_HEADERS,
    A_500,
};

static const struct {
    const char *word;
    enum answer a;
} answer_words[] = {
    {"/slow", A_SLOW},   {"/reset", A_RESET},     {"/garbage", A_GARBAGE}, {"/close", A_CLOSE},
    {"/short", A_SHORT}, {"/chunked", A_CHUNKED}, {"/big", A_BIG},         {"/204", A_204},
    {"/304", A_304},     {"/100", A_100},         {"/103", A_103},         {"/101", A_101},
    {"/early", A_EARLY}, {"/headers", A_HEADERS}, {"/500", A_500},
};

#define BIG_BODY 100000

struct be_conn {
    struct bth_list link;
    int fd;
    struct event rev, wev;
    llhttp_t p;
    struct evbuffer *out;
    char url[128];
    size_t url_len;
    enum answer a;
    bool answered;    /* this request has its answer (A_EARLY) */
    bool close_after; /* close once out is written */
    bool dead;
};

static struct event_base *base;
static struct bth_list be_conns;
static int be_listen_fd = -1;
static struct event be_listen_ev;
static uint64_t progress; /* bumped by everything the harness sees happen */

static void be_close(struct be_conn *b, bool reset)
{
    if (reset) {
        struct linger lg = {1, 0};
        setsockopt(b->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    event_del(&b->rev);
    event_del(&b->wev);
    close(b->fd);
    evbuffer_free(b->out);
    bth_list_remove(&b->link);
    free(b);
    progress++;
}

static void be_answer(struct be_conn *b)
{
    struct evbuffer *o = b->out;
    b->answered = true;
    switch (b->a) {
    case A_SLOW:
        break; /* never answers: the exchange is in flight when the client goes */
    case A_RESET:
        b->dead = true;
        break;
    case A_GARBAGE:
        evbuffer_add_printf(o, "HTTP/1.1 2x0 Nope\r\nContent-Length: 0\r\n\r\n");
        b->close_after = true;
        break;
    case A_CLOSE:
        evbuffer_add_printf(o, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                               "Connection: close\r\n\r\nuntil the end\n");
        b->close_after = true;
        break;
    case A_SHORT:
        evbuffer_add_printf(o, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
        b->close_after = true;
        break;
    case A_CHUNKED:
        evbuffer_add_printf(o, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                               "Trailer: X-Checksum\r\n\r\n"
                               "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n"
                               "X-Checksum: abc\r\nX-Other: 1\r\n\r\n");
        break;
    case A_BIG: {
        evbuffer_add_printf(o, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BIG_BODY);
        static char chunk[4096];
        memset(chunk, 'b', sizeof(chunk));
        for (int n = 0; n < BIG_BODY; n += (int)sizeof(chunk))
            evbuffer_add(o, chunk,
                         BIG_BODY - n < (int)sizeof(chunk) ? (size_t)(BIG_BODY - n)
                                                           : sizeof(chunk));
        break;
    }
    case A_204:
        evbuffer_add_printf(o, "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n");
        break;
    case A_304:
        evbuffer_add_printf(o, "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n"
                               "Content-Length: 10\r\n\r\n");
        break;
    case A_100:
        evbuffer_add_printf(o, "HTTP/1.1 100 Continue\r\n\r\n"
                               "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        break;
    case A_103:
        evbuffer_add_printf(o, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                               "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        break;
    case A_101:
        evbuffer_add_printf(o, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                               "Upgrade: foo\r\n\r\nfoo bytes");
        break;
    case A_EARLY:
        evbuffer_add_printf(o, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n"
                               "Connection: close\r\n\r\nbig\n");
        b->close_after = true;
        break;
    case A_HEADERS: {
        evbuffer_add_printf(o, "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: "
                               "timeout=5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2; Path=/\r\n"
                               "X-Upper: VALUE\r\nX-Empty:\r\nX-Spaces:  v  \t\r\n"
                               "Upgrade: h2c\r\nProxy-Connection: x\r\nX-Long: ");
        for (int i = 0; i < 2000; i++)
            evbuffer_add(o, "v", 1);
        evbuffer_add_printf(o, "\r\nContent-Length: 0\r\n\r\n");
        break;
    }
    case A_500:
        evbuffer_add_printf(
            o, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops\n");
        break;
    case A_OK:
    default:
        evbuffer_add_printf(o, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 3\r\n\r\nok\n");
        break;
    }
}

static int be_on_begin(llhttp_t *p)
{
    struct be_conn *b = p->data;
    b->url_len = 0;
    b->answered = false;
    b->a = A_OK;
    return 0;
}

static int be_on_url(llhttp_t *p, const char *at, size_t len)
{
    struct be_conn *b = p->data;
    size_t room = sizeof(b->url) - 1 - b->url_len;
    if (len > room)
        len = room;
    memcpy(b->url + b->url_len, at, len);
    b->url_len += len;
    b->url[b->url_len] = '\0';
    return 0;
}

static int be_on_headers_complete(llhttp_t *p)
{
    struct be_conn *b = p->data;
    for (size_t i = 0; i < sizeof(answer_words) / sizeof(answer_words[0]); i++) {
        if (strstr(b->url, answer_words[i].word) != NULL) {
            b->a = answer_words[i].a;
            break;
        }
    }
    if (b->a == A_EARLY)
        be_answer(b); /* before the body */
    return 0;
}

static int be_on_message_complete(llhttp_t *p)
{
    struct be_conn *b = p->data;
    if (!b->answered)
        be_answer(b);
    return b->close_after || b->dead || b->a == A_101 ? HPE_PAUSED : 0;
}

static const llhttp_settings_t be_settings = {
    .on_message_begin = be_on_begin,
    .on_url = be_on_url,
    .on_headers_complete = be_on_headers_complete,
    .on_message_complete = be_on_message_complete,
};

/* Writes what is queued; closes when the answer said so. Returns false when <b> is gone. */
static bool be_flush(struct be_conn *b)
{
    while (evbuffer_get_length(b->out) > 0) {
        int n = evbuffer_write(b->out, b->fd);
        if (n > 0) {
            progress++;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            event_add(&b->wev, NULL);
            return true;
        }
        be_close(b, false); /* berth went away */
        return false;
    }
    if (b->dead) {
        be_close(b, true);
        return false;
    }
    if (b->close_after) {
        be_close(b, false);
        return false;
    }
    return true;
}

static void be_on_io(evutil_socket_t fd, short what, void *arg)
{
    struct be_conn *b = arg;
    if (what & EV_WRITE) {
        if (!be_flush(b))
            return;
        if (evbuffer_get_length(b->out) > 0)
            return;
    }
    if (!(what & EV_READ))
        return;
    char buf[16384];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            be_close(b, false);
            return;
        }
        progress++;
        if (b->close_after || b->dead || b->a == A_101)
            continue; /* answered for good: what follows is dropped */
        llhttp_errno_t err = llhttp_execute(&b->p, buf, (size_t)n);
        if (err != HPE_OK && err != HPE_PAUSED) {
            b->dead = true; /* not HTTP/1.1 as berth should send it */
            break;
        }
    }
    be_flush(b);
}

static void be_on_accept(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
            return;
        progress++;
        struct be_conn *b = calloc(1, sizeof(*b));
        if (b == NULL || (b->out = evbuffer_new()) == NULL) {
            free(b);
            close(cfd);
            continue;
        }
        b->fd = cfd;
        llhttp_init(&b->p, HTTP_REQUEST, &be_settings);
        b->p.data = b;
        event_assign(&b->rev, base, cfd, EV_READ | EV_PERSIST, be_on_io, b);
        event_assign(&b->wev, base, cfd, EV_WRITE, be_on_io, b);
        event_add(&b->rev, NULL);
        bth_list_push(&be_conns, &b->link);
    }
}

/* ---- berth: config, registry, snapshot, worker ---------------------------------------------- */

static struct bth_registry reg;
static struct bth_snapshot *snap; /* the harness's own reference */
static struct bth_worker *worker;
static struct bth_worker_listener wl;
static struct bth_accesslog alog = {.fd = -1};
static int snap_refs;    /* the snapshot's reference count between inputs */
static long target_refs; /* the sum of the targets' reference counts between inputs */

static long sum_target_refs(void)
{
    long sum = 0;
    for (size_t g = 0; g < snap->ngroups; g++)
        for (size_t t = 0; t < snap->groups[g].ntargets; t++)
            sum += atomic_load(&snap->groups[g].targets[t]->refcnt);
    return sum;
}

static void die(const char *what)
{
    fprintf(stderr, "fuzz_h2: %s\n", what);
    abort();
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* as app.c */
    const char *lvl = getenv("BERTH_FUZZ_LOG");
    if (bth_log_set_level(lvl != NULL ? lvl : "err") != 0)
        bth_log_set_level("err");
    bth_log_init();
    uint8_t key[BTH_STICKY_KEY_BYTES];
    memset(key, 0x5a, sizeof(key));
    bth_sticky_set_key(key);

    /* the target server's socket first: its port goes into the config */
    be_listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    if (be_listen_fd < 0 || bind(be_listen_fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        listen(be_listen_fd, 1024) != 0 ||
        getsockname(be_listen_fd, (struct sockaddr *)&sin, &sl) != 0)
        die("target socket");

    char yaml[8192];
    int n = snprintf(yaml, sizeof(yaml), CONFIG_FMT, (unsigned)ntohs(sin.sin_port));
    if (n < 0 || (size_t)n >= sizeof(yaml))
        die("config text too long");
    struct bth_err err;
    bth_err_init(&err);
    struct bth_config *cfg = bth_config_load_buffer("fuzz_h2.yaml", yaml, (size_t)n, &err);
    if (cfg == NULL) {
        for (size_t i = 0; i < err.n; i++)
            fprintf(stderr, "fuzz_h2: config: %s\n", err.msgs[i]);
        die("config");
    }
    bth_err_fini(&err);
    struct bth_config_ref *ref = bth_config_ref_create(cfg);
    bth_registry_init(&reg, 1);
    if (ref == NULL || bth_registry_apply_config(&reg, ref) != 0)
        die("registry");
    bth_config_ref_unref(ref);
    snap = bth_registry_build_snapshot(&reg);
    if (snap == NULL)
        die("snapshot");

    alog.fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    bth_snapshot_ref(snap); /* the worker's */
    worker = bth_worker_create(0, NULL, 0, snap, &alog, NULL, NULL);
    if (worker == NULL)
        die("worker");
    base = worker->base;
    /* No wall-clock timers: the harness sweeps and flushes itself. */
    event_del(&worker->sweep_timer);
    event_del(&worker->flush_timer);

    wl.w = worker;
    wl.fd = -1; /* the harness hands connections over itself */
    wl.ops = &bth_http_listener_ops;
    wl.index = 0;

    bth_list_init(&be_conns);
    event_assign(&be_listen_ev, base, be_listen_fd, EV_READ | EV_PERSIST, be_on_accept, NULL);
    event_add(&be_listen_ev, NULL);
    snap_refs = atomic_load(&snap->refcnt);
    target_refs = sum_target_refs();
}

/* ---- one input ---------------------------------------------------------------------------- */

static int client_fd = -1;
static int dump_fd = -2; /* BERTH_FUZZ_H2_DUMP: a file that gets what berth sent */

/* Reads and drops what berth wrote to the client. Returns the bytes read. */
static size_t drain_client(void)
{
    size_t total = 0;
    char buf[65536];
    for (;;) {
        ssize_t n = read(client_fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        total += (size_t)n;
        if (dump_fd >= 0 && write(dump_fd, buf, (size_t)n) < 0)
            die("dump");
    }
    if (total > 0)
        progress++;
    return total;
}

/* Runs the loop until a pass finds nothing to do. <reading>: the client reads (and drops)
 * what berth writes meanwhile; otherwise berth's output piles up in the socket and then in
 * its own buffers, as with a client busy sending. */
static void run_loop(bool reading)
{
    int idle = 0;
    for (int i = 0; i < 10000 && idle < 2; i++) {
        uint64_t before = progress;
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (reading)
            drain_client();
        if (progress == before && event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE) == 0)
            idle++;
        else
            idle = 0;
    }
}

/* Sends <n> bytes as the client; while the socket is full it reads berth's answers, as a
 * client must to avoid a deadlock. */
static void client_send(const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(client_fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            uint64_t before = progress;
            run_loop(true);
            if (progress == before)
                return; /* berth reads no more (closed, or holds its input back) */
            continue;
        }
        return; /* berth closed the connection */
    }
}

/* The worker's own walk over its connections (worker.c close_list, on_sweep_timer). */
enum walk { W_SWEEP, W_STOP, W_ABORT };

static void walk(struct bth_list *list, enum walk how, uint64_t now)
{
    struct bth_list *it, *tmp;
    bth_list_foreach_safe(it, tmp, list)
    {
        struct bth_worker_conn *c = bth_list_entry(it, struct bth_worker_conn, link);
        if (how == W_SWEEP && c->ops->sweep != NULL)
            c->ops->sweep(c, now);
        else if (how == W_STOP && c->ops->stop != NULL)
            c->ops->stop(c);
        else if (how == W_ABORT)
            c->ops->abort(c);
    }
}

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_h2: after the input: %s\n", what);
        __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (worker == NULL)
        setup();
    if (dump_fd == -2) {
        const char *dump = getenv("BERTH_FUZZ_H2_DUMP");
        dump_fd = dump != NULL ? open(dump, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    }
    /* the same choices for the same input */
    worker->rand.s = 0x9E3779B97F4A7C15ULL; /* bth_rand_seed reads getrandom() */
    worker->next_conn_id = 0;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        die("socketpair");
    client_fd = sv[1];

    /* Segments: up to the end of each frame whose reserved bit is set (a pause), then the
     * rest. */
    size_t cut[64], ncut = 0, pos = 0, npauses = 0;
    while (pos + 9 <= size) {
        size_t len = (size_t)data[pos] << 16 | (size_t)data[pos + 1] << 8 | data[pos + 2];
        size_t end = pos + 9 + len;
        if (end > size)
            break;
        if (data[pos + 5] & 0x80) {
            npauses++;
            if (ncut < sizeof(cut) / sizeof(cut[0]) - 1)
                cut[ncut++] = end;
        }
        pos = end;
    }
    if (ncut == 0 || cut[ncut - 1] != size)
        cut[ncut++] = size;

    /* As http_front.c: the connection's first bytes (the preface and what came with it) are
     * read, then the connection goes to HTTP/2. The client is 127.0.0.1 (h1_describe_peer
     * reads AF_INET or AF_INET6). A small send buffer on berth's side makes a client that
     * does not read felt early. */
    int sndbuf = 16384;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    size_t first = cut[0];
    uint8_t *buf = malloc(sizeof(PREFACE) - 1 + first);
    if (buf == NULL)
        die("malloc");
    memcpy(buf, PREFACE, sizeof(PREFACE) - 1);
    if (first > 0)
        memcpy(buf + sizeof(PREFACE) - 1, data, first);
    size_t sent = first;
    ssize_t w = write(client_fd, buf, sizeof(PREFACE) - 1 + first);
    free(buf);
    if (w < 0)
        die("write");
    if ((size_t)w < sizeof(PREFACE) - 1 + first)
        sent = (size_t)w < sizeof(PREFACE) - 1 ? 0 : (size_t)w - (sizeof(PREFACE) - 1);

    atomic_fetch_add(&snap->listeners[0].stats->active, 1); /* admit() as worker.c */
    atomic_fetch_add(&bth_active_connections, 1);
    struct bth_conn c;
    if (bth_conn_init(&c, base, sv[0], NULL, NULL) != 0)
        die("bth_conn_init");
    bth_conn_read(&c, 16384);
    struct sockaddr_storage peer;
    memset(&peer, 0, sizeof(peer));
    struct sockaddr_in *pin = (struct sockaddr_in *)&peer;
    pin->sin_family = AF_INET;
    pin->sin_port = htons(40000);
    pin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bth_h2_session_start(worker, &wl, &c, &peer);

    /* The client sends segment after segment; it reads berth's answers at pauses only. */
    for (size_t i = 0; i < ncut; i++) {
        size_t from = i == 0 ? sent : cut[i - 1];
        if (cut[i] > from)
            client_send(data + from, cut[i] - from);
        run_loop(i + 1 < ncut);
    }
    run_loop(true);

    /* The end, by the number of pauses: 0) the client closes (FIN) once berth's GOAWAY
     * came; 1) it stays silent and the stop deadline cuts the connection; 2) it does not
     * answer berth's PING and the sweep closes the connection. */
    uint64_t now = bth_clock_mono_ms();
    walk(&worker->swept, W_SWEEP, now + 1000); /* ping_interval (1s): PING */
    run_loop(true);
    walk(&worker->clients, W_STOP, 0); /* graceful stop: GOAWAY, open streams finish */
    walk(&worker->swept, W_STOP, 0);
    run_loop(true);
    if (npauses % 3 == 0) {
        shutdown(client_fd, SHUT_WR);
        run_loop(true);
    } else if (npauses % 3 == 2) {
        walk(&worker->swept, W_SWEEP, now + 2500); /* no answer to PING in 2 intervals */
        run_loop(true);
    }
    /* The stop deadline: what is left is cut, clients first, then pooled target
     * connections (worker.c worker_main). */
    walk(&worker->clients, W_ABORT, 0);
    walk(&worker->swept, W_ABORT, 0);
    walk(&worker->targets, W_ABORT, 0);
    bth_accesslog_flush(&worker->alog);
    close(client_fd);
    client_fd = -1;
    struct bth_list *it, *tmp;
    bth_list_foreach_safe(it, tmp, &be_conns)
    {
        be_close(bth_list_entry(it, struct be_conn, link), false);
    }
    /* Nothing may be left: an event would fire on freed memory next time. */
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
