/* SPDX-License-Identifier: MIT */
/* `berth ctl`: a small HTTP/1.1 client for the control socket, so containers need no curl
 * for their stop hooks and health checks. Single-threaded, one process per command. People
 * get tables and one-line messages; --json prints the API's bodies untouched for scripts.
 * Every API error becomes "berth ctl: <Code>: <Message>" on stderr and exit status 1. */
#include "ctl.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>
#include <llhttp.h>

#include "config.h"
#include "mem.h"

#define EXIT_USAGE 2
#define READ_CHUNK 65536

struct ctl {
    const char *sock; /* borrowed: argv or the environment */
    bool json;        /* --json: print response bodies as they came */
};

static const char usage_text[] =
    "usage: berth ctl [-s SOCKET] [--json] COMMAND\n"
    "  groups                              list target groups\n"
    "  health [GROUP]                      target health of one group or of all\n"
    "  register GROUP TARGET...            TARGET: 10.0.1.5:8080, [fd00::5]:8080 or\n"
    "  deregister [--wait] GROUP TARGET...         Id=10.0.1.5,Port=8080\n"
    "  metrics | healthz | reload | config\n"
    "SOCKET defaults to $BERTH_SOCKET, then ./berth.sock.\n";

static int usage(void)
{
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}

static const char *default_socket(void)
{
    const char *env = getenv("BERTH_SOCKET");
    return env && *env ? env : "./berth.sock";
}

int bth_ctl_parse_target(const char *s, char *id, unsigned idsz, unsigned *port)
{
    const char *ip = NULL, *p = NULL;
    size_t iplen = 0;
    if (strncmp(s, "Id=", 3) == 0) {
        ip = s + 3;
        const char *comma = strchr(ip, ',');
        if (comma == NULL || strncmp(comma, ",Port=", 6) != 0)
            return -1;
        iplen = (size_t)(comma - ip);
        p = comma + 6;
    } else if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        ip = s + 1;
        iplen = (size_t)(end - ip);
        p = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        /* "fd00::5:8080" is ambiguous: IPv6 needs the brackets. */
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
            return -1;
        ip = s;
        iplen = (size_t)(colon - s);
        p = colon + 1;
    }
    char *endp;
    long v = strtol(p, &endp, 10);
    if (!isdigit((unsigned char)*p) || iplen == 0 || iplen >= idsz || *endp != '\0' || v < 1 ||
        v > 65535)
        return -1;
    memcpy(id, ip, iplen);
    id[iplen] = '\0';
    *port = (unsigned)v;
    struct bth_addr a;
    return bth_addr_from_ip_port(id, *port, &a);
}

/* ------------------------------------------------------------------------------------ */
/* Response parsing */

void bth_ctl_resp_fini(struct bth_ctl_resp *resp)
{
    bth_free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

/* What the llhttp callbacks collect from one response. */
struct collect {
    char *body; /* owned until handed to the response */
    size_t len, cap;
    bool done;
    bool oom;
};

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct collect *c = p->data;
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 256;
        while (cap < c->len + n + 1)
            cap *= 2;
        char *b = bth_realloc(c->body, cap);
        if (b == NULL) {
            c->oom = true;
            return -1;
        }
        c->body = b;
        c->cap = cap;
    }
    memcpy(c->body + c->len, at, n);
    c->len += n;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    ((struct collect *)p->data)->done = true;
    return HPE_PAUSED; /* one response: what follows is not ours */
}

/* The control client reads one response per connection, so each call parses the bytes
 * received so far from the start with llhttp (framing, chunked decoding and trailers are
 * llhttp's, as on the data plane). */
