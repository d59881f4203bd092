/* SPDX-License-Identifier: MIT */
/* An HTTP/2 or gRPC health check request, framed by nghttp2 on the checker's bufferevent. */
#include "health_h2.h"

#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <nghttp2/nghttp2.h>

#include "mem.h"

#define GRPC_HEALTH_PATH "/grpc.health.v1.Health/Check"

struct bth_h2_check {
    struct bufferevent *bev; /* borrowed */
    nghttp2_session *ng;
    int32_t id;
    bool grpc, standard, done;
    struct bth_h2_check_result r;
    uint8_t msg[16]; /* the start of the answer's first gRPC message */
    size_t msg_len;
    size_t body_sent;
};

/* An empty gRPC message (uncompressed, length 0): an empty HealthCheckRequest asks about
 * the server as a whole. */
static const uint8_t empty_message[5] = {0, 0, 0, 0, 0};

static ssize_t on_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *arg)
{
    struct bth_h2_check *c = arg;
    (void)ng;
    (void)flags;
    if (bufferevent_write(c->bev, data, len) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

static ssize_t on_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                       nghttp2_data_source *src, void *arg)
{
    struct bth_h2_check *c = arg;
    (void)ng;
    (void)id;
    (void)src;
    size_t n = sizeof(empty_message) - c->body_sent;
    if (n > len)
        n = len;
    memcpy(buf, empty_message + c->body_sent, n);
    c->body_sent += n;
    if (c->body_sent == sizeof(empty_message))
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int small_number(const uint8_t *v, size_t n)
{
    int x = 0;
    if (n == 0 || n > 3)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (v[i] - '0');
    }
    return x;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
    struct bth_h2_check *c = arg;
    (void)ng;
    (void)flags;
    if (frame->hd.stream_id != c->id)
        return 0;
    if (nlen == 7 && memcmp(name, ":status", 7) == 0)
        c->r.status = small_number(value, vlen);
    else if (nlen == 11 && memcmp(name, "grpc-status", 11) == 0)
        c->r.grpc_status = small_number(value, vlen);
    return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *arg)
{
    struct bth_h2_check *c = arg;
    (void)ng;
    (void)flags;
    if (id != c->id)
        return 0;
    size_t room = sizeof(c->msg) - c->msg_len;
    size_t n = len < room ? len : room;
    memcpy(c->msg + c->msg_len, data, n);
    c->msg_len += n;
    return 0;
}

static int on_close(nghttp2_session *ng, int32_t id, uint32_t code, void *arg)
{
    struct bth_h2_check *c = arg;
    (void)ng;
    (void)code;
    if (id == c->id)
        c->done = true;
    return 0;
}

/* grpc.health.v1.HealthCheckResponse: field 1 (status) as a varint, tag 0x08; absent means
 * UNKNOWN (0), as proto3 leaves defaults out. */
static int serving_status(const struct bth_h2_check *c)
{
    if (c->msg_len < 5 || c->msg[0] != 0)
        return -1; /* no message, or a compressed one */
    uint32_t len = (uint32_t)c->msg[1] << 24 | (uint32_t)c->msg[2] << 16 |
                   (uint32_t)c->msg[3] << 8 | c->msg[4];
    if (len == 0)
        return 0;
    if (c->msg_len < 7 || c->msg[5] != 0x08 || c->msg[6] > 0x7f)
        return -1;
    return c->msg[6];
}

struct bth_h2_check *bth_h2_check_start(struct bufferevent *bev, const char *authority,
                                        const char *path, bool grpc, bool tls)
{
    struct bth_h2_check *c = bth_calloc(1, sizeof(*c));
    nghttp2_session_callbacks *cbs = NULL;
    if (c == NULL || nghttp2_session_callbacks_new(&cbs) != 0)
        goto fail;
    c->bev = bev;
    c->grpc = grpc;
    c->standard = grpc && strcmp(path, GRPC_HEALTH_PATH) == 0;
    c->r = (struct bth_h2_check_result){-1, -1, -1};
    nghttp2_session_callbacks_set_send_callback(cbs, on_send);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
    int rv = nghttp2_session_client_new(&c->ng, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
        goto fail;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, 1);
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nva[] = {
        NV(":method", grpc ? "POST" : "GET"),
        NV(":scheme", tls ? "https" : "http"),
        NV(":authority", authority),
        NV(":path", path),
        NV("user-agent", "berth-health-checker/1.0"),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
    };
#undef NV
    nghttp2_data_provider body = {.read_callback = on_body};
    c->id = nghttp2_submit_request(c->ng, NULL, nva, grpc ? 7 : 5, grpc ? &body : NULL, NULL);
    if (c->id < 0 || nghttp2_session_send(c->ng) != 0)
        goto fail;
    return c;
fail:
    bth_h2_check_free(c);
    return NULL;
}

int bth_h2_check_input(struct bth_h2_check *c, struct bth_h2_check_result *out)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t n = evbuffer_get_length(in);
    if (n > 0) {
        const uint8_t *b = evbuffer_pullup(in, (ev_ssize_t)n);
        if (nghttp2_session_mem_recv(c->ng, b, n) < 0)
            return -1;
        evbuffer_drain(in, n);
    }
    if (nghttp2_session_send(c->ng) != 0)
        return -1;
    if (!c->done)
        return 0;
    *out = c->r;
    if (c->standard && c->r.grpc_status == 0)
        out->serving = serving_status(c);
    return 1;
}

void bth_h2_check_free(struct bth_h2_check *c)
{
    if (c == NULL)
        return;
    nghttp2_session_del(c->ng);
    bth_free(c);
}
