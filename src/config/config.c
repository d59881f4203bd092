/* SPDX-License-Identifier: MIT */
/* Main thread only. Loads the YAML config (libyaml document API) into a struct bth_config.
 * Each mapping kind is a key table (struct section) walked by one generic loop, so unknown,
 * duplicate and missing keys, types and ranges are checked alike everywhere. Errors are
 * collected rather than fatal, so `berth -t` shows them all; a config is returned only
 * when there were none. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "log.h"
#include "mem.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define SEC_MS        1000ULL
#define MIN_MS        (60 * SEC_MS)
#define HOUR_MS       (60 * MIN_MS)
#define DAY_MS        (24 * HOUR_MS)
#define KIB           1024ULL
#define MIB           (1024 * KIB)
#define PBIT(p)       (1u << (p))

#define MAX_CONFIG_BYTES (64 * MIB) /* refuse absurd files before libyaml chews on them */
#define MAX_FIXED_BODY   1024       /* ALB's fixed-response limit */

/* Keep in sync with conf/berth.yaml, which spells the same config out with comments. */
const char bth_config_default_yaml[] = "control:\n"
                                       "  socket: ./berth.sock\n"
                                       "listeners:\n"
                                       "  - protocol: HTTP\n"
                                       "    bind: 0.0.0.0:8080\n"
                                       "    default_action: {forward: {target_group: default}}\n"
                                       "target_groups:\n"
                                       "  - name: default\n"
                                       "    protocol: HTTP\n";

/* ------------------------------------------------------------------------------------ */
/* Value parsers */

/* Reads decimal digits into <out>. Returns the first byte after them, or NULL when there
 * are none or the value overflows. Signs and spaces are not accepted. */
static const char *scan_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return NULL;
        v = v * 10 + d;
    }
    *out = v;
    return p == s ? NULL : p;
}

static int parse_u64(const char *s, uint64_t *out)
{
    const char *end = scan_u64(s, out);
    return end != NULL && *end == '\0' ? 0 : -1;
}

struct unit {
    const char *suffix;
    uint64_t mul;
};

/* Applies the unit named by <sfx> (case-insensitive) to <v>; -1 on unknown unit or overflow. */
static int apply_unit(const struct unit *u, size_t n, const char *sfx, uint64_t v, uint64_t *out)
{
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(sfx, u[i].suffix) != 0)
            continue;
        if (v > UINT64_MAX / u[i].mul)
            return -1;
        *out = v * u[i].mul;
        return 0;
    }
    return -1;
}

int bth_parse_duration_ms(const char *s, uint64_t *out)
{
    static const struct unit units[] = {
        {"ms", 1}, {"s", SEC_MS}, {"m", MIN_MS}, {"h", HOUR_MS}, {"d", DAY_MS},
    };
    uint64_t v;
    const char *end = scan_u64(s, &v);
    if (end == NULL)
        return -1;
    /* A bare number is ambiguous (30 what?), except 0, which is 0 in every unit. */
    if (*end == '\0') {
        *out = 0;
        return v == 0 ? 0 : -1;
    }
    return apply_unit(units, ARRAY_SIZE(units), end, v, out);
}

int bth_parse_size(const char *s, size_t *out)
{
    static const struct unit units[] = {{"", 1}, {"k", KIB}, {"m", MIB}, {"g", 1024 * MIB}};
    uint64_t v, bytes;
    const char *end = scan_u64(s, &v);
    if (end == NULL || apply_unit(units, ARRAY_SIZE(units), end, v, &bytes) < 0 || bytes > SIZE_MAX)
        return -1;
    *out = (size_t)bytes;
    return 0;
}

