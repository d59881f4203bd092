/* SPDX-License-Identifier: MIT */
/* Main thread only. The YAML config file (README "Config reference") parsed and validated into
 * a plain, immutable struct bth_config. Errors carry FILE:LINE:COL. A loaded config is
 * never written again: the snapshot builder reads it, reload replaces it whole. */
#ifndef BERTH_CONFIG_H
#define BERTH_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "addr.h"
#include "err.h"

enum bth_proto {
    BTH_PROTO_HTTP = 0,
    BTH_PROTO_HTTPS,
    BTH_PROTO_TCP,
    BTH_PROTO_TLS,
    BTH_PROTO_UDP,
    BTH_PROTO_TCP_UDP,
};

/* ELB's desync_mitigation_mode. */
enum bth_desync_mode {
    BTH_DESYNC_MODE_DEFENSIVE = 0, /* default: severe 400; ambiguous forwarded, then closed */
    BTH_DESYNC_MODE_MONITOR,       /* forward everything llhttp can parse */
    BTH_DESYNC_MODE_STRICTEST,     /* only compliant requests pass */
};

enum bth_algorithm {
    BTH_ALG_ROUND_ROBIN = 0,
    BTH_ALG_LEAST_OUTSTANDING,
    BTH_ALG_WEIGHTED_RANDOM,
    BTH_ALG_FLOW_HASH,
};

/* A resolved socket address plus the text it came from. */
/* A list of strings (condition values, etc.); all owned. */
struct bth_strlist {
    char **v; /* owned, each owned */
    size_t n;
};

/* Where a config item was written: for errors raised after parsing (missing reference). */
struct bth_cfg_mark {
    int line; /* 1-based */
    int col;  /* 1-based */
};

struct bth_cfg_tg_ref {
    char *name;      /* owned */
    unsigned weight; /* 0..999, default 1 */
    struct bth_cfg_mark mark;
};

enum bth_action_type {
    BTH_ACTION_FORWARD = 0,
    BTH_ACTION_REDIRECT,
    BTH_ACTION_FIXED_RESPONSE,
};

struct bth_cfg_action {
    enum bth_action_type type;
    /* forward */
    struct bth_cfg_tg_ref *groups; /* owned array */
    size_t ngroups;
    uint64_t stickiness_ms; /* 0 = off */
    /* redirect: templates, NULL = keep "#{...}" default */
    char *redirect_protocol; /* owned: "HTTP" | "HTTPS" | "#{protocol}" */
    char *redirect_host;     /* owned */
    char *redirect_port;     /* owned */
    char *redirect_path;     /* owned */
    char *redirect_query;    /* owned */
    int redirect_status;     /* 301 | 302 */
    /* fixed_response */
    int fixed_status;         /* 200..599 */
    char *fixed_content_type; /* owned, may be NULL */
    char *fixed_body;         /* owned, may be NULL; at most 1024 bytes */
};

/* A header or query condition: key plus OR-ed value patterns. */
struct bth_cfg_kv_cond {
    char *key; /* owned */
    struct bth_strlist values;
};

struct bth_cfg_rule {
    unsigned priority; /* 1..50000, unique per listener */
    struct bth_strlist host;
    struct bth_strlist path;
    struct bth_strlist method;
    struct bth_strlist source_ip;
    struct bth_cfg_kv_cond *headers; /* owned array */
    size_t nheaders;
    struct bth_cfg_kv_cond *query; /* owned array */
    size_t nquery;
    struct bth_cfg_action action;
    struct bth_cfg_mark mark;
};

struct bth_cfg_cert {
    char *cert; /* owned path */
    char *key;  /* owned path */
};

/* A listener's HTTP/2 to clients (README, "HTTP/2"). */
struct bth_cfg_http2 {
    int enabled;                     /* HTTPS: offer h2 by ALPN; default 1 */
    unsigned max_concurrent_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS; default 128 */
    size_t initial_window_size;      /* per stream, SETTINGS_INITIAL_WINDOW_SIZE; 64k */
    size_t max_frame_size;           /* SETTINGS_MAX_FRAME_SIZE; default 16k */
    size_t max_header_list_size;     /* 0: max_request_line + max_header_size */
    uint64_t ping_interval_ms;       /* liveness PING on a quiet connection; 0 = off */
    struct bth_cfg_mark mark;
};