int bth_ctl_parse_response(const char *buf, size_t len, bool eof, struct bth_ctl_resp *resp)
{
    llhttp_settings_t settings;
    llhttp_settings_init(&settings);
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    llhttp_t p;
    llhttp_init(&p, HTTP_RESPONSE, &settings);
    llhttp_set_lenient_chunked_length(&p, 1); /* RFC 9112 6.3: chunked wins over a length */
    struct collect c = {0};
    p.data = &c;
    enum llhttp_errno e = llhttp_execute(&p, buf, len);
    if (e == HPE_OK && eof && !c.done)
        e = llhttp_finish(&p); /* a body delimited by the close ends here */
    if (!c.done || (e != HPE_OK && e != HPE_PAUSED) || c.oom) {
        bth_free(c.body);
        return (e == HPE_OK && !eof && !c.oom) ? 0 : -1;
    }
    if (c.body == NULL && (c.body = bth_malloc(1)) == NULL)
        return -1;
    c.body[c.len] = '\0';
    resp->status = p.status_code;
    resp->body = c.body;
    resp->body_len = c.len;
    return 1;
}

/* ------------------------------------------------------------------------------------ */
/* The exchange */

/* Connects to the control socket; prints why not and returns -1 on failure. */
static int connect_socket(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "berth ctl: socket path too long (at most %zu bytes): %s\n",
                sizeof(sun.sun_path) - 1, path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        fprintf(stderr, "berth ctl: socket() failed: %s\n", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
        int e = errno;
        /* The two errors of "nothing listens there": say how to point elsewhere. */
        bool absent = e == ENOENT || e == ECONNREFUSED;
        fprintf(stderr, "berth ctl: cannot connect to %s: %s%s\n", path, strerror(e),
                absent ? " (is berth running? use -s SOCKET or BERTH_SOCKET)" : "");
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        /* MSG_NOSIGNAL: berth going away mid-request is an error message, not SIGPIPE. */
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w == -1 && errno == EINTR)
            continue;
        if (w == -1)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until the response is complete or the server closes (the request said
 * "Connection: close", so it will). Returns 0 with <resp> filled, or -1. */
static int read_response(int fd, struct bth_ctl_resp *resp)
{
    size_t cap = READ_CHUNK, len = 0;
    char *buf = bth_malloc(cap);
    int rc = -1;
    if (buf == NULL)
        goto out;
    for (;;) {
        if (cap - len < READ_CHUNK / 2) {
            char *nb = bth_realloc(buf, cap * 2);
            if (nb == NULL)
                goto out;
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            fprintf(stderr, "berth ctl: read() failed: %s\n", strerror(errno));
            goto out;
        }
        len += (size_t)r;
        rc = bth_ctl_parse_response(buf, len, r == 0, resp);
        if (rc != 0)
            break;
    }
    if (rc < 0)
        fprintf(stderr, "berth ctl: malformed or truncated response from berth\n");
out:
    bth_free(buf);
    return rc == 1 ? 0 : -1;
}

/* Prints a failed call as "berth ctl: <Code>: <Message>", the API's error shape. */
static void print_api_error(const struct bth_ctl_resp *resp)
{
    json_t *root = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *code = NULL, *msg = NULL;
    if (json_unpack(root, "{s:{s:s,s:s}}", "Error", "Code", &code, "Message", &msg) == 0) {
        fprintf(stderr, "berth ctl: %s: %s\n", code, msg);
    } else {
        size_t n = strcspn(resp->body, "\r\n");
        fprintf(stderr, "berth ctl: HTTP %d%s%.*s\n", resp->status, n ? ": " : "",
                (int)(n > 200 ? 200 : n), resp->body);
    }
    json_decref(root);
}

/* One request. Returns 0 with a 2xx response in <resp> (the caller finis it), or -1 after
 * printing why: berth unreachable, a broken answer, or the API's error. */
static int call(const struct ctl *c, const char *method, const char *path, const char *body,
                struct bth_ctl_resp *resp)
{
    char head[512];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     method, path, blen);
    if (n < 0 || (size_t)n >= sizeof(head)) {
        fprintf(stderr, "berth ctl: request path too long\n");
        return -1;
    }
    *resp = (struct bth_ctl_resp){0};
    int fd = connect_socket(c->sock);
    if (fd == -1)
        return -1;
    int rc = -1;
    if (send_all(fd, head, (size_t)n) != 0 || send_all(fd, body, blen) != 0)
        fprintf(stderr, "berth ctl: send() to %s failed: %s\n", c->sock, strerror(errno));
    else
        rc = read_response(fd, resp);
    close(fd);
    if (rc == 0 && (resp->status < 200 || resp->status > 299)) {
        print_api_error(resp);
        rc = -1;
    }
    if (rc != 0)
        bth_ctl_resp_fini(resp);
    return rc;
}