/* Port: 1..65535, digits only. */
static int parse_port(const char *s, unsigned *out)
{
    uint64_t v;
    if (parse_u64(s, &v) < 0 || v < 1 || v > 65535)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* "10.0.0.0/8", "fd00::/8": a numeric address and a prefix length that fits its family. */
static int parse_cidr(const char *s)
{
    const char *slash = strchr(s, '/');
    unsigned char bin[sizeof(struct in6_addr)];
    char ip[INET6_ADDRSTRLEN];
    uint64_t bits;
    if (slash == NULL || (size_t)(slash - s) >= sizeof(ip) || parse_u64(slash + 1, &bits) < 0)
        return -1;
    memcpy(ip, s, (size_t)(slash - s));
    ip[slash - s] = '\0';
    if (inet_pton(AF_INET, ip, bin) == 1)
        return bits <= 32 ? 0 : -1;
    if (inet_pton(AF_INET6, ip, bin) == 1)
        return bits <= 128 ? 0 : -1;
    return -1;
}

/* Health check matcher: "200", "200-399", "200,302", or a mix; codes <min>..<max> (HTTP
 * 200..599, gRPC 0..99). */
static int parse_matcher(const char *s, uint64_t min, uint64_t max)
{
    for (;;) {
        uint64_t lo, hi;
        s = scan_u64(s, &lo);
        if (s == NULL || lo < min || lo > max)
            return -1;
        hi = lo;
        if (*s == '-' && ((s = scan_u64(s + 1, &hi)) == NULL || hi < lo || hi > max))
            return -1;
        if (*s == '\0')
            return 0;
        if (*s++ != ',')
            return -1;
    }
}

static const char *const proto_names[] = {"HTTP", "HTTPS", "TCP", "TLS", "UDP", "TCP_UDP"};
static const char *const alg_names[] = {"round_robin", "least_outstanding_requests",
                                        "weighted_random", "flow_hash"};

const char *bth_proto_name(enum bth_proto p)
{
    return (size_t)p < ARRAY_SIZE(proto_names) ? proto_names[p] : "?";
}

static const char *const pv_names[] = {"HTTP1", "HTTP2", "GRPC"};

const char *bth_proto_version_name(enum bth_proto_version v)
{
    return (size_t)v < ARRAY_SIZE(pv_names) ? pv_names[v] : "?";
}

const char *bth_algorithm_name(enum bth_algorithm a)
{
    return (size_t)a < ARRAY_SIZE(alg_names) ? alg_names[a] : "?";
}

static bool is_l7(enum bth_proto p)
{
    return p == BTH_PROTO_HTTP || p == BTH_PROTO_HTTPS;
}

/* ------------------------------------------------------------------------------------ */
/* Walking the document */

struct ctx {
    const char *file;
    const char *buf; /* the YAML text, to place reader errors */
    size_t len;
    struct bth_err *err; /* borrowed, may be NULL */
    unsigned nerrors;
    yaml_document_t *doc;
    enum bth_proto_version group_pv; /* of the target group being read (its matcher) */
};

static struct bth_cfg_mark mark_of(const yaml_node_t *n)
{
    return (struct bth_cfg_mark){(int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
}

static void errat(struct ctx *c, struct bth_cfg_mark m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errat(struct ctx *c, struct bth_cfg_mark m, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Messages echo config values and end up on terminals: no control bytes. */
    for (char *p = msg; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    c->nerrors++;
    if (c->err != NULL)
        bth_err_add(c->err, "%s:%d:%d: %s", c->file, m.line, m.col, msg);
}

#define err_node(c, n, ...) errat((c), mark_of(n), __VA_ARGS__)

static yaml_node_t *node(struct ctx *c, int index)
{
    return yaml_document_get_node(c->doc, index);
}

/* A plain empty, "~" or "null" scalar: the key is treated as absent (the default applies). */
static bool is_null(const yaml_node_t *n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    for (size_t i = 0; i < ARRAY_SIZE(nulls); i++)
        if (strcmp((const char *)n->data.scalar.value, nulls[i]) == 0)
            return true;
    return false;
}

static const char *scalar(struct ctx *c, yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE) {
        err_node(c, n, "expected a scalar");
        return NULL;
    }
    const char *s = (const char *)n->data.scalar.value;
    /* "\0" in a double-quoted scalar would silently cut the C string short. */
    if (strlen(s) != n->data.scalar.length) {
        err_node(c, n, "unexpected NUL character");
        return NULL;
    }
    return s;
}

static bool seq_of(struct ctx *c, yaml_node_t *n, yaml_node_item_t **items, size_t *count)
{
    if (n->type != YAML_SEQUENCE_NODE) {
        err_node(c, n, "expected a sequence");
        return false;
    }
    *items = n->data.sequence.items.start;
    *count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    return true;
}

/* Zeroed array of <n> items; NULL for n == 0, or after reporting out of memory at <at>. */
static void *alloc_items(struct ctx *c, yaml_node_t *at, size_t n, size_t size)
{
    if (n == 0)
        return NULL;
    void *p = bth_calloc(n, size);
    if (p == NULL)
        err_node(c, at, "out of memory");
    return p;
}

/* Replaces the owned string at <dst> with a copy of <s>. */
static void set_str(struct ctx *c, yaml_node_t *at, char **dst, const char *s)
{
    bth_free(*dst);
    *dst = bth_strdup(s);
    if (*dst == NULL)
        err_node(c, at, "out of memory");
}

/* ------------------------------------------------------------------------------------ */
/* Key tables */

/* An enum's accepted spellings, indexed by enum value; NULL slots are not accepted. */
struct enumdef {
    const char *const *names;
    size_t n;
    const char *expect; /* for messages: "HTTP, HTTPS or TCP" */
};

static const struct enumdef proto_enum = {proto_names, 6, "HTTP, HTTPS, TCP, TLS, UDP or TCP_UDP"};
static const struct enumdef hc_proto_enum = {proto_names, 3, "HTTP, HTTPS or TCP"};
static const struct enumdef pv_enum = {pv_names, 3, "HTTP1, HTTP2 or GRPC"};
static const struct enumdef alg_enum = {
    alg_names, 4, "round_robin, least_outstanding_requests, weighted_random or flow_hash"};
static const char *const sticky_names[] = {NULL, "lb_cookie", "app_cookie", "source_ip"};
static const struct enumdef sticky_enum = {sticky_names, 4, "lb_cookie, app_cookie or source_ip"};
static const char *const level_names[] = {"err", "warn", "notice", "info", "debug"};
static const struct enumdef level_enum = {level_names, 5, "err, warn, notice, info or debug"};

static int enum_index(const struct enumdef *en, const char *s)
{
    for (size_t i = 0; i < en->n; i++)
        if (en->names[i] != NULL && strcasecmp(s, en->names[i]) == 0)
            return (int)i;
    return -1;
}

enum ftype { F_STR, F_BOOL, F_UINT, F_INT, F_DUR, F_SIZE, F_ENUM, F_ADDR, F_FN };

enum {
    REQ = 1,      /* the key must be present */
    ZERO_OK = 2,  /* F_DUR: 0 is accepted besides min..max (slow_start) */
    EMPTY_OK = 4, /* F_STR: "" is a value (redirect query, fixed body) */
};

/* A custom value handler: <v> is the non-null value node, <dst> the table's base + off. */
typedef void (*field_cb)(struct ctx *c, yaml_node_t *v, void *dst);

struct field {
    const char *key;
    enum ftype type;
    size_t off;   /* into the struct the section fills */
    uint64_t min; /* F_UINT, F_INT, F_DUR (ms), F_SIZE (bytes) */
    uint64_t max; /* same; F_STR: maximum length, 0 = any */
    unsigned flags;
    const struct enumdef *en; /* F_ENUM: stored as the enum's value */
    field_cb fn;              /* F_FN */
};

/* clang-format off */
#define F(k, t, o, lo, hi, fl) {.key = k, .type = t, .off = o, .min = lo, .max = hi, .flags = fl}
#define FE(k, o, e, fl) {.key = k, .type = F_ENUM, .off = o, .en = e, .flags = fl}
#define FN(k, o, f, fl) {.key = k, .type = F_FN, .off = o, .fn = f, .flags = fl}
/* clang-format on */

struct section {
    const char *what; /* names the mapping in messages: "unknown key "x" in listener" */
    const struct field *fields;
    size_t n;
};

#define SECTION(name, what, fields)                                                                \
    static const struct section name = {what, fields, ARRAY_SIZE(fields)}

_Static_assert(sizeof(enum bth_proto) == sizeof(unsigned), "enums are stored as unsigned");

static void fmt_value(enum ftype t, uint64_t v, char *buf, size_t len)
{
    static const char *const sfx[] = {"", "k", "m", "g"};
    size_t i = 0;
    if (t == F_DUR) {
        snprintf(buf, len, v % SEC_MS == 0 ? "%llus" : "%llums",
                 (unsigned long long)(v % SEC_MS == 0 ? v / SEC_MS : v));
        return;
    }
    while (t == F_SIZE && i < 3 && v != 0 && v % 1024 == 0) {
        v /= 1024;
        i++;
    }
    snprintf(buf, len, "%llu%s", (unsigned long long)v, sfx[i]);
}

static int check_range(struct ctx *c, yaml_node_t *v, const struct field *f, const char *s,
                       uint64_t x)
{
    char lo[32], hi[32];
    if ((x >= f->min && x <= f->max) || (x == 0 && (f->flags & ZERO_OK)))
        return 0;
    fmt_value(f->type, f->min, lo, sizeof(lo));
    fmt_value(f->type, f->max, hi, sizeof(hi));
    err_node(c, v, "%s %s is out of range (%s%s..%s)", f->key, s,
             (f->flags & ZERO_OK) ? "0 or " : "", lo, hi);
    return -1;
}

/* Stores the non-null value <v> of field <f> at <dst>. */
static void set_field(struct ctx *c, const struct field *f, yaml_node_t *v, void *dst)
{
    if (f->type == F_FN) {
        f->fn(c, v, dst);
        return;
    }
    const char *s = scalar(c, v);
    uint64_t u;
    size_t sz;
    int i;
    if (s == NULL)
        return;
    switch (f->type) {
    case F_STR:
        if (*s == '\0' && !(f->flags & EMPTY_OK))
            err_node(c, v, "expected a non-empty string");
        else if (f->max != 0 && strlen(s) > f->max)
            err_node(c, v, "%s is %zu bytes long, at most %llu allowed", f->key, strlen(s),
                     (unsigned long long)f->max);
        else
            set_str(c, v, dst, s);
        break;
    case F_BOOL:
        if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
            *(int *)dst = 1;
        else if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
            *(int *)dst = 0;
        else
            err_node(c, v, "expected true or false");
        break;
    case F_UINT:
    case F_INT:
        if (parse_u64(s, &u) < 0)
            err_node(c, v, "expected an integer");
        else if (check_range(c, v, f, s, u) < 0)
            break;
        else if (f->type == F_UINT)
            *(unsigned *)dst = (unsigned)u;
        else
            *(int *)dst = (int)u; /* the tables' ranges fit an int */
        break;
    case F_DUR:
        if (bth_parse_duration_ms(s, &u) < 0)
            err_node(c, v, "invalid duration \"%s\" (expected e.g. 500ms, 30s, 5m, 1h, 1d)", s);
        else if (check_range(c, v, f, s, u) == 0)
            *(uint64_t *)dst = u;
        break;
    case F_SIZE:
        if (bth_parse_size(s, &sz) < 0)
            err_node(c, v, "invalid size \"%s\" (expected e.g. 512, 16k, 1m)", s);
        else if (check_range(c, v, f, s, sz) == 0)
            *(size_t *)dst = sz;
        break;
    case F_ENUM:
        if ((i = enum_index(f->en, s)) < 0)
            err_node(c, v, "invalid %s \"%s\" (expected %s)", f->key, s, f->en->expect);
        else
            *(unsigned *)dst = (unsigned)i;
        break;
    case F_ADDR:
        if (bth_parse_addr(s, dst) < 0)
            err_node(c, v, "invalid address \"%s\"", s);
        break;
    case F_FN:
        break;
    }
}

static const struct field *find_field(const struct section *s, const char *key)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->fields[i].key, key) == 0)
            return &s->fields[i];
    return NULL;
}

/* Walks mapping <n> against section <s>, storing values into <base>. Reports unknown,
 * duplicate and missing keys. Returns the keys given a non-null value (bit i = field i);
 * 0 after reporting that <n> is not a mapping. */
static uint64_t parse_map(struct ctx *c, yaml_node_t *n, const struct section *s, void *base)
{
    uint64_t present = 0, seen = 0;
    if (n->type != YAML_MAPPING_NODE) {
        err_node(c, n, "expected a mapping");
        return 0;
    }
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(c, p->key), *v = node(c, p->value);
        const char *key = scalar(c, k);
        const struct field *f = key != NULL ? find_field(s, key) : NULL;
        if (key != NULL && f == NULL)
            err_node(c, k, "unknown key \"%s\" in %s", key, s->what);
        if (f == NULL)
            continue;
        uint64_t bit = 1ULL << (f - s->fields);
        if (present & bit) {
            err_node(c, k, "duplicate key \"%s\" in %s", key, s->what);
            continue;
        }
        present |= bit;
        if (is_null(v)) {
            if (f->flags & REQ)
                err_node(c, v, "missing value for \"%s\"", key);
            continue;
        }
        seen |= bit;
        set_field(c, f, v, (char *)base + f->off);
    }
    for (size_t i = 0; i < s->n; i++)
        if ((s->fields[i].flags & REQ) && !(present & (1ULL << i)))
            err_node(c, n, "missing key \"%s\" in %s", s->fields[i].key, s->what);
    return seen;
}

/* A single scalar or a non-empty sequence of scalars; <valid> (optional) vets each one and
 * <what> names it in the message. */