struct bth_cfg_listener {
    char *name; /* owned; defaults to the bind text */
    enum bth_proto protocol;
    struct bth_addr bind;
    int reuse_port;           /* share the address with other processes (SO_REUSEPORT); default 0 */
    uint64_t idle_timeout_ms; /* HTTP(S) 60s, TCP/TLS 350s, UDP 120s */
    uint64_t header_timeout_ms;       /* HTTP(S): whole request head (408); default 10s */
    uint64_t body_timeout_ms;         /* HTTP(S): request body grace before min_body_rate; 20s */
    unsigned min_body_rate;           /* HTTP(S): bytes/s a request body must keep up; 0 = off */
    size_t max_request_line_bytes;    /* 414 above this; default 16k */
    size_t max_header_bytes;          /* 431 above this (all header lines); default 64k */
    unsigned udp_max_flows;           /* UDP: flows per worker before new ones are dropped */
    size_t max_header_line_bytes;     /* one header line above this: 431; default 16k */
    size_t max_response_header_bytes; /* a target's response head above this: 502; 32k */
    unsigned max_connections;         /* client connections at once, 0 = unlimited */
    int desync_mode; /* enum bth_desync_mode: what HTTP(S) listeners do per desync tier */
    int path_norm;   /* enum bth_path_norm (uri.h): HTTP(S) request paths; default on */
    int h2c;         /* HTTP: HTTP/2 with prior knowledge besides HTTP/1.1; default 0 */
    struct bth_cfg_http2 http2;
    struct bth_cfg_cert *certificates; /* owned array */
    size_t ncertificates;
    char *ssl_policy;           /* owned, may be NULL */
    struct bth_cfg_rule *rules; /* owned array, sorted by ascending priority */
    size_t nrules;
    struct bth_cfg_action default_action;
    struct bth_cfg_mark mark;
};

struct bth_cfg_target {
    struct bth_addr addr;
    unsigned weight; /* default 1 */
};

struct bth_cfg_health_check {
    int enabled;                  /* default 1 */
    enum bth_proto protocol;      /* HTTP | HTTPS | TCP */
    int port;                     /* 0 = traffic-port */
    char *path;                   /* owned, default "/" */
    uint64_t interval_ms;         /* 1s..300s (ELB: 5s..), default 30s */
    uint64_t timeout_ms;          /* 500ms..120s (ELB: 2s..), < interval */
    unsigned healthy_threshold;   /* 2..10, default 5 */
    unsigned unhealthy_threshold; /* 2..10, default 2 */
    char *matcher;                /* owned, "200" or "200-399" by group protocol */
    int tls_verify;               /* HTTPS checks: verify the target's certificate (default 0) */
    struct bth_cfg_mark mark;     /* where health_check was written; line 0 when it was not */
};

/* Passive health checking (Envoy's outlier detection): a target whose traffic fails
 * <consecutive_errors> times in a row is ejected for base_ejection_ms times the number of
 * its ejections so far, never more than max_ejection_percent of the group at once. */
struct bth_cfg_outlier {
    int enabled;                   /* default 1 */
    unsigned consecutive_errors;   /* 1..1000, default 5 */
    uint64_t base_ejection_ms;     /* 1s..1h, default 30s */
    unsigned max_ejection_percent; /* 0..100, default 50 */
};

enum bth_stickiness_type {
    BTH_STICKY_NONE = 0,
    BTH_STICKY_LB_COOKIE,
    BTH_STICKY_APP_COOKIE,
    BTH_STICKY_SOURCE_IP,
};

enum bth_dns_type { BTH_DNS_A, BTH_DNS_AAAA, BTH_DNS_SRV };

/* target_groups[].discovery: targets from DNS records (ECS service discovery, Kubernetes
 * headless services, Consul). */
struct bth_cfg_discovery {
    char *dns; /* owned: the name to resolve; NULL: no discovery */
    enum bth_dns_type type;
    unsigned port;              /* A and AAAA: the targets' port (SRV records carry theirs) */
    uint64_t interval_ms;       /* re-resolve at least this often (at the TTL when sooner) */
    struct bth_addr *resolvers; /* owned; none: the nameservers of /etc/resolv.conf */
    size_t nresolvers;
    struct bth_cfg_mark mark;
};

/* How an ALB group's targets are spoken to, as ELB's ProtocolVersion. */
enum bth_proto_version {
    BTH_PV_HTTP1 = 0, /* every request as HTTP/1.1 (default) */
    BTH_PV_HTTP2,     /* every request as HTTP/2: h2 by ALPN over TLS, h2c prior knowledge */
    BTH_PV_GRPC,      /* HTTP/2, and only gRPC requests (content-type application/grpc*) */
};

