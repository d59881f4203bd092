/* SPDX-License-Identifier: MIT */
/* berth's own answers on an HTTP/1 connection: errors, fixed responses and redirects, and
 * reading away the body of a request berth answered before the body arrived. */
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "http_session_int.h"
#include "http_status.h"

void h1_discard_body(struct bth_http_session *s)
{
    uint64_t n = 0;
    int r = h1_forward_body(&s->xm->req_parser, s->ex.req_body, &s->ex.req_remaining, s->conn.in,
                            s->xm->pending, &n);
    evbuffer_drain(s->xm->pending, evbuffer_get_length(s->xm->pending));
    s->discarded += n;
    if (r < 0 || s->discarded > DISCARD_MAX) {
        h1_session_close(s);
        return;
    }
    if (r == 0)
        return;
    s->ex.req_done = true;
    h1_reset_exchange(s);
    h1_resume_client(s);
}

/* Answers the current request itself: <status> with <body> (<blen> bytes) of <ctype> and
 * any <extra> header lines. The connection closes afterwards unless the request was read
 * whole and the status leaves the stream in sync. <reason> goes to the access log's
 * error_reason (NULL for answers that are not errors: redirects, fixed responses). */
void h1_send_answer(struct bth_http_session *s, int status, const char *ctype, const char *body,
                    size_t blen, const char *extra, const char *reason)
{
    bool framing_error = status == 400 || status == 408 || status == 414 || status == 431 ||
                         status == 463 || status == 501;
    bool can_discard = !s->ex.req_done && s->ex.req_body != BODY_NONE &&
                       s->xm->t_sent.tv_sec == 0 &&
                       (s->ex.req_body != BODY_LENGTH || s->ex.req_remaining <= DISCARD_MAX);
    if (framing_error || (!s->ex.req_done && !can_discard) || !s->client_keepalive ||
        s->ex.resp >= RESP_HEAD_SENT)
        s->close_after = true;
    h1_drop_upstream(s, false);
    s->xm->error_reason = reason;
    if (s->ex.resp >= RESP_HEAD_SENT) {
        /* Part of the target's answer is already out: the only honest signal is a close. */
        h1_log_exchange(s);
        h1_release_target(s);
        h1_session_close(s);
        return;
    }
    s->ex.status = status;
    s->ex.target_status = -1;
    size_t before = evbuffer_get_length(s->conn.out);
    evbuffer_add_printf(s->conn.out, "HTTP/1.1 %d %s\r\nServer: berth\r\n", status,
                        bth_http_reason(status));
    if (ctype != NULL)
        evbuffer_add_printf(s->conn.out, "Content-Type: %s\r\n", ctype);
    evbuffer_add_printf(s->conn.out, "Content-Length: %zu\r\n%s%s\r\n", blen, extra ? extra : "",
                        s->close_after ? "Connection: close\r\n" : "");
    if (!s->ex.is_head_method && blen > 0)
        evbuffer_add(s->conn.out, body, blen);
    s->xm->tx_bytes += evbuffer_get_length(s->conn.out) - before;
    h1_log_exchange(s);
    h1_release_target(s);
    if (s->close_after) {
        h1_set_state(s, SS_CLOSING);
        event_del(&s->timer);
        h1_flush_client(s);
        return;
    }
    h1_flush_client(s);
    if (s->closing)
        return;
    if (!s->ex.req_done) {
        /* Keep the connection: drop the body the target will never see. */
        s->discarded = 0;
        h1_set_state(s, SS_DISCARD);
        h1_arm_timer(s, s->listener->cfg->idle_timeout_ms);
        h1_discard_body(s);
        return;
    }
    h1_reset_exchange(s);
    h1_resume_client(s);
}

/* berth's own error answer: "<status> <text>" as a short plain-text body. */
void h1_send_error(struct bth_http_session *s, int status, const char *reason)
{
    char body[64];
    int blen = snprintf(body, sizeof(body), "%d %s\n", status, bth_http_reason(status));
    h1_send_answer(s, status, "text/plain", body, (size_t)blen,
                   status == 405 ? "Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\n" : NULL,
                   reason);
}