static void get_strlist(struct ctx *c, yaml_node_t *v, struct bth_strlist *out,
                        int (*valid)(const char *), const char *what)
{
    yaml_node_item_t *items = NULL;
    size_t n = 1;
    if (v->type != YAML_SCALAR_NODE && !seq_of(c, v, &items, &n))
        return;
    if (n == 0) {
        err_node(c, v, "expected at least one value");
        return;
    }
    if ((out->v = alloc_items(c, v, n, sizeof(*out->v))) == NULL)
        return;
    out->n = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = items == NULL ? v : node(c, items[i]);
        const char *s = scalar(c, item);
        if (s != NULL && *s == '\0')
            err_node(c, item, "expected a non-empty string");
        else if (s != NULL && valid != NULL && valid(s) < 0)
            err_node(c, item, "invalid %s \"%s\"", what, s);
        else if (s != NULL)
            set_str(c, item, &out->v[i], s);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Generic handlers */

static void on_strlist(struct ctx *c, yaml_node_t *v, void *dst)
{
    get_strlist(c, v, dst, NULL, NULL);
}

static void on_cidrs(struct ctx *c, yaml_node_t *v, void *dst)
{
    get_strlist(c, v, dst, parse_cidr, "CIDR");
}

/* A URL path: health check and redirect paths must be absolute. */
static void on_path(struct ctx *c, yaml_node_t *v, void *dst)
{
    const char *s = scalar(c, v);
    if (s != NULL && s[0] != '/')
        err_node(c, v, "path must start with \"/\"");
    else if (s != NULL)
        set_str(c, v, dst, s);
}

/* ------------------------------------------------------------------------------------ */
/* Actions */

#define TR(m) offsetof(struct bth_cfg_tg_ref, m)

static void on_ref_name(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_tg_ref *ref = dst;
    const char *s = scalar(c, v);
    if (s != NULL)
        set_str(c, v, &ref->name, s);
    ref->mark = mark_of(v); /* unknown-group errors point here, found after all groups */
}

static const struct field tg_ref_fields[] = {
    FN("name", 0, on_ref_name, REQ),
    F("weight", F_UINT, TR(weight), 0, 999, 0),
};
SECTION(tg_ref_sec, "target group reference", tg_ref_fields);

/* Rejects a group named twice in one forward; the earlier refs are already filled. */
static void check_ref_dup(struct ctx *c, const struct bth_cfg_action *a, size_t i)
{
    for (size_t j = 0; a->groups[i].name != NULL && j < i; j++)
        if (a->groups[j].name != NULL && strcmp(a->groups[i].name, a->groups[j].name) == 0)
            errat(c, a->groups[i].mark, "duplicate target group \"%s\" in forward",
                  a->groups[i].name);
}

static void on_tg_refs(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_action *a = dst;
    yaml_node_item_t *items;
    size_t n;
    /* Groups already set: target_group came first, and on_forward reports both. */
    if (a->groups != NULL || !seq_of(c, v, &items, &n))
        return;
    if (n == 0) {
        err_node(c, v, "expected at least one target group");
        return;
    }
    if ((a->groups = alloc_items(c, v, n, sizeof(*a->groups))) == NULL)
        return;
    a->ngroups = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node(c, items[i]);
        a->groups[i].weight = 1;
        a->groups[i].mark = mark_of(item);
        parse_map(c, item, &tg_ref_sec, &a->groups[i]);
        check_ref_dup(c, a, i);
    }
}

/* forward: {target_group: NAME}, shorthand for one group of weight 1. */
static void on_tg_ref_short(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_action *a = dst;
    if (a->groups != NULL || scalar(c, v) == NULL)
        return;
    if ((a->groups = alloc_items(c, v, 1, sizeof(*a->groups))) == NULL)
        return;
    a->ngroups = 1;
    a->groups[0].weight = 1;
    on_ref_name(c, v, &a->groups[0]);
}

static const struct field forward_fields[] = {
    FN("target_groups", 0, on_tg_refs, 0),
    FN("target_group", 0, on_tg_ref_short, 0),
    F("stickiness", F_DUR, offsetof(struct bth_cfg_action, stickiness_ms), SEC_MS, 7 * DAY_MS, 0),
};
SECTION(forward_sec, "forward", forward_fields);

static void on_forward(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_action *a = dst;
    a->type = BTH_ACTION_FORWARD;
    uint64_t seen = parse_map(c, v, &forward_sec, a) & 3;
    if (v->type == YAML_MAPPING_NODE && seen == 0)
        err_node(c, v, "forward needs target_groups or target_group");
    else if (seen == 3)
        err_node(c, v, "forward takes target_groups or target_group, not both");
}

static void on_redirect_protocol(struct ctx *c, yaml_node_t *v, void *dst)
{
    const char *s = scalar(c, v);
    if (s == NULL)
        return;
    if (strcasecmp(s, "HTTP") == 0 || strcasecmp(s, "HTTPS") == 0)
        set_str(c, v, dst, strlen(s) == 4 ? "HTTP" : "HTTPS");
    else if (strcmp(s, "#{protocol}") == 0)
        set_str(c, v, dst, s);
    else
        err_node(c, v, "invalid protocol \"%s\" (expected HTTP, HTTPS or #{protocol})", s);
}

static void on_redirect_port(struct ctx *c, yaml_node_t *v, void *dst)
{
    const char *s = scalar(c, v);
    unsigned port;
    if (s != NULL && strcmp(s, "#{port}") != 0 && parse_port(s, &port) < 0)
        err_node(c, v, "invalid port \"%s\" (expected 1..65535 or #{port})", s);
    else if (s != NULL)
        set_str(c, v, dst, s);
}

static void on_redirect_status(struct ctx *c, yaml_node_t *v, void *dst)
{
    const char *s = scalar(c, v);
    if (s != NULL && strcmp(s, "301") != 0 && strcmp(s, "302") != 0)
        err_node(c, v, "redirect status must be 301 or 302");
    else if (s != NULL)
        *(int *)dst = atoi(s);
}

#define AC(m) offsetof(struct bth_cfg_action, m)

static const struct field redirect_fields[] = {
    FN("protocol", AC(redirect_protocol), on_redirect_protocol, 0),
    F("host", F_STR, AC(redirect_host), 0, 0, 0),
    FN("port", AC(redirect_port), on_redirect_port, 0),
    FN("path", AC(redirect_path), on_path, 0),
    F("query", F_STR, AC(redirect_query), 0, 0, EMPTY_OK),
    FN("status", AC(redirect_status), on_redirect_status, 0),
};
SECTION(redirect_sec, "redirect", redirect_fields);

/* True when <s> leaves that URL component as the request had it. */
static bool keeps(const char *s, const char *dflt)
{
    return s == NULL || strcmp(s, dflt) == 0;
}

static void on_redirect(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_action *a = dst;
    unsigned before = c->nerrors;
    a->type = BTH_ACTION_REDIRECT;
    a->redirect_status = 301;
    parse_map(c, v, &redirect_sec, a);
    /* Every component kept: the client would be sent back to the URL it asked for. */
    if (c->nerrors == before && keeps(a->redirect_protocol, "#{protocol}") &&
        keeps(a->redirect_host, "#{host}") && keeps(a->redirect_port, "#{port}") &&
        keeps(a->redirect_path, "/#{path}") && keeps(a->redirect_query, "#{query}"))
        err_node(c, v,
                 "redirect would loop: change at least one of protocol, host, port, "
                 "path or query");
}

static const struct field fixed_fields[] = {
    F("status", F_INT, AC(fixed_status), 200, 599, REQ),
    F("content_type", F_STR, AC(fixed_content_type), 0, 0, 0),
    F("body", F_STR, AC(fixed_body), 0, MAX_FIXED_BODY, EMPTY_OK),
};
SECTION(fixed_sec, "fixed_response", fixed_fields);

static void on_fixed(struct ctx *c, yaml_node_t *v, void *dst)
{
    ((struct bth_cfg_action *)dst)->type = BTH_ACTION_FIXED_RESPONSE;
    parse_map(c, v, &fixed_sec, dst);
}

static const struct field action_fields[] = {
    FN("forward", 0, on_forward, 0),
    FN("redirect", 0, on_redirect, 0),
    FN("fixed_response", 0, on_fixed, 0),
};
SECTION(action_sec, "action", action_fields);

static void on_action(struct ctx *c, yaml_node_t *v, void *dst)
{
    uint64_t seen = parse_map(c, v, &action_sec, dst);
    if (v->type == YAML_MAPPING_NODE && seen == 0)
        err_node(c, v, "action needs one of forward, redirect or fixed_response");
    else if ((seen & (seen - 1)) != 0)
        err_node(c, v, "action takes only one of forward, redirect or fixed_response");
}

/* ------------------------------------------------------------------------------------ */
/* Listeners */