/* Like call(), then parses the body as JSON into <*out> (owned by the caller). */
static int call_json(const struct ctl *c, const char *method, const char *path, const char *body,
                     struct bth_ctl_resp *resp, json_t **out)
{
    if (call(c, method, path, body, resp) != 0)
        return -1;
    json_error_t jerr;
    *out = json_loadb(resp->body, resp->body_len, 0, &jerr);
    if (*out == NULL) {
        fprintf(stderr, "berth ctl: invalid JSON from berth: %s\n", jerr.text);
        bth_ctl_resp_fini(resp);
        return -1;
    }
    return 0;
}

/* Writes a body as it came, ending with a newline. */
static void print_raw(const struct bth_ctl_resp *resp)
{
    fwrite(resp->body, 1, resp->body_len, stdout);
    if (resp->body_len > 0 && resp->body[resp->body_len - 1] != '\n')
        putchar('\n');
}

/* ------------------------------------------------------------------------------------ */
/* Tables */

int bth_ctl_print_table(FILE *out, const char *const *head, size_t ncols, const char *const *cells,
                        size_t nrows)
{
    size_t width[BTH_CTL_TABLE_MAX_COLS];
    if (ncols == 0 || ncols > BTH_CTL_TABLE_MAX_COLS)
        return -1;
    for (size_t j = 0; j < ncols; j++) {
        width[j] = strlen(head[j]);
        for (size_t i = 0; i < nrows; i++) {
            const char *s = cells[i * ncols + j];
            size_t w = s ? strlen(s) : 1;
            width[j] = w > width[j] ? w : width[j];
        }
    }
    for (size_t i = 0; i <= nrows; i++) {
        const char *const *row = i == 0 ? head : cells + (i - 1) * ncols;
        for (size_t j = 0; j < ncols; j++) {
            const char *s = row[j] ? row[j] : "-";
            if (j + 1 < ncols)
                fprintf(out, "%-*s  ", (int)width[j], s);
            else
                fprintf(out, "%s\n", s);
        }
    }
    return 0;
}

/* Table cells collected row-major before printing, so widths can follow the data. */
struct cells {
    char **v; /* owned, each owned; NULL entries print "-" */
    size_t n, cap;
    bool oom;
};

static void cells_add(struct cells *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends one cell; a NULL <fmt> adds an empty ("-") one. */
static void cells_add(struct cells *t, const char *fmt, ...)
{
    char *s = NULL;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        char **nv = bth_realloc(t->v, cap * sizeof(*nv));
        if (nv == NULL) {
            t->oom = true;
            return;
        }
        t->v = nv;
        t->cap = cap;
    }
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        s = n >= 0 ? bth_malloc((size_t)n + 1) : NULL;
        if (s == NULL) {
            t->oom = true;
            return;
        }
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    t->v[t->n++] = s;
}

/* Appends a JSON scalar as a cell: strings as is, numbers in decimal, absent or null as "-". */
static void cells_add_json(struct cells *t, const json_t *v)
{
    if (json_is_string(v))
        cells_add(t, "%s", json_string_value(v));
    else if (json_is_integer(v))
        cells_add(t, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_true(v) || json_is_false(v))
        cells_add(t, "%s", json_is_true(v) ? "true" : "false");
    else
        cells_add(t, NULL);
}

static void cells_fini(struct cells *t)
{
    for (size_t i = 0; i < t->n; i++)
        bth_free(t->v[i]);
    bth_free(t->v);
    *t = (struct cells){0};
}

