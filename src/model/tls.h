/* SPDX-License-Identifier: MIT */
/* TLS for HTTPS listeners: OpenSSL contexts built by the main thread from a listener's
 * certificates and ssl_policy, shared read-only by the workers (SSL_new on a shared SSL_CTX
 * is thread-safe). SNI picks the certificate: exact name, then wildcard, then the first as
 * default. ALPN offers h2 (unless the listener's http2 is off) and http/1.1. Session tickets use
 * keys that rotate and are shared by every worker and listener. */
#ifndef BERTH_TLS_H
#define BERTH_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

struct bth_cfg_listener;
struct bth_err;
struct bth_tls_server;

/* Process-wide set-up (ticket keys). Main thread, once, before any listener context. */
int bth_tls_init(void);
/* Rotates the session ticket key (the previous one still decrypts). Main thread. */
void bth_tls_rotate_ticket_key(void);
void bth_tls_fini(void);

/* Loads the certificates of <l> (paths relative to the working directory) under its
 * policy. Returns a context with one reference, or NULL with "FILE: message" errors added
 * to <err> (unreadable file, key not matching its certificate, unknown policy). Main
 * thread. */
struct bth_tls_server *bth_tls_server_create(const struct bth_cfg_listener *l, struct bth_err *err);
void bth_tls_server_ref(struct bth_tls_server *t);
/* Any thread; the last reference frees. */
void bth_tls_server_unref(struct bth_tls_server *t);

/* A server-side SSL for an accepted socket <fd>, or NULL. Worker threads. */
SSL *bth_tls_server_new_ssl(struct bth_tls_server *t, int fd);

/* TLS to targets for an HTTPS or TLS target group: verification off unless tls_verify
 * (then against tls_ca_file or the system store), SNI from tls_server_name, and the last
 * session per target and worker kept for resumption. */
struct bth_tls_client;
struct bth_cfg_target_group;

/* NULL with an error added to <err> when the CA file cannot be read; main thread. */
struct bth_tls_client *bth_tls_client_create(const struct bth_cfg_target_group *g,
                                             struct bth_err *err);
void bth_tls_client_ref(struct bth_tls_client *c);
void bth_tls_client_unref(struct bth_tls_client *c);
/* A client-side SSL on the connecting socket <fd>, resuming <session> when not NULL.
 * Worker threads. */
SSL *bth_tls_client_new_ssl(struct bth_tls_client *c, int fd, SSL_SESSION *session);

/* Checks every HTTPS/TLS listener's certificates without keeping anything (berth -t). */
int bth_tls_check_listener(const struct bth_cfg_listener *l, struct bth_err *err);

#endif /* BERTH_TLS_H */