/* headers: {x-env: [...]}, query: {version: "2"}: a key and its OR-ed values. */
static void get_kvlist(struct ctx *c, yaml_node_t *v, struct bth_cfg_kv_cond **out, size_t *nout)
{
    if (v->type != YAML_MAPPING_NODE) {
        err_node(c, v, "expected a mapping");
        return;
    }
    yaml_node_pair_t *pairs = v->data.mapping.pairs.start;
    size_t n = (size_t)(v->data.mapping.pairs.top - pairs);
    if (n == 0)
        err_node(c, v, "expected at least one entry");
    if ((*out = alloc_items(c, v, n, sizeof(**out))) == NULL)
        return;
    *nout = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *k = node(c, pairs[i].key);
        const char *key = scalar(c, k);
        if (key != NULL && *key == '\0')
            err_node(c, k, "expected a non-empty string");
        else if (key != NULL)
            set_str(c, k, &(*out)[i].key, key);
        for (size_t j = 0; (*out)[i].key != NULL && j < i; j++)
            if ((*out)[j].key != NULL && strcmp((*out)[i].key, (*out)[j].key) == 0)
                err_node(c, k, "duplicate key \"%s\"", key);
        get_strlist(c, node(c, pairs[i].value), &(*out)[i].values, NULL, NULL);
    }
}

static void on_headers(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_rule *r = dst;
    get_kvlist(c, v, &r->headers, &r->nheaders);
}

static void on_query(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_rule *r = dst;
    get_kvlist(c, v, &r->query, &r->nquery);
}

#define RU(m) offsetof(struct bth_cfg_rule, m)

static const struct field cond_fields[] = {
    FN("host", RU(host), on_strlist, 0),
    FN("path", RU(path), on_strlist, 0),
    FN("method", RU(method), on_strlist, 0),
    FN("headers", 0, on_headers, 0),
    FN("query", 0, on_query, 0),
    FN("source_ip", RU(source_ip), on_cidrs, 0),
};
SECTION(cond_sec, "conditions", cond_fields);

static void on_conditions(struct ctx *c, yaml_node_t *v, void *dst)
{
    /* As ALB: a rule without conditions would shadow the default action. */
    if (parse_map(c, v, &cond_sec, dst) == 0 && v->type == YAML_MAPPING_NODE)
        err_node(c, v,
                 "conditions need at least one of host, path, method, headers, query "
                 "or source_ip");
}

static const struct field rule_fields[] = {
    F("priority", F_UINT, RU(priority), 1, 50000, REQ),
    FN("conditions", 0, on_conditions, REQ),
    FN("action", RU(action), on_action, REQ),
};
SECTION(rule_sec, "rule", rule_fields);

static int rule_cmp(const void *a, const void *b)
{
    const struct bth_cfg_rule *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    return x->mark.line < y->mark.line ? -1 : x->mark.line > y->mark.line;
}

static void on_rules(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_listener *l = dst;
    yaml_node_item_t *items;
    size_t n;
    if (!is_l7(l->protocol)) {
        err_node(c, v, "rules are only for HTTP and HTTPS listeners");
        return;
    }
    if (!seq_of(c, v, &items, &n) || (l->rules = alloc_items(c, v, n, sizeof(*l->rules))) == NULL)
        return;
    l->nrules = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node(c, items[i]);
        l->rules[i].mark = mark_of(item);
        parse_map(c, item, &rule_sec, &l->rules[i]);
    }
    /* First match wins in ascending priority; equal priorities would make that ambiguous. */
    qsort(l->rules, n, sizeof(*l->rules), rule_cmp);
    for (size_t i = 1; i < n; i++)
        if (l->rules[i].priority != 0 && l->rules[i].priority == l->rules[i - 1].priority)
            errat(c, l->rules[i].mark, "duplicate rule priority %u (also at line %d)",
                  l->rules[i].priority, l->rules[i - 1].mark.line);
}

#define CE(m) offsetof(struct bth_cfg_cert, m)

static const struct field cert_fields[] = {
    F("cert", F_STR, CE(cert), 0, 0, REQ),
    F("key", F_STR, CE(key), 0, 0, REQ),
};
SECTION(cert_sec, "certificate", cert_fields);

static void on_certificates(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_listener *l = dst;
    yaml_node_item_t *items;
    size_t n;
    if (l->protocol != BTH_PROTO_HTTPS && l->protocol != BTH_PROTO_TLS) {
        err_node(c, v, "certificates are only for HTTPS and TLS listeners");
        return;
    }
    if (!seq_of(c, v, &items, &n) ||
        (l->certificates = alloc_items(c, v, n, sizeof(*l->certificates))) == NULL)
        return;
    l->ncertificates = n;
    for (size_t i = 0; i < n; i++)
        parse_map(c, node(c, items[i]), &cert_sec, &l->certificates[i]);
}

static void on_default_action(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_listener *l = dst;
    unsigned before = c->nerrors;
    on_action(c, v, &l->default_action);
    /* NLB listeners have no rules and no HTTP to answer with: one plain forward. */
    if (c->nerrors == before && !is_l7(l->protocol) &&
        (l->default_action.type != BTH_ACTION_FORWARD || l->default_action.ngroups != 1))
        err_node(c, v, "%s listeners can only forward to one target group",
                 bth_proto_name(l->protocol));
}

#define LI(m) offsetof(struct bth_cfg_listener, m)
#define H2(m) offsetof(struct bth_cfg_http2, m)

static const struct field http2_fields[] = {
    F("enabled", F_BOOL, H2(enabled), 0, 0, 0),
    F("max_concurrent_streams", F_UINT, H2(max_concurrent_streams), 1, 100000, 0),
    F("initial_window_size", F_SIZE, H2(initial_window_size), 1, 2147483647, 0),
    F("max_frame_size", F_SIZE, H2(max_frame_size), 16384, 16777215, 0),
    F("max_header_list_size", F_SIZE, H2(max_header_list_size), 1024, 16 * MIB, 0),
    F("ping_interval", F_DUR, H2(ping_interval_ms), 0, HOUR_MS, 0),
};
SECTION(http2_sec, "http2", http2_fields);

/* "http2: false" or a mapping of settings (with "enabled"). */
static void on_http2(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_listener *l = dst;
    if (!is_l7(l->protocol)) {
        err_node(c, v, "http2 is only for HTTP and HTTPS listeners");
        return;
    }
    l->http2.mark = mark_of(v);
    if (v->type == YAML_SCALAR_NODE) {
        static const struct field enabled = F("http2", F_BOOL, 0, 0, 0, 0);
        set_field(c, &enabled, v, &l->http2.enabled);
        return;
    }
    parse_map(c, v, &http2_sec, &l->http2);
}

static void on_h2c(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_listener *l = dst;
    static const struct field h2c = F("h2c", F_BOOL, 0, 0, 0, 0);
    if (l->protocol != BTH_PROTO_HTTP) {
        err_node(c, v, "h2c is only for HTTP listeners (HTTPS listeners offer h2 by ALPN)");
        return;
    }
    set_field(c, &h2c, v, &l->h2c);
}

static const char *const desync_names[] = {"defensive", "monitor", "strictest"};
static const struct enumdef desync_enum = {desync_names, 3, "monitor, defensive or strictest"};
/* In the order of enum bth_path_norm. */
static const char *const path_norm_names[] = {"on", "off", "merge_slashes"};
static const struct enumdef path_norm_enum = {path_norm_names, 3, "on, off or merge_slashes"};

static const struct field listener_fields[] = {
    F("name", F_STR, LI(name), 0, 0, 0),
    FE("protocol", LI(protocol), &proto_enum, 0),
    F("bind", F_ADDR, LI(bind), 0, 0, REQ),
    F("reuse_port", F_BOOL, LI(reuse_port), 0, 0, 0),
    F("idle_timeout", F_DUR, LI(idle_timeout_ms), SEC_MS, 7 * DAY_MS, 0),
    F("header_timeout", F_DUR, LI(header_timeout_ms), 100, HOUR_MS, 0),
    F("body_timeout", F_DUR, LI(body_timeout_ms), 100, HOUR_MS, 0),
    F("min_body_rate", F_UINT, LI(min_body_rate), 0, 1000000000, 0),
    F("max_request_line", F_SIZE, LI(max_request_line_bytes), 64, MIB, 0),
    F("max_header_size", F_SIZE, LI(max_header_bytes), 256, 16 * MIB, 0),
    F("udp_max_flows", F_UINT, LI(udp_max_flows), 1, 10000000, 0),
    F("max_header_line", F_SIZE, LI(max_header_line_bytes), 64, 16 * MIB, 0),
    F("max_response_header_size", F_SIZE, LI(max_response_header_bytes), 1024, 16 * MIB, 0),
    F("max_connections", F_UINT, LI(max_connections), 0, 100000000, 0),
    FE("desync_mitigation_mode", LI(desync_mode), &desync_enum, 0),
    FE("path_normalization", LI(path_norm), &path_norm_enum, 0),
    FN("h2c", 0, on_h2c, 0),
    FN("http2", 0, on_http2, 0),
    FN("certificates", 0, on_certificates, 0),
    F("ssl_policy", F_STR, LI(ssl_policy), 0, 0, 0),
    FN("rules", 0, on_rules, 0),
    FN("default_action", 0, on_default_action, REQ),
};
SECTION(listener_sec, "listener", listener_fields);