struct bth_cfg_target_group {
    char *name; /* owned, unique */
    enum bth_proto protocol;
    enum bth_proto_version protocol_version; /* HTTP and HTTPS groups */
    enum bth_algorithm algorithm;
    uint64_t deregistration_delay_ms; /* 0..3600s, default 300s */
    uint64_t slow_start_ms;           /* 0 or 30s..900s */
    enum bth_stickiness_type stickiness;
    uint64_t stickiness_duration_ms;
    char *stickiness_cookie; /* owned, app_cookie */
    int proxy_protocol_v2;
    int connection_termination;           /* L4: close flows when the deregistration delay
                                           * ends */
    int unhealthy_connection_termination; /* L4: reset flows of a target that turns unhealthy
                                           * (default 1), as NLB does */
    struct bth_cfg_health_check health_check;
    struct bth_cfg_outlier outlier_detection;
    /* HTTPS and TLS groups: TLS to the targets */
    char *tls_server_name;          /* owned: SNI sent to targets, NULL: none */
    int tls_verify;                 /* verify the target's certificate (default 0, as ELB) */
    char *tls_ca_file;              /* owned: CA bundle for verification, NULL: system store */
    struct bth_cfg_target *targets; /* owned array */
    size_t ntargets;
    struct bth_cfg_discovery discovery;
    struct bth_cfg_mark mark;
};

/* What start does with a state file it cannot read: refuse to start (the default, so
 * registrations are never silently lost) or move it aside and start empty. */
enum bth_state_recovery { BTH_STATE_FAIL, BTH_STATE_MOVE_ASIDE };

struct bth_config {
    char *path;                          /* owned; "<default>" for the embedded config */
    unsigned workers;                    /* 0 = auto (CPU count) */
    char *control_socket;                /* owned, default "./berth.sock" */
    char *control_listen;                /* owned, may be NULL */
    char *control_token_file;            /* owned, may be NULL */
    uint64_t control_request_timeout_ms; /* a control request must be whole within; 10s */
    uint64_t control_idle_timeout_ms;    /* an idle control connection closes after; 30s */
    char *state_file;                    /* owned, may be NULL */
    int state_file_recovery;      /* enum bth_state_recovery: a corrupt state file at start */
    char *cookie_key_file;        /* owned, may be NULL */
    char *access_log;             /* owned: "stdout" (default), "off" or a path */
    uint64_t shutdown_timeout_ms; /* default 30s */
    unsigned max_connections;     /* client connections at once for the process, 0 = none */
    char *pid_file;               /* owned, may be NULL */
    char *user;                   /* owned: drop to this user after binding, may be NULL */
    char *group;                  /* owned: and this group, may be NULL */
    char *log_level;              /* owned, may be NULL (keep the command line's): "err".."debug" */
    struct bth_cfg_listener *listeners; /* owned array */
    size_t nlisteners;
    struct bth_cfg_target_group *target_groups; /* owned array */
    size_t ntarget_groups;
    struct bth_err warnings; /* owned: "FILE:LINE:COL: warning: ..." for what is valid but
                              * most likely not meant; `berth -t` prints them, start and
                              * reload log them (bth_config_log_warnings) */
};

/* The embedded default: one HTTP listener on 0.0.0.0:8080 forwarding to an empty group
 * "default", control socket ./berth.sock. */
extern const char bth_config_default_yaml[];

/* Parses and validates the YAML file at <path>. Returns a config the caller owns (free
 * with bth_config_destroy) or NULL with every problem appended to <err>. */
struct bth_config *bth_config_load_file(const char *path, struct bth_err *err);

/* Same, from a buffer; <name> stands for the file name in messages. */
struct bth_config *bth_config_load_buffer(const char *name, const char *buf, size_t len,
                                          struct bth_err *err);

void bth_config_destroy(struct bth_config *cfg);

/* Logs each of cfg->warnings at level warn. */
void bth_config_log_warnings(const struct bth_config *cfg);

/* Looks a group up by name; NULL when absent. */
const struct bth_cfg_target_group *bth_config_find_group(const struct bth_config *cfg,
                                                         const char *name);

/* Value parsers, exported for the control API and tests. Each returns 0 or -1. */
int bth_parse_duration_ms(const char *s, uint64_t *out); /* "500ms" "30s" "5m" "1h" "1d" */
int bth_parse_size(const char *s, size_t *out);          /* "512" "16k" "1m" "1g" */
const char *bth_proto_name(enum bth_proto p);
const char *bth_algorithm_name(enum bth_algorithm a);
const char *bth_proto_version_name(enum bth_proto_version v);

#endif /* BERTH_CONFIG_H */