static void expand_template(struct evbuffer *out, const char *tmpl, const char *const vals[5],
                            const size_t lens[5])
{
    static const char *const names[] = {"#{protocol}", "#{host}", "#{port}", "#{path}", "#{query}"};
    const char *p = tmpl;
    while (*p != '\0') {
        const char *hit = strstr(p, "#{");
        if (hit == NULL) {
            evbuffer_add(out, p, strlen(p));
            break;
        }
        evbuffer_add(out, p, (size_t)(hit - p));
        size_t k = 0;
        for (; k < 5; k++) {
            if (strncmp(hit, names[k], strlen(names[k])) == 0)
                break;
        }
        if (k == 5) {
            evbuffer_add(out, "#{", 2);
            p = hit + 2;
            continue;
        }
        evbuffer_add(out, vals[k], lens[k]);
        p = hit + strlen(names[k]);
    }
}

/* Answers with the redirect of <a>. The Location is built from the head's spans, so the
 * head (<head_len> bytes) is drained only afterwards. */
void h1_send_redirect(struct bth_http_session *s, const struct bth_cfg_action *a,
                      const struct route_info *ri, size_t head_len)
{
    char port[8];
    int plen = snprintf(port, sizeof(port), "%u", s->listen_port);
    /* As in ALB, #{path} is the path without its leading "/" (the default is "/#{path}"). */
    const char *path = ri->fwd_path;
    size_t path_len = ri->fwd_path_len;
    if (path_len > 0 && path[0] == '/') {
        path++;
        path_len--;
    }
    const char *proto_now = s->https ? "https" : "http";
    const char *vals[5] = {proto_now, ri->host, port, path, ri->query};
    const size_t lens[5] = {strlen(proto_now), ri->host_len, (size_t)plen, path_len, ri->query_len};
    struct evbuffer *b = evbuffer_new();
    struct evbuffer *proto = evbuffer_new();
    if (b == NULL || proto == NULL) {
        h1_session_close(s); /* out of memory: only this connection pays */
        goto out;
    }
    expand_template(proto, a->redirect_protocol ? a->redirect_protocol : "#{protocol}", vals, lens);
    size_t prl = evbuffer_get_length(proto);
    char scheme[16] = "http";
    if (prl > 0 && prl < sizeof(scheme)) {
        evbuffer_remove(proto, scheme, prl);
        scheme[prl] = '\0';
        for (char *c = scheme; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    }
    struct evbuffer *portb = evbuffer_new();
    expand_template(portb, a->redirect_port ? a->redirect_port : "#{port}", vals, lens);
    char portv[16] = "";
    size_t pl = evbuffer_get_length(portb);
    if (pl < sizeof(portv))
        evbuffer_remove(portb, portv, pl);
    evbuffer_free(portb);
    bool default_port = (strcmp(scheme, "http") == 0 && strcmp(portv, "80") == 0) ||
                        (strcmp(scheme, "https") == 0 && strcmp(portv, "443") == 0);
    evbuffer_add_printf(b, "Location: %s://", scheme);
    expand_template(b, a->redirect_host ? a->redirect_host : "#{host}", vals, lens);
    if (!default_port && portv[0] != '\0')
        evbuffer_add_printf(b, ":%s", portv);
    expand_template(b, a->redirect_path ? a->redirect_path : "/#{path}", vals, lens);
    struct evbuffer *q = evbuffer_new();
    expand_template(q, a->redirect_query ? a->redirect_query : "#{query}", vals, lens);
    if (evbuffer_get_length(q) > 0) {
        evbuffer_add(b, "?", 1);
        evbuffer_add_buffer(b, q);
    }
    evbuffer_free(q);
    evbuffer_add(b, "\r\n", 3); /* with its NUL: the header lines become a C string */
    char *extra = (char *)evbuffer_pullup(b, -1);
    evbuffer_drain(s->conn.in, head_len);
    h1_send_answer(s, a->redirect_status ? a->redirect_status : 301, NULL, NULL, 0, extra, NULL);
out:
    if (b)
        evbuffer_free(b);
    if (proto)
        evbuffer_free(proto);
}