/* The value of enum key <key> in mapping <n>, read ahead of its other keys because their
 * defaults depend on it: 0 when absent or invalid (parse_map reports the latter). */
static int enum_hint(struct ctx *c, yaml_node_t *n, const char *key, const struct enumdef *en)
{
    if (n->type != YAML_MAPPING_NODE)
        return 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(c, p->key), *v = node(c, p->value);
        if (k->type == YAML_SCALAR_NODE && v->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, key) == 0) {
            int i = enum_index(en, (const char *)v->data.scalar.value);
            return i < 0 ? 0 : i;
        }
    }
    return 0;
}

/* The protocol a listener or group declares (HTTP when none). */
static enum bth_proto proto_hint(struct ctx *c, yaml_node_t *n)
{
    return (enum bth_proto)enum_hint(c, n, "protocol", &proto_enum);
}

/* The protocol_version a group declares (HTTP1 when none). */
static enum bth_proto_version pv_hint(struct ctx *c, yaml_node_t *n)
{
    return (enum bth_proto_version)enum_hint(c, n, "protocol_version", &pv_enum);
}

static void parse_listener(struct ctx *c, yaml_node_t *n, struct bth_cfg_listener *l)
{
    static const uint64_t idle_ms[] = {
        [BTH_PROTO_HTTP] = 60 * SEC_MS, [BTH_PROTO_HTTPS] = 60 * SEC_MS,
        [BTH_PROTO_TCP] = 350 * SEC_MS, [BTH_PROTO_TLS] = 350 * SEC_MS,
        [BTH_PROTO_UDP] = 120 * SEC_MS, [BTH_PROTO_TCP_UDP] = 120 * SEC_MS,
    };
    l->protocol = proto_hint(c, n);
    l->idle_timeout_ms = idle_ms[l->protocol];
    l->header_timeout_ms = 10 * SEC_MS;
    /* Apache mod_reqtimeout's body=20,MinRate=500. */
    l->body_timeout_ms = 20 * SEC_MS;
    l->min_body_rate = 500;
    l->udp_max_flows = 65536;
    l->max_header_line_bytes = 16 * KIB;
    l->max_response_header_bytes = 32 * KIB;
    l->max_request_line_bytes = 16 * KIB;
    l->max_header_bytes = 64 * KIB;
    l->http2 = (struct bth_cfg_http2){.enabled = 1,
                                      .max_concurrent_streams = 128,
                                      .initial_window_size = 64 * KIB,
                                      .max_frame_size = 16 * KIB};
    l->mark = mark_of(n);
    parse_map(c, n, &listener_sec, l);
    if (n->type != YAML_MAPPING_NODE)
        return;
    if (l->name == NULL && l->bind.len != 0)
        set_str(c, n, &l->name, l->bind.text);
    if ((l->protocol == BTH_PROTO_HTTPS || l->protocol == BTH_PROTO_TLS) && l->ncertificates == 0)
        err_node(c, n, "%s listener needs certificates", bth_proto_name(l->protocol));
    if (l->http2.max_header_list_size == 0)
        l->http2.max_header_list_size = l->max_request_line_bytes + l->max_header_bytes;
}

static void on_listeners(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_config *cfg = dst;
    yaml_node_item_t *items;
    size_t n;
    if (!seq_of(c, v, &items, &n) ||
        (cfg->listeners = alloc_items(c, v, n, sizeof(*cfg->listeners))) == NULL)
        return;
    cfg->nlisteners = n;
    for (size_t i = 0; i < n; i++) {
        struct bth_cfg_listener *l = &cfg->listeners[i];
        parse_listener(c, node(c, items[i]), l);
        for (size_t j = 0; j < i; j++) {
            const struct bth_cfg_listener *o = &cfg->listeners[j];
            /* Same bind usually means same default name too: one message is enough. */
            if (l->bind.len != 0 && strcmp(l->bind.text, o->bind.text) == 0)
                errat(c, l->mark, "duplicate bind address \"%s\"", l->bind.text);
            else if (l->name != NULL && o->name != NULL && strcmp(l->name, o->name) == 0)
                errat(c, l->mark, "duplicate listener name \"%s\"", l->name);
        }
    }
}

/* ------------------------------------------------------------------------------------ */
/* Target groups */

#define TG(m) offsetof(struct bth_cfg_target_group, m)
#define HC(m) offsetof(struct bth_cfg_health_check, m)

