/* SPDX-License-Identifier: MIT */
/* OpenSSL server contexts, SNI selection, policies and rotating ticket keys. */
#include "tls.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "log.h"
#include "mem.h"

/* ---- policies ---------------------------------------------------------------------------- */

struct policy {
    const char *name;
    int min_version;
    const char *ciphers12; /* TLS 1.2 and older */
};

/* modern: TLS 1.2 and 1.3, forward-secret AEAD ciphers only (TLS 1.3's suites are all AEAD
 * and forward-secret). intermediate: also TLS 1.0/1.1 and CBC suites for old clients. */
static const struct policy policies[] = {
    {"modern", TLS1_2_VERSION,
     "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
     "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"},
    {"intermediate", TLS1_VERSION,
     "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
     "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
     "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:"
     "@SECLEVEL=0"},
};

static const struct policy *find_policy(const char *name)
{
    if (name == NULL)
        return &policies[0];
    for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
        if (strcmp(policies[i].name, name) == 0)
            return &policies[i];
    }
    return NULL;
}

/* ---- ticket keys ------------------------------------------------------------------------- */

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

static pthread_rwlock_t keys_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct ticket_key keys[2]; /* [0] current (encrypts), [1] previous (decrypts only) */
static bool keys_ready;

static int new_key(struct ticket_key *k)
{
    return RAND_bytes(k->name, sizeof(k->name)) == 1 && RAND_bytes(k->aes, sizeof(k->aes)) == 1 &&
                   RAND_bytes(k->hmac, sizeof(k->hmac)) == 1
               ? 0
               : -1;
}

int bth_tls_init(void)
{
    if (new_key(&keys[0]) != 0)
        return -1;
    keys[1] = keys[0];
    keys_ready = true;
    return 0;
}

void bth_tls_rotate_ticket_key(void)
{
    struct ticket_key k;
    if (new_key(&k) != 0)
        return;
    pthread_rwlock_wrlock(&keys_lock);
    keys[1] = keys[0];
    keys[0] = k;
    pthread_rwlock_unlock(&keys_lock);
    OPENSSL_cleanse(&k, sizeof(k));
}

void bth_tls_fini(void)
{
    OPENSSL_cleanse(keys, sizeof(keys));
    keys_ready = false;
}

static int setup_ticket_crypto(const struct ticket_key *k, unsigned char *iv, EVP_CIPHER_CTX *ctx,
                               EVP_MAC_CTX *hctx, int enc)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof(k->hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -1;
    if (enc)
        return EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, k->aes, iv) == 1 ? 0 : -1;
    return EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, k->aes, iv) == 1 ? 0 : -1;
}

/* OpenSSL's ticket callback: 1 = ok, 2 = ok but renew the ticket (it used the old key),
 * 0 = unknown key (full handshake), -1 = error. Runs on worker threads. */
