/* SPDX-License-Identifier: MIT */
/* Stickiness on an HTTP/1 exchange: the group cookie of a forward rule (BERTHTG), the
 * target cookies of lb_cookie (BERTH-<group>) and app_cookie (BERTHAPP-<group>) groups,
 * signed by sticky.c, read from the request and set on the response. */
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "balancer.h"
#include "clock.h"
#include "http_session_int.h"
#include "sticky.h"
#include "target.h"

const char *h1_cookie_value(const struct bth_http_head *h, const char *name, size_t *len)
{
    for (unsigned i = 0; i < h->nhdrs; i++) {
        const struct bth_http_hdr *hd = &h->hdrs[i];
        const char *v;
        if (hd->kind == BTH_HDR_COOKIE &&
            bth_cookie_find(bth_span_ptr(h, hd->value), hd->value.len, name, &v, len))
            return v;
    }
    return NULL;
}

/* Picks the group of a forward action; with rule-level stickiness the client's BERTHTG
 * cookie keeps it on its group while that group still has weight. */
struct bth_snap_group *h1_pick_group(struct bth_http_session *s, const struct bth_snap_action *act)
{
    if (act->cfg->stickiness_ms > 0 && act->nforwards > 1) {
        size_t vlen;
        const char *v = h1_cookie_value(&s->xm->req, "BERTHTG", &vlen);
        char name[160];
        if (v != NULL &&
            bth_sticky_verify("tg", v, vlen, bth_clock_unix_s(), name, sizeof(name)) > 0) {
            for (size_t i = 0; i < act->nforwards; i++) {
                if (act->forwards[i].weight > 0 &&
                    strcmp(act->forwards[i].group->cfg->name, name) == 0)
                    return act->forwards[i].group;
            }
        }
        s->ex.set_tg_cookie = true;
        s->ex.tg_cookie_ms = act->cfg->stickiness_ms;
    }
    return bth_lb_pick_group(&s->w->rand, act);
}

/* The target a stickiness cookie names, if it is still in the group and takes traffic. */
struct bth_target *h1_sticky_target(struct bth_http_session *s)
{
    const struct bth_cfg_target_group *gc = s->ex.group->cfg;
    char cname[160], scope[160], name[160];
    const char *prefix = gc->stickiness == BTH_STICKY_LB_COOKIE ? "BERTH-" : "BERTHAPP-";
    snprintf(cname, sizeof(cname), "%s%s", prefix, gc->name);
    snprintf(scope, sizeof(scope), "%s|%s", prefix, gc->name);
    s->ex.set_target_cookie = gc->stickiness == BTH_STICKY_LB_COOKIE;
    size_t vlen, alen;
    const char *v = h1_cookie_value(&s->xm->req, cname, &vlen);
    if (v == NULL)
        return NULL;
    if (gc->stickiness == BTH_STICKY_APP_COOKIE &&
        h1_cookie_value(&s->xm->req, gc->stickiness_cookie, &alen) == NULL)
        return NULL; /* the application's session ended: no longer sticky */
    if (bth_sticky_verify(scope, v, vlen, bth_clock_unix_s(), name, sizeof(name)) <= 0)
        return NULL;
    for (size_t i = 0; i < s->ex.group->ntargets; i++) {
        struct bth_target *t = s->ex.group->targets[i];
        if (strcmp(t->addr.text, name) == 0)
            return bth_target_takes_traffic(t) ? t : NULL;
    }
    return NULL;
}

/* Set-Cookie lines for stickiness, added to the target's response head. */
void h1_add_sticky_cookies(struct bth_http_session *s, struct evbuffer *out)
{
    char value[BTH_STICKY_VALUE_MAX];
    int64_t now_s = bth_clock_unix_s();
    if (s->ex.set_tg_cookie && s->ex.group != NULL) {
        uint64_t ttl = s->ex.tg_cookie_ms / 1000;
        size_t n = bth_sticky_sign("tg", s->ex.group->cfg->name, strlen(s->ex.group->cfg->name),
                                   now_s + (int64_t)ttl, value);
        if (n > 0)
            evbuffer_add_printf(out, "Set-Cookie: BERTHTG=%s; Path=/; Max-Age=%llu\r\n", value,
                                (unsigned long long)ttl);
    }
    if (s->target == NULL || s->ex.group == NULL)
        return;
    const struct bth_cfg_target_group *gc = s->ex.group->cfg;
    bool app = gc->stickiness == BTH_STICKY_APP_COOKIE && s->ex.resp_sets_app_cookie;
    if (!s->ex.set_target_cookie && !app)
        return;
    const char *prefix = app ? "BERTHAPP-" : "BERTH-";
    char scope[160];
    snprintf(scope, sizeof(scope), "%s|%s", prefix, gc->name);
    uint64_t ttl = gc->stickiness_duration_ms / 1000;
    const char *t = s->target->addr.text;
    if (bth_sticky_sign(scope, t, strlen(t), now_s + (int64_t)ttl, value) > 0)
        evbuffer_add_printf(out, "Set-Cookie: %s%s=%s; Path=/; Max-Age=%llu\r\n", prefix, gc->name,
                            value, (unsigned long long)ttl);
}