static void on_group_name(struct ctx *c, yaml_node_t *v, void *dst)
{
    const char *s = scalar(c, v);
    /* The name appears in control API paths and metric labels: keep it plain. */
    if (s != NULL && (*s == '\0' || strlen(s) > 128 ||
                      strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789._-") != strlen(s)))
        err_node(c, v,
                 "invalid target group name \"%s\" (letters, digits, \".\", \"_\" and "
                 "\"-\", at most 128)",
                 s);
    else if (s != NULL)
        set_str(c, v, dst, s);
}

static const struct field sticky_fields[] = {
    FE("type", TG(stickiness), &sticky_enum, REQ),
    F("duration", F_DUR, TG(stickiness_duration_ms), SEC_MS, 7 * DAY_MS, 0),
    F("cookie", F_STR, TG(stickiness_cookie), 0, 0, 0),
};
SECTION(sticky_sec, "stickiness", sticky_fields);

static void on_stickiness(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_target_group *g = dst;
    unsigned before = c->nerrors;
    g->stickiness_duration_ms = DAY_MS;
    parse_map(c, v, &sticky_sec, g);
    if (c->nerrors != before)
        return;
    /* Cookies need HTTP; source_ip is NLB's client-IP affinity. */
    if (g->stickiness == BTH_STICKY_SOURCE_IP && is_l7(g->protocol))
        err_node(c, v, "source_ip stickiness is for TCP, TLS, UDP and TCP_UDP target groups");
    else if (g->stickiness != BTH_STICKY_SOURCE_IP && !is_l7(g->protocol))
        err_node(c, v, "%s stickiness is for HTTP and HTTPS target groups",
                 sticky_names[g->stickiness]);
    else if ((g->stickiness == BTH_STICKY_APP_COOKIE) != (g->stickiness_cookie != NULL))
        err_node(c, v, "cookie is %s with app_cookie stickiness",
                 g->stickiness_cookie == NULL ? "required" : "only used");
}

static void on_hc_port(struct ctx *c, yaml_node_t *v, void *dst)
{
    static const struct field port = F("port", F_INT, 0, 1, 65535, 0);
    if (v->type == YAML_SCALAR_NODE &&
        strcmp((const char *)v->data.scalar.value, "traffic-port") == 0)
        *(int *)dst = 0;
    else
        set_field(c, &port, v, dst);
}

/* matcher: "200-399", or as ELB's Matcher {http_code: ...} / {grpc_code: ...}; gRPC groups
 * match grpc-status codes 0..99, the others HTTP status codes. */
static void on_matcher(struct ctx *c, yaml_node_t *v, void *dst)
{
    bool grpc = c->group_pv == BTH_PV_GRPC;
    const char *want = grpc ? "grpc_code" : "http_code";
    if (v->type == YAML_MAPPING_NODE) {
        yaml_node_pair_t *p = v->data.mapping.pairs.start;
        if (v->data.mapping.pairs.top - p != 1) {
            err_node(c, v, "matcher takes one key, %s", want);
            return;
        }
        yaml_node_t *k = node(c, p->key);
        const char *ks = scalar(c, k);
        if (ks == NULL)
            return;
        if (strcmp(ks, want) != 0) {
            err_node(c, k, "matcher key \"%s\" does not fit this group (expected %s%s)", ks, want,
                     grpc ? ": its protocol_version is GRPC" : "");
            return;
        }
        v = node(c, p->value);
    }
    const char *s = scalar(c, v);
    if (s == NULL)
        return;
    if (parse_matcher(s, grpc ? 0 : 200, grpc ? 99 : 599) < 0)
        err_node(c, v, "invalid %smatcher \"%s\" (expected e.g. %s)", grpc ? "grpc_code " : "", s,
                 grpc ? "\"12\", \"0-99\" or \"0,12\"" : "\"200\", \"200-399\" or \"200,302\"");
    else
        set_str(c, v, dst, s);
}

static const struct field hc_fields[] = {
    F("enabled", F_BOOL, HC(enabled), 0, 0, 0),
    FE("protocol", HC(protocol), &hc_proto_enum, 0),
    FN("port", HC(port), on_hc_port, 0),
    FN("path", HC(path), on_path, 0),
    /* Shorter than ELB's 5s/2s minimums: a sidecar on one host can afford faster checks,
     * and tests need them. */
    F("interval", F_DUR, HC(interval_ms), 1 * SEC_MS, 300 * SEC_MS, 0),
    F("timeout", F_DUR, HC(timeout_ms), 500, 120 * SEC_MS, 0),
    F("healthy_threshold", F_UINT, HC(healthy_threshold), 2, 10, 0),
    F("unhealthy_threshold", F_UINT, HC(unhealthy_threshold), 2, 10, 0),
    FN("matcher", HC(matcher), on_matcher, 0),
    F("tls_verify", F_BOOL, HC(tls_verify), 0, 0, 0),
};
SECTION(hc_sec, "health_check", hc_fields);

#define OD(m) offsetof(struct bth_cfg_outlier, m)
static const struct field outlier_fields[] = {
    F("enabled", F_BOOL, OD(enabled), 0, 0, 0),
    F("consecutive_errors", F_UINT, OD(consecutive_errors), 1, 1000, 0),
    F("base_ejection_time", F_DUR, OD(base_ejection_ms), 1 * SEC_MS, 3600 * SEC_MS, 0),
    F("max_ejection_percent", F_UINT, OD(max_ejection_percent), 0, 100, 0),
};
SECTION(outlier_sec, "outlier_detection", outlier_fields);

static void on_outlier(struct ctx *c, yaml_node_t *v, void *dst)
{
    parse_map(c, v, &outlier_sec, dst);
}

static void on_health_check(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_health_check *hc = dst;
    unsigned before = c->nerrors;
    hc->mark = mark_of(v);
    parse_map(c, v, &hc_sec, hc);
    /* A check still running when the next one is due would overlap it. */
    if (c->nerrors == before && hc->timeout_ms >= hc->interval_ms) {
        char t[32], i[32];
        fmt_value(F_DUR, hc->timeout_ms, t, sizeof(t));
        fmt_value(F_DUR, hc->interval_ms, i, sizeof(i));
        err_node(c, v, "health_check timeout %s must be less than interval %s", t, i);
    }
}

/* A target as a mapping, as ECS and the ELBv2 API describe it. */
struct target_map {
    char *id; /* owned: the IP address */
    unsigned port;
    unsigned weight;
};

static void on_target_id(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_addr probe;
    const char *s = scalar(c, v);
    if (s != NULL && bth_addr_from_ip_port(s, 1, &probe) < 0)
        err_node(c, v, "invalid address \"%s\"", s);
    else if (s != NULL)
        set_str(c, v, dst, s);
}

static const struct field target_fields[] = {
    FN("id", offsetof(struct target_map, id), on_target_id, REQ),
    F("port", F_UINT, offsetof(struct target_map, port), 1, 65535, REQ),
    F("weight", F_UINT, offsetof(struct target_map, weight), 0, 999, 0),
};
SECTION(target_sec, "target", target_fields);

/* Refuses an address berth cannot send traffic to (bth_addr_usable). Returns <rc>,
 * or -1 after adding the error. */
static int usable_target(struct ctx *c, yaml_node_t *n, const struct bth_cfg_target *t, int rc)
{
    const char *why;
    if (rc == 0 && !bth_addr_usable(&t->addr, &why)) {
        err_node(c, n, "unusable target \"%s\": %s", t->addr.text, why);
        return -1;
    }
    return rc;
}

/* "IP:port" or {id, port, weight} into <t>; returns 0 when <t> holds an address. */
static int parse_target(struct ctx *c, yaml_node_t *n, struct bth_cfg_target *t)
{
    struct target_map m = {.weight = 1};
    int rc = -1;
    t->weight = 1;
    if (n->type == YAML_SCALAR_NODE) {
        const char *s = scalar(c, n);
        if (s != NULL && (rc = bth_parse_addr(s, &t->addr)) < 0)
            err_node(c, n, "invalid address \"%s\"", s);
        return usable_target(c, n, t, rc);
    }
    if (n->type != YAML_MAPPING_NODE) {
        err_node(c, n, "expected a scalar or a mapping");
        return -1;
    }
    parse_map(c, n, &target_sec, &m);
    if (m.id != NULL && m.port != 0)
        rc = bth_addr_from_ip_port(m.id, m.port, &t->addr);
    t->weight = m.weight;
    bth_free(m.id);
    return usable_target(c, n, t, rc);
}

static void on_targets(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_target_group *g = dst;
    yaml_node_item_t *items;
    size_t n;
    if (!seq_of(c, v, &items, &n) ||
        (g->targets = alloc_items(c, v, n, sizeof(*g->targets))) == NULL)
        return;
    g->ntargets = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node(c, items[i]);
        if (parse_target(c, item, &g->targets[i]) < 0)
            continue;
        for (size_t j = 0; j < i; j++)
            if (strcmp(g->targets[i].addr.text, g->targets[j].addr.text) == 0)
                err_node(c, item, "duplicate target \"%s\"", g->targets[i].addr.text);
    }
}

static const char *const dns_type_names[] = {"A", "AAAA", "SRV"};
static const struct enumdef dns_type_enum = {dns_type_names, 3, "A, AAAA or SRV"};

/* The longest dot-separated label of <s> (DNS allows 63). */
static size_t longest_label(const char *s)
{
    size_t best = 0, cur = 0;
    for (; *s != '\0'; s++) {
        cur = *s == '.' ? 0 : cur + 1;
        if (cur > best)
            best = cur;
    }
    return best;
}

static void on_dns_name(struct ctx *c, yaml_node_t *v, void *dst)
{
    const char *s = scalar(c, v);
    size_t n = s != NULL ? strlen(s) : 0;
    if (s != NULL && (n == 0 || n > 253 || longest_label(s) > 63 ||
                      strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789._-") != n ||
                      strstr(s, "..") != NULL || s[0] == '.'))
        err_node(c, v, "invalid DNS name \"%s\"", s);
    else if (s != NULL)
        set_str(c, v, dst, s);
}

static void on_resolvers(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_discovery *d = dst;
    yaml_node_item_t *items;
    size_t n;
    if (!seq_of(c, v, &items, &n) ||
        (d->resolvers = alloc_items(c, v, n, sizeof(*d->resolvers))) == NULL)
        return;
    d->nresolvers = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node(c, items[i]);
        const char *s = scalar(c, item);
        if (s != NULL && bth_parse_addr(s, &d->resolvers[i]) < 0)
            err_node(c, item, "invalid resolver address \"%s\" (expected IP:PORT)", s);
    }
}

#define DS(m) offsetof(struct bth_cfg_discovery, m)
static const struct field discovery_fields[] = {
    FN("dns", DS(dns), on_dns_name, REQ),
    FE("type", DS(type), &dns_type_enum, 0),
    F("port", F_UINT, DS(port), 1, 65535, 0),
    F("interval", F_DUR, DS(interval_ms), 1 * SEC_MS, 3600 * SEC_MS, 0),
    FN("resolvers", 0, on_resolvers, 0),
};
SECTION(discovery_sec, "discovery", discovery_fields);

static void on_discovery(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_cfg_discovery *d = dst;
    unsigned before = c->nerrors;
    d->interval_ms = 10 * SEC_MS;
    d->mark = mark_of(v);
    parse_map(c, v, &discovery_sec, d);
    if (c->nerrors != before || v->type != YAML_MAPPING_NODE)
        return;
    if (d->type == BTH_DNS_SRV && d->port != 0)
        err_node(c, v, "port is not used with SRV records (they carry the port)");
    else if (d->type != BTH_DNS_SRV && d->port == 0)
        err_node(c, v, "port is required with %s records", dns_type_names[d->type]);
}

static const struct field group_fields[] = {
    FN("name", TG(name), on_group_name, REQ),
    FE("protocol", TG(protocol), &proto_enum, 0),
    FE("protocol_version", TG(protocol_version), &pv_enum, 0),
    FE("algorithm", TG(algorithm), &alg_enum, 0),
    F("deregistration_delay", F_DUR, TG(deregistration_delay_ms), 0, 3600 * SEC_MS, 0),
    F("slow_start", F_DUR, TG(slow_start_ms), 30 * SEC_MS, 900 * SEC_MS, ZERO_OK),
    FN("stickiness", 0, on_stickiness, 0),
    F("proxy_protocol_v2", F_BOOL, TG(proxy_protocol_v2), 0, 0, 0),
    F("connection_termination", F_BOOL, TG(connection_termination), 0, 0, 0),
    F("unhealthy_connection_termination", F_BOOL, TG(unhealthy_connection_termination), 0, 0, 0),
    FN("health_check", TG(health_check), on_health_check, 0),
    FN("outlier_detection", TG(outlier_detection), on_outlier, 0),
    F("tls_server_name", F_STR, TG(tls_server_name), 0, 0, 0),
    F("tls_verify", F_BOOL, TG(tls_verify), 0, 0, 0),
    F("tls_ca_file", F_STR, TG(tls_ca_file), 0, 0, 0),
    FN("targets", 0, on_targets, 0),
    FN("discovery", TG(discovery), on_discovery, 0),
};
SECTION(group_sec, "target group", group_fields);