static int on_ticket_key(SSL *s, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *ctx,
                         EVP_MAC_CTX *hctx, int enc)
{
    struct ticket_key k;
    int rc = 0;
    pthread_rwlock_rdlock(&keys_lock);
    if (enc) {
        k = keys[0];
        pthread_rwlock_unlock(&keys_lock);
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1)
            return -1;
        memcpy(key_name, k.name, sizeof(k.name));
        rc = setup_ticket_crypto(&k, iv, ctx, hctx, 1) == 0 ? 1 : -1;
    } else {
        int which = memcmp(key_name, keys[0].name, 16) == 0   ? 0
                    : memcmp(key_name, keys[1].name, 16) == 0 ? 1
                                                              : -1;
        if (which >= 0)
            k = keys[which];
        pthread_rwlock_unlock(&keys_lock);
        if (which < 0)
            return 0;
        /* Renew when the old key was used, and always in TLS 1.3: OpenSSL (like RFC 8446
         * C.4 asks) does not offer a ticket twice, so a resumed connection that gets no
         * fresh ticket makes the client's next connection a full handshake. */
        bool renew = which != 0 || SSL_version(s) >= TLS1_3_VERSION;
        rc = setup_ticket_crypto(&k, iv, ctx, hctx, 0) == 0 ? (renew ? 2 : 1) : -1;
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

/* ---- server contexts --------------------------------------------------------------------- */

struct sni_entry {
    char *name;   /* owned, lowercase; "*.example.com" for wildcards */
    SSL_CTX *ctx; /* borrowed from the certs array */
};

struct bth_tls_server {
    atomic_int refcnt;
    SSL_CTX **ctxs; /* owned: one per certificate; [0] is the default */
    size_t nctxs;
    struct sni_entry *names; /* owned */
    size_t nnames;
    bool h2; /* ALPN offers h2 (the listener's http2.enabled) */
};

/* The protocol <name> (<len> bytes) in the client's ALPN list <in>, or NULL. */
static const unsigned char *alpn_find(const unsigned char *in, unsigned inlen, const char *name,
                                      unsigned len)
{
    for (unsigned i = 0; i + 1 <= inlen;) {
        unsigned n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == len && memcmp(in + i + 1, name, len) == 0)
            return in + i + 1;
        i += 1 + n;
    }
    return NULL;
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    /* berth prefers h2, then HTTP/1.1, whatever the client's order (as ALB and nginx);
     * without a match the handshake goes on without ALPN (HTTP/1.1). */
    const struct bth_tls_server *t = arg;
    const unsigned char *p = t->h2 ? alpn_find(in, inlen, "h2", 2) : NULL;
    if (p != NULL) {
        *out = p;
        *outlen = 2;
        return SSL_TLSEXT_ERR_OK;
    }
    if ((p = alpn_find(in, inlen, "http/1.1", 8)) != NULL) {
        *out = p;
        *outlen = 8;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static bool wildcard_match(const char *pattern, const char *host)
{
    /* "*.example.com" matches exactly one label: "a.example.com", not "a.b.example.com". */
    const char *dot = strchr(host, '.');
    return dot != NULL && dot != host && strcasecmp(pattern + 1, dot) == 0;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    struct bth_tls_server *t = arg;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (host == NULL)
        return SSL_TLSEXT_ERR_OK; /* no SNI: the default certificate */
    for (size_t i = 0; i < t->nnames; i++) {
        if (t->names[i].name[0] != '*' && strcasecmp(t->names[i].name, host) == 0) {
            SSL_set_SSL_CTX(ssl, t->names[i].ctx);
            return SSL_TLSEXT_ERR_OK;
        }
    }
    for (size_t i = 0; i < t->nnames; i++) {
        if (t->names[i].name[0] == '*' && wildcard_match(t->names[i].name, host)) {
            SSL_set_SSL_CTX(ssl, t->names[i].ctx);
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

static void add_error(struct bth_err *err, const char *file, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    bth_err_add(err, "%s: %s%s%s", file, what, buf[0] ? ": " : "", buf);
}

static SSL_CTX *make_ctx(const struct policy *p, const struct bth_cfg_cert *c, struct bth_err *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, p->min_version);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_SSLv3);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (p->min_version < TLS1_2_VERSION)
        SSL_CTX_set_security_level(ctx, 0);
    if (SSL_CTX_set_cipher_list(ctx, p->ciphers12) != 1)
        goto fail;
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* tickets only: no shared cache */
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
    SSL_CTX_set_num_tickets(ctx, 1); /* one TLS 1.3 ticket per handshake is enough (default 2) */
    if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
        add_error(err, c->cert, "cannot load certificate");
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1) {
        add_error(err, c->key, "cannot load private key");
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        add_error(err, c->key, "private key does not match certificate");
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static int add_name(struct bth_tls_server *t, const char *name, size_t len, SSL_CTX *ctx)
{
    struct sni_entry *v = bth_realloc(t->names, (t->nnames + 1) * sizeof(*v));
    if (v == NULL)
        return -1;
    t->names = v;
    char *n = bth_strndup(name, len);
    if (n == NULL)
        return -1;
    for (char *p = n; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    v[t->nnames].name = n;
    v[t->nnames].ctx = ctx;
    t->nnames++;
    return 0;
}

/* The DNS names of the certificate in <ctx>: its subjectAltNames, else its CN. */
static int collect_names(struct bth_tls_server *t, SSL_CTX *ctx)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int rc = 0, found = 0;
    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type != GEN_DNS)
            continue;
        const unsigned char *s = ASN1_STRING_get0_data(gn->d.dNSName);
        rc |= add_name(t, (const char *)s, (size_t)ASN1_STRING_length(gn->d.dNSName), ctx);
        found++;
    }
    GENERAL_NAMES_free(sans);
    if (found == 0) {
        char cn[256];
        int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
        if (n > 0)
            rc |= add_name(t, cn, (size_t)n, ctx);
    }
    return rc;
}

struct bth_tls_server *bth_tls_server_create(const struct bth_cfg_listener *l, struct bth_err *err)
{
    const struct policy *p = find_policy(l->ssl_policy);
    if (p == NULL) {
        bth_err_add(err, "listener %s: unknown ssl_policy \"%s\" (modern or intermediate)", l->name,
                    l->ssl_policy);
        return NULL;
    }
    struct bth_tls_server *t = bth_calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    atomic_init(&t->refcnt, 1);
    t->h2 = l->protocol == BTH_PROTO_HTTPS && l->http2.enabled; /* not NLB TLS listeners */
    t->ctxs = bth_calloc(l->ncertificates ? l->ncertificates : 1, sizeof(*t->ctxs));
    if (t->ctxs == NULL)
        goto fail;
    for (size_t i = 0; i < l->ncertificates; i++) {
        SSL_CTX *ctx = make_ctx(p, &l->certificates[i], err);
        if (ctx == NULL)
            goto fail;
        t->ctxs[t->nctxs++] = ctx;
        /* SNI may switch the connection to this context before ALPN is chosen. */
        SSL_CTX_set_alpn_select_cb(ctx, on_alpn, t);
        if (collect_names(t, ctx) != 0)
            goto fail;
    }
    if (t->nctxs == 0) {
        bth_err_add(err, "listener %s: no certificate", l->name);
        goto fail;
    }
    /* Only the default context sees the ClientHello, so it alone needs the callback. */
    SSL_CTX_set_tlsext_servername_callback(t->ctxs[0], on_servername);
    SSL_CTX_set_tlsext_servername_arg(t->ctxs[0], t);
    return t;
fail:
    bth_tls_server_unref(t);
    return NULL;
}

void bth_tls_server_ref(struct bth_tls_server *t)
{
    atomic_fetch_add_explicit(&t->refcnt, 1, memory_order_relaxed);
}

void bth_tls_server_unref(struct bth_tls_server *t)
{
    if (t == NULL || atomic_fetch_sub_explicit(&t->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < t->nctxs; i++)
        SSL_CTX_free(t->ctxs[i]);
    for (size_t i = 0; i < t->nnames; i++)
        bth_free(t->names[i].name);
    bth_free(t->names);
    bth_free(t->ctxs);
    bth_free(t);
}

SSL *bth_tls_server_new_ssl(struct bth_tls_server *t, int fd)
{
    SSL *ssl = SSL_new(t->ctxs[0]);
    if (ssl == NULL)
        return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

int bth_tls_check_listener(const struct bth_cfg_listener *l, struct bth_err *err)
{
    if (l->protocol != BTH_PROTO_HTTPS && l->protocol != BTH_PROTO_TLS)
        return 0;
    struct bth_tls_server *t = bth_tls_server_create(l, err);
    if (t == NULL)
        return -1;
    bth_tls_server_unref(t);
    return 0;
}

/* ---- client contexts (TLS to targets) -------------------------------------------------- */

struct bth_tls_client {
    atomic_int refcnt;
    SSL_CTX *ctx;      /* owned */
    char *server_name; /* owned, may be NULL */
};

struct bth_tls_client *bth_tls_client_create(const struct bth_cfg_target_group *g,
                                             struct bth_err *err)
{
    struct bth_tls_client *c = bth_calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    atomic_init(&c->refcnt, 1);
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL)
        goto fail;
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
    /* Sessions are kept per target by the caller, not in OpenSSL's cache. */
    SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    if (g->tls_verify) {
        int ok = g->tls_ca_file != NULL
                     ? SSL_CTX_load_verify_locations(c->ctx, g->tls_ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(c->ctx);
        if (ok != 1) {
            add_error(err, g->tls_ca_file ? g->tls_ca_file : "system CA store",
                      "cannot load CA certificates");
            goto fail;
        }
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    }
    /* HTTP/2 and gRPC groups ask for h2; a target that does not choose it is refused when
     * the handshake ends (berth does not fall back to HTTP/1.1 for them, as ELB) */
    static const unsigned char h2[] = {2, 'h', '2'};
    if (g->protocol_version != BTH_PV_HTTP1 && SSL_CTX_set_alpn_protos(c->ctx, h2, sizeof(h2)) != 0)
        goto fail;
    if (g->tls_server_name != NULL && (c->server_name = bth_strdup(g->tls_server_name)) == NULL)
        goto fail;
    return c;
fail:
    bth_tls_client_unref(c);
    return NULL;
}

void bth_tls_client_ref(struct bth_tls_client *c)
{
    atomic_fetch_add_explicit(&c->refcnt, 1, memory_order_relaxed);
}

void bth_tls_client_unref(struct bth_tls_client *c)
{
    if (c == NULL || atomic_fetch_sub_explicit(&c->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    SSL_CTX_free(c->ctx);
    bth_free(c->server_name);
    bth_free(c);
}

SSL *bth_tls_client_new_ssl(struct bth_tls_client *c, int fd, SSL_SESSION *session)
{
    SSL *ssl = SSL_new(c->ctx);
    if (ssl == NULL)
        return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    if (c->server_name != NULL) {
        SSL_set_tlsext_host_name(ssl, c->server_name);
        SSL_set1_host(ssl, c->server_name); /* checked only when verification is on */
    }
    if (session != NULL)
        SSL_set_session(ssl, session);
    SSL_set_connect_state(ssl);
    return ssl;
}