/* Prints the collected rows under <head>, then frees them. Returns the exit status. */
static int cells_print(struct cells *t, const char *const *head, size_t ncols)
{
    int rc = 0;
    if (t->oom) {
        fprintf(stderr, "berth ctl: out of memory\n");
        rc = 1;
    } else {
        bth_ctl_print_table(stdout, head, ncols, (const char *const *)t->v, t->n / ncols);
    }
    cells_fini(t);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Commands: each returns the exit status */

/* Group names go into the request path as they are; config.c allows only these. */
static bool valid_group_name(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 128 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static int bad_group(const char *s)
{
    fprintf(stderr, "berth ctl: invalid target group name \"%s\"\n", s);
    return EXIT_USAGE;
}

static int print_json(const json_t *v, size_t flags)
{
    char *text = json_dumps(v, flags);
    if (text == NULL) {
        fprintf(stderr, "berth ctl: out of memory\n");
        return 1;
    }
    puts(text);
    free(text); /* jansson's allocator: plain malloc */
    return 0;
}

static int cmd_groups(const struct ctl *c, int argc, char **argv)
{
    static const char *const head[] = {"NAME", "PROTOCOL", "ALGORITHM", "TARGETS", "HEALTHY"};
    struct bth_ctl_resp resp;
    json_t *root;
    if (argc != 0)
        return usage();
    if (call_json(c, "GET", "/v1/target-groups", NULL, &resp, &root) != 0)
        return 1;
    int rc = 0;
    if (c->json) {
        print_raw(&resp);
    } else {
        struct cells t = {0};
        size_t i;
        json_t *g;
        json_array_foreach(json_object_get(root, "TargetGroups"), i, g)
        {
            cells_add_json(&t, json_object_get(g, "TargetGroupName"));
            cells_add_json(&t, json_object_get(g, "Protocol"));
            cells_add_json(&t, json_object_get(g, "Algorithm"));
            cells_add_json(&t, json_object_get(g, "Targets"));
            cells_add_json(&t, json_object_get(g, "HealthyTargets"));
        }
        rc = cells_print(&t, head, 5);
    }
    json_decref(root);
    bth_ctl_resp_fini(&resp);
    return rc;
}

/* GROUP leads only when `health` lists every group. */
static const char *const health_head[] = {"GROUP",  "TARGET",      "STATE",
                                          "REASON", "DESCRIPTION", "SOURCE"};

/* Adds a row per entry of a health answer, led by <group> when not NULL. */
static void add_health_rows(struct cells *t, const char *group, const json_t *root)
{
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(root, "TargetHealthDescriptions"), i, d)
    {
        json_t *tg = json_object_get(d, "Target"), *th = json_object_get(d, "TargetHealth");
        const char *id = json_string_value(json_object_get(tg, "Id"));
        json_int_t port = json_integer_value(json_object_get(tg, "Port"));
        if (group != NULL)
            cells_add(t, "%s", group);
        if (id == NULL)
            cells_add(t, NULL);
        else if (strchr(id, ':') != NULL) /* IPv6: brackets keep the port apart */
            cells_add(t, "[%s]:%" JSON_INTEGER_FORMAT, id, port);
        else
            cells_add(t, "%s:%" JSON_INTEGER_FORMAT, id, port);
        cells_add_json(t, json_object_get(th, "State"));
        cells_add_json(t, json_object_get(th, "Reason"));
        cells_add_json(t, json_object_get(th, "Description"));
        cells_add_json(t, json_object_get(d, "Source"));
    }
}

/* Under the table: a group that fails open sends traffic to unhealthy targets, which the
 * rows alone do not say. */
static void print_fail_open(const char *group, const json_t *root)
{
    if (json_is_true(json_object_get(root, "FailOpen")))
        printf("target group %s is failing open: no target is healthy, so traffic goes to "
               "all of them\n",
               group);
}

static int fetch_health(const struct ctl *c, const char *group, struct bth_ctl_resp *resp,
                        json_t **out)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/target-groups/%s/health", group);
    return call_json(c, "GET", path, NULL, resp, out);
}