/* Defaults follow ELBv2: ALB groups check HTTP(S) "/" for "200"; NLB groups check TCP with a
 * 10s timeout, and an HTTP check there accepts "200-399". */
static void group_defaults(struct ctx *c, yaml_node_t *n, struct bth_cfg_target_group *g)
{
    struct bth_cfg_health_check *hc = &g->health_check;
    bool l7 = is_l7(g->protocol);
    g->algorithm = l7 ? BTH_ALG_ROUND_ROBIN : BTH_ALG_FLOW_HASH;
    g->deregistration_delay_ms = 300 * SEC_MS;
    hc->enabled = 1;
    hc->protocol = l7 ? g->protocol : BTH_PROTO_TCP;
    hc->interval_ms = 30 * SEC_MS;
    hc->timeout_ms = (l7 ? 5 : 10) * SEC_MS;
    hc->healthy_threshold = 5;
    hc->unhealthy_threshold = 2;
    /* gRPC groups: ALB's gRPC check, answered UNIMPLEMENTED (12) by any live gRPC server */
    bool grpc = g->protocol_version == BTH_PV_GRPC;
    set_str(c, n, &hc->path, grpc ? "/AWS.ALB/healthcheck" : "/");
    set_str(c, n, &hc->matcher, grpc ? "12" : l7 ? "200" : "200-399");
    g->unhealthy_connection_termination = 1;
    g->outlier_detection.enabled = 1;
    g->outlier_detection.consecutive_errors = 5;
    g->outlier_detection.base_ejection_ms = 30 * SEC_MS;
    g->outlier_detection.max_ejection_percent = 50;
}