static int health_one(const struct ctl *c, const char *group)
{
    struct bth_ctl_resp resp;
    json_t *root;
    if (!valid_group_name(group))
        return bad_group(group);
    if (fetch_health(c, group, &resp, &root) != 0)
        return 1;
    int rc = 0;
    if (c->json) {
        print_raw(&resp);
    } else {
        struct cells t = {0};
        add_health_rows(&t, NULL, root);
        rc = cells_print(&t, health_head + 1, 5);
        print_fail_open(group, root);
    }
    json_decref(root);
    bth_ctl_resp_fini(&resp);
    return rc;
}

/* `health` without GROUP: one call per group. --json prints {"<group>": <its answer>}. */
static int health_all(const struct ctl *c)
{
    struct bth_ctl_resp resp;
    json_t *groups, *all = json_object();
    if (call_json(c, "GET", "/v1/target-groups", NULL, &resp, &groups) != 0) {
        json_decref(all);
        return 1;
    }
    bth_ctl_resp_fini(&resp);
    struct cells t = {0};
    int rc = 0;
    size_t i;
    json_t *g, *h;
    json_array_foreach(json_object_get(groups, "TargetGroups"), i, g)
    {
        const char *name = json_string_value(json_object_get(g, "TargetGroupName"));
        if (name == NULL)
            continue;
        if (fetch_health(c, name, &resp, &h) != 0) {
            rc = 1;
            break;
        }
        bth_ctl_resp_fini(&resp);
        add_health_rows(&t, name, h);
        json_object_set_new(all, name, h);
    }
    if (rc == 0)
        rc = c->json ? print_json(all, JSON_COMPACT) : cells_print(&t, health_head, 6);
    const char *name;
    json_object_foreach(all, name, h)
    {
        if (rc == 0 && !c->json)
            print_fail_open(name, h);
    }
    cells_fini(&t);
    json_decref(all);
    json_decref(groups);
    return rc;
}

static int cmd_health(const struct ctl *c, int argc, char **argv)
{
    if (argc > 1)
        return usage();
    return argc == 1 ? health_one(c, argv[0]) : health_all(c);
}

/* {"Targets":[{"Id","Port"}...]} from TARGET arguments, checked beforehand. NULL when out
 * of memory. */
static json_t *targets_body(int argc, char **argv, bool wait)
{
    json_t *arr = json_array();
    for (int i = 0; i < argc; i++) {
        char id[64];
        unsigned port;
        bth_ctl_parse_target(argv[i], id, sizeof(id), &port);
        json_array_append_new(arr, json_pack("{s:s,s:i}", "Id", id, "Port", (int)port));
    }
    json_t *root = json_pack("{s:o}", "Targets", arr);
    if (root != NULL && wait)
        json_object_set_new(root, "Wait", json_true());
    return root;
}

/* register / deregister: <argv> is GROUP TARGET... */
static int targets_call(const struct ctl *c, const char *verb, bool wait, int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (!valid_group_name(argv[0]))
        return bad_group(argv[0]);
    for (int i = 1; i < argc; i++) {
        char id[64];
        unsigned port;
        if (bth_ctl_parse_target(argv[i], id, sizeof(id), &port) != 0) {
            fprintf(stderr,
                    "berth ctl: invalid target \"%s\" (expected 10.0.1.5:8080, "
                    "[fd00::5]:8080 or Id=10.0.1.5,Port=8080)\n",
                    argv[i]);
            return EXIT_USAGE;
        }
    }
    json_t *root = targets_body(argc - 1, argv + 1, wait);
    char *body = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (body == NULL) {
        fprintf(stderr, "berth ctl: out of memory\n");
        return 1;
    }
    char path[256];
    snprintf(path, sizeof(path), "/v1/target-groups/%s/%s", argv[0], verb);
    struct bth_ctl_resp resp;
    int rc = call(c, "POST", path, body, &resp);
    free(body); /* jansson's allocator: plain malloc */
    if (rc != 0)
        return 1;
    if (c->json)
        print_raw(&resp);
    else if (strcmp(verb, "register") == 0)
        printf("registered %d target(s) in %s\n", argc - 1, argv[0]);
    else
        printf("%s %d target(s) from %s\n", wait ? "drained" : "deregistered", argc - 1, argv[0]);
    bth_ctl_resp_fini(&resp);
    return 0;
}

static int cmd_register(const struct ctl *c, int argc, char **argv)
{
    return targets_call(c, "register", false, argc, argv);
}

static int cmd_deregister(const struct ctl *c, int argc, char **argv)
{
    bool wait = argc > 0 && strcmp(argv[0], "--wait") == 0;
    return targets_call(c, "deregister", wait, argc - wait, argv + wait);
}

/* GET <path> and print the body as it came: metrics and healthz are text. */
static int get_raw(const struct ctl *c, const char *path, int argc)
{
    struct bth_ctl_resp resp;
    if (argc != 0)
        return usage();
    if (call(c, "GET", path, NULL, &resp) != 0)
        return 1;
    print_raw(&resp);
    bth_ctl_resp_fini(&resp);
    return 0;
}

static int cmd_metrics(const struct ctl *c, int argc, char **argv)
{
    return get_raw(c, "/metrics", argc);
}

static int cmd_healthz(const struct ctl *c, int argc, char **argv)
{
    return get_raw(c, "/healthz", argc);
}

/* Prints the answer: "reloaded" for an empty object, else the JSON indented. */
static int cmd_reload(const struct ctl *c, int argc, char **argv)
{
    struct bth_ctl_resp resp;
    if (argc != 0)
        return usage();
    if (call(c, "POST", "/v1/reload", NULL, &resp) != 0)
        return 1;
    json_t *root = c->json ? NULL : json_loadb(resp.body, resp.body_len, 0, NULL);
    int rc = 0;
    if (root == NULL)
        print_raw(&resp);
    else if (json_is_object(root) && json_object_size(root) == 0)
        puts("reloaded");
    else
        rc = print_json(root, JSON_INDENT(2));
    json_decref(root);
    bth_ctl_resp_fini(&resp);
    return rc;
}

static int cmd_config(const struct ctl *c, int argc, char **argv)
{
    struct bth_ctl_resp resp;
    json_t *root;
    if (argc != 0)
        return usage();
    if (call_json(c, "GET", "/v1/config", NULL, &resp, &root) != 0)
        return 1;
    int rc = 0;
    if (c->json)
        print_raw(&resp);
    else
        rc = print_json(root, JSON_INDENT(2));
    json_decref(root);
    bth_ctl_resp_fini(&resp);
    return rc;
}

static const struct {
    const char *name;
    int (*run)(const struct ctl *c, int argc, char **argv);
} commands[] = {
    {"groups", cmd_groups},         {"health", cmd_health},   {"register", cmd_register},
    {"deregister", cmd_deregister}, {"metrics", cmd_metrics}, {"healthz", cmd_healthz},
    {"reload", cmd_reload},         {"config", cmd_config},
};

int bth_ctl_main(int argc, char **argv)
{
    struct ctl c = {.sock = default_socket()};
    int i = 0;
    /* Options come before the command, in any order: `-s SOCK --json` or `--json -s SOCK`. */
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            c.json = true;
        } else if (strcmp(argv[i], "-s") == 0) {
            if (i + 1 == argc) {
                fprintf(stderr, "berth ctl: -s needs a SOCKET path\n");
                return usage();
            }
            c.sock = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            fprintf(stderr, "berth ctl: unknown option \"%s\"\n", argv[i]);
            return usage();
        }
    }
    if (i == argc)
        return usage();
    for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
        if (strcmp(argv[i], commands[k].name) == 0)
            return commands[k].run(&c, argc - i - 1, argv + i + 1);
    fprintf(stderr, "berth ctl: unknown command \"%s\"\n", argv[i]);
    return usage();
}