static void on_groups(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_config *cfg = dst;
    yaml_node_item_t *items;
    size_t n;
    if (!seq_of(c, v, &items, &n) ||
        (cfg->target_groups = alloc_items(c, v, n, sizeof(*cfg->target_groups))) == NULL)
        return;
    cfg->ntarget_groups = n;
    for (size_t i = 0; i < n; i++) {
        struct bth_cfg_target_group *g = &cfg->target_groups[i];
        yaml_node_t *item = node(c, items[i]);
        g->protocol = proto_hint(c, item);
        g->protocol_version = c->group_pv = pv_hint(c, item);
        g->mark = mark_of(item);
        group_defaults(c, item, g);
        parse_map(c, item, &group_sec, g);
        c->group_pv = BTH_PV_HTTP1;
        if (g->protocol_version != BTH_PV_HTTP1 && !is_l7(g->protocol))
            errat(c, g->mark, "protocol_version %s needs an HTTP or HTTPS group, not %s",
                  bth_proto_version_name(g->protocol_version), bth_proto_name(g->protocol));
        for (size_t j = 0; g->name != NULL && j < i; j++)
            if (cfg->target_groups[j].name != NULL &&
                strcmp(g->name, cfg->target_groups[j].name) == 0)
                errat(c, g->mark, "duplicate target group name \"%s\"", g->name);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Top level */

#define CF(m) offsetof(struct bth_config, m)

static void on_workers(struct ctx *c, yaml_node_t *v, void *dst)
{
    static const struct field workers = F("workers", F_UINT, 0, 1, 1024, 0);
    if (v->type == YAML_SCALAR_NODE && strcmp((const char *)v->data.scalar.value, "auto") == 0)
        *(unsigned *)dst = 0;
    else
        set_field(c, &workers, v, dst);
}

static void on_log_level(struct ctx *c, yaml_node_t *v, void *dst)
{
    static const struct field level = FE("log_level", 0, &level_enum, 0);
    unsigned i = 0, before = c->nerrors;
    set_field(c, &level, v, &i);
    if (c->nerrors == before)
        set_str(c, v, dst, level_names[i]);
}

static void on_control_listen(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_addr a;
    const char *s = scalar(c, v);
    if (s != NULL && bth_parse_addr(s, &a) < 0)
        err_node(c, v, "invalid address \"%s\"", s);
    else if (s != NULL)
        set_str(c, v, dst, a.text);
}

static const struct field control_fields[] = {
    F("socket", F_STR, CF(control_socket), 0, 0, 0),
    FN("listen", CF(control_listen), on_control_listen, 0),
    F("token_file", F_STR, CF(control_token_file), 0, 0, 0),
    F("request_timeout", F_DUR, CF(control_request_timeout_ms), SEC_MS, HOUR_MS, 0),
    F("idle_timeout", F_DUR, CF(control_idle_timeout_ms), SEC_MS, HOUR_MS, 0),
};
SECTION(control_sec, "control", control_fields);

static void on_control(struct ctx *c, yaml_node_t *v, void *dst)
{
    struct bth_config *cfg = dst;
    parse_map(c, v, &control_sec, cfg);
    /* The TCP control port must never be open without authentication. */
    if (cfg->control_listen != NULL && cfg->control_token_file == NULL)
        err_node(c, v, "control listen requires token_file");
}

/* In the order of enum bth_state_recovery. */
static const char *const recovery_names[] = {"fail", "move_aside"};
static const struct enumdef recovery_enum = {recovery_names, 2, "fail or move_aside"};

static const struct field root_fields[] = {
    FN("workers", CF(workers), on_workers, 0),
    FN("control", 0, on_control, 0),
    F("state_file", F_STR, CF(state_file), 0, 0, 0),
    FE("state_file_recovery", CF(state_file_recovery), &recovery_enum, 0),
    F("cookie_key_file", F_STR, CF(cookie_key_file), 0, 0, 0),
    F("access_log", F_STR, CF(access_log), 0, 0, 0),
    F("shutdown_timeout", F_DUR, CF(shutdown_timeout_ms), 0, HOUR_MS, 0),
    F("max_connections", F_UINT, CF(max_connections), 0, 100000000, 0),
    F("pid_file", F_STR, CF(pid_file), 0, 0, 0),
    F("user", F_STR, CF(user), 0, 0, 0),
    F("group", F_STR, CF(group), 0, 0, 0),
    FN("log_level", CF(log_level), on_log_level, 0),
    FN("listeners", 0, on_listeners, 0),
    FN("target_groups", 0, on_groups, 0),
};
SECTION(root_sec, "config", root_fields);

/* ELBv2's listener/group pairs: ALB listeners take HTTP(S) groups, NLB listeners the L4
 * groups whose transport they carry (a TLS listener terminates, then TCP or TLS onward). */
static bool group_fits(enum bth_proto listener, enum bth_proto group)
{
    static const unsigned ok[] = {
        [BTH_PROTO_HTTP] = PBIT(BTH_PROTO_HTTP) | PBIT(BTH_PROTO_HTTPS),
        [BTH_PROTO_HTTPS] = PBIT(BTH_PROTO_HTTP) | PBIT(BTH_PROTO_HTTPS),
        [BTH_PROTO_TCP] = PBIT(BTH_PROTO_TCP) | PBIT(BTH_PROTO_TCP_UDP),
        [BTH_PROTO_TLS] = PBIT(BTH_PROTO_TCP) | PBIT(BTH_PROTO_TLS),
        [BTH_PROTO_UDP] = PBIT(BTH_PROTO_UDP) | PBIT(BTH_PROTO_TCP_UDP),
        [BTH_PROTO_TCP_UDP] = PBIT(BTH_PROTO_TCP_UDP),
    };
    return (ok[listener] & PBIT(group)) != 0;
}

static void check_refs(struct ctx *c, const struct bth_config *cfg,
                       const struct bth_cfg_listener *l, const struct bth_cfg_action *a)
{
    for (size_t i = 0; a->type == BTH_ACTION_FORWARD && i < a->ngroups; i++) {
        const struct bth_cfg_tg_ref *ref = &a->groups[i];
        const struct bth_cfg_target_group *g;
        if (ref->name == NULL)
            continue;
        if ((g = bth_config_find_group(cfg, ref->name)) == NULL)
            errat(c, ref->mark, "unknown target group \"%s\"", ref->name);
        else if (!group_fits(l->protocol, g->protocol))
            errat(c, ref->mark, "target group \"%s\" is %s, which %s listeners cannot use",
                  ref->name, bth_proto_name(g->protocol), bth_proto_name(l->protocol));
    }
}

/* Checks that need the whole file: references between listeners and groups. */
static void validate(struct ctx *c, yaml_node_t *root, const struct bth_config *cfg)
{
    if (cfg->nlisteners == 0)
        err_node(c, root, "at least one listener is required");
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct bth_cfg_listener *l = &cfg->listeners[i];
        for (size_t j = 0; j < l->nrules; j++)
            check_refs(c, cfg, l, &l->rules[j].action);
        check_refs(c, cfg, l, &l->default_action);
    }
}

/* Valid settings that most likely do not do what was meant: warnings, not errors. */
static void check_warnings(struct ctx *c, struct bth_config *cfg)
{
    for (size_t i = 0; i < cfg->ntarget_groups; i++) {
        const struct bth_cfg_target_group *g = &cfg->target_groups[i];
        const struct bth_cfg_health_check *hc = &g->health_check;
        /* Every check protocol (TCP, HTTP, HTTPS) connects over TCP, so on the traffic port
         * of a UDP-only target it fails, and the group fails open for good (ELB alike). */
        if (g->protocol == BTH_PROTO_UDP && hc->enabled && hc->port == 0 && g->name != NULL) {
            struct bth_cfg_mark m = hc->mark.line > 0 ? hc->mark : g->mark;
            bth_err_add(&cfg->warnings,
                        "%s:%d:%d: warning: target group %s is UDP; its health check probes TCP "
                        "port traffic-port, which a UDP-only target does not answer (set "
                        "health_check.port to a TCP port the target serves, or "
                        "health_check.enabled: false)",
                        c->file, m.line, m.col, g->name);
        }
    }
}

void bth_config_log_warnings(const struct bth_config *cfg)
{
    for (size_t i = 0; i < cfg->warnings.n; i++)
        bth_log(BTH_LOG_WARN, "%s", cfg->warnings.msgs[i]);
}

/* ------------------------------------------------------------------------------------ */
/* Loading */

static void yaml_error(struct ctx *c, const yaml_parser_t *p)
{
    struct bth_cfg_mark m = {(int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1};
    /* The reader (bad encoding, control bytes) gives only a byte offset. */
    if (p->error == YAML_READER_ERROR) {
        m = (struct bth_cfg_mark){1, 1};
        for (size_t i = 0; i < p->problem_offset && i < c->len; i++, m.col++)
            if (c->buf[i] == '\n')
                m = (struct bth_cfg_mark){m.line + 1, 0};
    }
    if (p->error == YAML_MEMORY_ERROR)
        errat(c, m, "out of memory");
    else if (p->context != NULL)
        errat(c, m, "%s %s", p->problem != NULL ? p->problem : "syntax error", p->context);
    else
        errat(c, m, "%s", p->problem != NULL ? p->problem : "syntax error");
}

static struct bth_config *config_new(const char *name)
{
    struct bth_config *cfg = bth_calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return NULL;
    cfg->path = bth_strdup(name);
    cfg->control_socket = bth_strdup("./berth.sock");
    cfg->control_request_timeout_ms = 10 * SEC_MS;
    cfg->control_idle_timeout_ms = 30 * SEC_MS;
    cfg->access_log = bth_strdup("stdout");
    cfg->shutdown_timeout_ms = 30 * SEC_MS;
    if (cfg->path == NULL || cfg->control_socket == NULL || cfg->access_log == NULL) {
        bth_config_destroy(cfg);
        return NULL;
    }
    return cfg;
}

/* Parses the one document in <p> into a new config; errors go to <c>. */
static struct bth_config *load_document(struct ctx *c, yaml_parser_t *p)
{
    yaml_document_t doc, extra;
    struct bth_config *cfg = NULL;
    if (!yaml_parser_load(p, &doc)) {
        yaml_error(c, p);
        return NULL;
    }
    c->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL || is_null(root)) {
        errat(c, (struct bth_cfg_mark){1, 1}, "empty config");
        goto out;
    }
    if ((cfg = config_new(c->file)) == NULL) {
        err_node(c, root, "out of memory");
        goto out;
    }
    parse_map(c, root, &root_sec, cfg);
    if (root->type == YAML_MAPPING_NODE)
        validate(c, root, cfg);
    if (c->nerrors == 0)
        check_warnings(c, cfg);
    /* A second document would be silently ignored: say so instead. */
    if (!yaml_parser_load(p, &extra)) {
        yaml_error(c, p);
    } else {
        yaml_node_t *more = yaml_document_get_root_node(&extra);
        if (more != NULL)
            err_node(c, more, "only one YAML document is allowed");
        yaml_document_delete(&extra);
    }
out:
    yaml_document_delete(&doc);
    c->doc = NULL;
    return cfg;
}

struct bth_config *bth_config_load_buffer(const char *name, const char *buf, size_t len,
                                          struct bth_err *err)
{
    struct ctx c = {.file = name, .buf = buf, .len = len, .err = err};
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        errat(&c, (struct bth_cfg_mark){1, 1}, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    struct bth_config *cfg = load_document(&c, &p);
    yaml_parser_delete(&p);
    if (c.nerrors != 0) {
        bth_config_destroy(cfg);
        return NULL;
    }
    return cfg;
}

struct bth_config *bth_config_load_file(const char *path, struct bth_err *err)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    struct bth_config *cfg = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        bth_err_add(err, "%s: fopen() failed: %s", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        if (len == cap) {
            char *nbuf = cap < MAX_CONFIG_BYTES ? bth_realloc(buf, cap += 64 * KIB) : NULL;
            if (nbuf == NULL) {
                bth_err_add(err, "%s: %s", path,
                            cap >= MAX_CONFIG_BYTES ? "file too large" : "out of memory");
                goto out;
            }
            buf = nbuf;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        bth_err_add(err, "%s: fread() failed: %s", path, strerror(errno));
        goto out;
    }
    cfg = bth_config_load_buffer(path, buf, len, err);
out:
    bth_free(buf);
    fclose(f);
    return cfg;
}

const struct bth_cfg_target_group *bth_config_find_group(const struct bth_config *cfg,
                                                         const char *name)
{
    for (size_t i = 0; i < cfg->ntarget_groups; i++)
        if (cfg->target_groups[i].name != NULL && strcmp(cfg->target_groups[i].name, name) == 0)
            return &cfg->target_groups[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* Freeing: every array may be partly filled (a load that failed half-way). */

static void free_strlist(struct bth_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        bth_free(l->v[i]);
    bth_free(l->v);
}

static void free_kv(struct bth_cfg_kv_cond *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bth_free(kv[i].key);
        free_strlist(&kv[i].values);
    }
    bth_free(kv);
}

static void free_action(struct bth_cfg_action *a)
{
    for (size_t i = 0; i < a->ngroups; i++)
        bth_free(a->groups[i].name);
    bth_free(a->groups);
    bth_free(a->redirect_protocol);
    bth_free(a->redirect_host);
    bth_free(a->redirect_port);
    bth_free(a->redirect_path);
    bth_free(a->redirect_query);
    bth_free(a->fixed_content_type);
    bth_free(a->fixed_body);
}

static void free_listener(struct bth_cfg_listener *l)
{
    for (size_t i = 0; i < l->nrules; i++) {
        struct bth_cfg_rule *r = &l->rules[i];
        free_strlist(&r->host);
        free_strlist(&r->path);
        free_strlist(&r->method);
        free_strlist(&r->source_ip);
        free_kv(r->headers, r->nheaders);
        free_kv(r->query, r->nquery);
        free_action(&r->action);
    }
    bth_free(l->rules);
    for (size_t i = 0; i < l->ncertificates; i++) {
        bth_free(l->certificates[i].cert);
        bth_free(l->certificates[i].key);
    }
    bth_free(l->certificates);
    free_action(&l->default_action);
    bth_free(l->ssl_policy);
    bth_free(l->name);
}

static void free_group(struct bth_cfg_target_group *g)
{
    bth_free(g->name);
    bth_free(g->stickiness_cookie);
    bth_free(g->tls_server_name);
    bth_free(g->tls_ca_file);
    bth_free(g->health_check.path);
    bth_free(g->health_check.matcher);
    bth_free(g->targets);
    bth_free(g->discovery.dns);
    bth_free(g->discovery.resolvers);
}

void bth_config_destroy(struct bth_config *cfg)
{
    if (cfg == NULL)
        return;
    bth_free(cfg->pid_file);
    bth_free(cfg->user);
    bth_free(cfg->group);
    for (size_t i = 0; i < cfg->nlisteners; i++)
        free_listener(&cfg->listeners[i]);
    bth_free(cfg->listeners);
    for (size_t i = 0; i < cfg->ntarget_groups; i++)
        free_group(&cfg->target_groups[i]);
    bth_free(cfg->target_groups);
    bth_free(cfg->path);
    bth_free(cfg->control_socket);
    bth_free(cfg->control_listen);
    bth_free(cfg->control_token_file);
    bth_free(cfg->state_file);
    bth_free(cfg->cookie_key_file);
    bth_free(cfg->access_log);
    bth_free(cfg->log_level);
    bth_err_fini(&cfg->warnings);
    bth_free(cfg);
}
