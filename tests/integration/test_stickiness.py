# SPDX-License-Identifier: MIT
"""Sticky sessions: lb_cookie and app_cookie on a target group, and rule-level group
stickiness (BERTHTG) across the target groups of a weighted forward."""

import collections
import time


from cfgbuild import group
from httpwire import fetch


def config(groups, default_action=None):
    lst = {"name": "web", "protocol": "HTTP", "idle_timeout": "60s", "header_timeout": "10s",
           "default_action": default_action or
           {"forward": {"target_groups": [{"name": groups[0]["name"]}]}}}
    return {"workers": 1, "listeners": [lst], "target_groups": list(groups)}


def set_cookies(r):
    """{name: (value, {lowercased attribute: value})} from the Set-Cookie headers of <r>."""
    out = {}
    for line in r.header_all("Set-Cookie"):
        parts = [p.strip() for p in line.split(";")]
        name, _, value = parts[0].partition("=")
        attrs = {}
        for p in parts[1:]:
            k, _, v = p.partition("=")
            attrs[k.strip().lower()] = v.strip()
        out[name.strip()] = (value.strip(), attrs)
    return out


def cookie_value(r, name):
    c = set_cookies(r).get(name)
    assert c is not None, "no Set-Cookie %s in %r" % (name, r.headers)
    assert c[0], "empty %s cookie in %r" % (name, r.headers)
    return c[0]


def tamper(value):
    """<value> with one character in the middle changed to another of the same kind."""
    i = len(value) // 2
    ch = value[i]
    for alphabet in ("0123456789", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"):
        if ch in alphabet:
            new = alphabet[(alphabet.index(ch) + 1) % len(alphabet)]
            break
    else:
        new = "A"
    return value[:i] + new + value[i + 1:]


def get(port, path, cookie=None):
    headers = [("Cookie", cookie)] if cookie else []
    r = fetch(port, "GET", path, headers=headers)
    assert r.status == 200, "GET %s with Cookie %r: %r" % (path, cookie, r)
    return r


LB_COOKIE = {"type": "lb_cookie", "duration": "1h"}


def test_lb_cookie_sticks(berth, backend):
    """lb_cookie stickiness sets BERTH-app (Path=/, Max-Age=3600), keeps requests carrying it on one target, and spreads requests without it round robin."""
    bs = [backend() for _ in range(3)]
    lb = berth(config([group("app", [b.addr for b in bs], stickiness=LB_COOKIE)]))
    r = get(lb.port, "/first")
    first = r.header("X-Backend")
    value, attrs = set_cookies(r).get("BERTH-app", (None, {}))
    assert value, "no BERTH-app cookie set: %r" % r.headers
    assert attrs.get("path") == "/", attrs
    assert attrs.get("max-age") == "3600", attrs
    sticky = []
    for i in range(20):
        cookie = "BERTH-app=%s" % value if i % 2 else "a=1; BERTH-app=%s; b=2" % value
        sticky.append(get(lb.port, "/sticky/%d" % i, cookie).header("X-Backend"))
    assert sticky == [first] * 20, sticky
    plain = collections.Counter(get(lb.port, "/plain/%d" % i).header("X-Backend")
                                for i in range(6))
    assert plain == {b.addr: 2 for b in bs}, plain


def test_lb_cookie_tampered_is_ignored(berth, backend):
    """A BERTH-app cookie with one character changed is ignored: the request succeeds by round robin and gets a fresh, working cookie."""
    bs = [backend() for _ in range(3)]
    lb = berth(config([group("app", [b.addr for b in bs], stickiness=LB_COOKIE)]))
    value = cookie_value(get(lb.port, "/first"), "BERTH-app")
    bad = tamper(value)
    assert bad != value
    seen = collections.Counter()
    fresh = None
    for i in range(6):
        r = get(lb.port, "/tampered/%d" % i, "BERTH-app=%s" % bad)
        seen[r.header("X-Backend")] += 1
        fresh = cookie_value(r, "BERTH-app")
        assert fresh != bad, r.headers
        fresh_target = r.header("X-Backend")
    assert len(seen) >= 2, "a tampered cookie still pinned every request: %r" % seen
    again = [get(lb.port, "/fresh/%d" % i, "BERTH-app=%s" % fresh).header("X-Backend")
             for i in range(5)]
    assert again == [fresh_target] * 5, again


def test_lb_cookie_target_deregistered(berth, backend):
    """When the sticky target is deregistered, requests with its cookie succeed on another target and get a new cookie that sticks there."""
    bs = [backend() for _ in range(3)]
    lb = berth(config([group("app", [b.addr for b in bs], stickiness=LB_COOKIE)]))
    r = get(lb.port, "/first")
    gone = next(b for b in bs if b.addr == r.header("X-Backend"))
    value = cookie_value(r, "BERTH-app")
    status, body = lb.ctl("POST", "/v1/target-groups/app/deregister",
                          {"Targets": [{"Id": gone.host, "Port": gone.port}]})
    assert 200 <= status < 300, (status, body)
    deadline = time.monotonic() + 2.0
    while True:
        r = get(lb.port, "/after", "BERTH-app=%s" % value)
        if r.header("X-Backend") != gone.addr or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert r.header("X-Backend") != gone.addr, "still sent to the deregistered target: %r" % r
    new_target = r.header("X-Backend")
    new_value = cookie_value(r, "BERTH-app")
    assert new_value != value
    count = len(gone.requests)
    old = [get(lb.port, "/old/%d" % i, "BERTH-app=%s" % value).header("X-Backend")
           for i in range(5)]
    assert gone.addr not in old, old
    again = [get(lb.port, "/new/%d" % i, "BERTH-app=%s" % new_value).header("X-Backend")
             for i in range(5)]
    assert again == [new_target] * 5, again
    assert len(gone.requests) == count


def test_lb_cookie_target_dead(berth, backend):
    """When the sticky target's process is gone, requests with its cookie still get 200 from another target and a new cookie that sticks there."""
    bs = [backend() for _ in range(3)]
    lb = berth(config([group("app", [b.addr for b in bs], stickiness=LB_COOKIE)]))
    r = get(lb.port, "/first")
    dead = next(b for b in bs if b.addr == r.header("X-Backend"))
    value = cookie_value(r, "BERTH-app")
    dead.stop()
    time.sleep(0.2)
    r = get(lb.port, "/after", "BERTH-app=%s" % value)
    new_target = r.header("X-Backend")
    assert new_target != dead.addr
    new_value = cookie_value(r, "BERTH-app")
    assert new_value != value
    again = [get(lb.port, "/new/%d" % i, "BERTH-app=%s" % new_value).header("X-Backend")
             for i in range(5)]
    assert again == [new_target] * 5, again
    for i in range(3):
        assert get(lb.port, "/old/%d" % i, "BERTH-app=%s" % value).header("X-Backend") \
            != dead.addr


def add_login(b):
    """Backend <b> answers /login with Set-Cookie: SESSIONID=<its own address>."""
    answer = b._answer

    def login(s, req, close):
        if req.path == "/login":
            body = b"welcome\n"
            b._send(s, 200, [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                             ("Set-Cookie", "SESSIONID=s-%s; Path=/" % b.addr.replace(":", "-"))],
                    body, close)
        else:
            answer(s, req, close)
    b._answer = login


def test_app_cookie(berth, backend):
    """app_cookie stickiness adds BERTHAPP-app when the target sets SESSIONID, and requests carrying both cookies stay on that target while requests without SESSIONID are not sticky."""
    bs = [backend() for _ in range(3)]
    for b in bs:
        add_login(b)
    sticky_cfg = {"type": "app_cookie", "cookie": "SESSIONID", "duration": "1h"}
    lb = berth(config([group("app", [b.addr for b in bs], stickiness=sticky_cfg)]))
    r = get(lb.port, "/login")
    owner = r.header("X-Backend")
    cookies = set_cookies(r)
    assert "SESSIONID" in cookies, "target's own cookie lost: %r" % r.headers
    session = cookies["SESSIONID"][0]
    app = cookie_value(r, "BERTHAPP-app")
    both = "SESSIONID=%s; BERTHAPP-app=%s" % (session, app)
    sticky = [get(lb.port, "/s/%d" % i, both).header("X-Backend") for i in range(12)]
    assert sticky == [owner] * 12, sticky
    loose = collections.Counter(
        get(lb.port, "/n/%d" % i, "BERTHAPP-app=%s" % app).header("X-Backend") for i in range(6))
    assert len(loose) >= 2, "without SESSIONID requests were still pinned: %r" % loose


def test_rule_level_group_stickiness(berth, backend):
    """A forward with stickiness sets BERTHTG, and requests carrying it stay in the target group that first answered."""
    a1, a2, b1, b2 = backend(), backend(), backend(), backend()
    groups = [group("a", [a1.addr, a2.addr]), group("b", [b1.addr, b2.addr])]
    members = {"a": {a1.addr, a2.addr}, "b": {b1.addr, b2.addr}}
    lb = berth(config(groups, {"forward": {
        "target_groups": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}],
        "stickiness": "1h"}}))

    def group_of(r):
        return next((g for g, m in members.items() if r.header("X-Backend") in m), None)

    plain = collections.Counter(group_of(get(lb.port, "/p/%d" % i)) for i in range(30))
    assert set(plain) == {"a", "b"}, "a 50/50 forward used only %r" % plain
    pinned = {}
    for attempt in range(20):  # one cookie per group, to check both directions
        r = get(lb.port, "/first/%d" % attempt)
        g = group_of(r)
        if g not in pinned:
            pinned[g] = cookie_value(r, "BERTHTG")
        if len(pinned) == 2:
            break
    assert set(pinned) == {"a", "b"}, pinned
    for g, value in pinned.items():
        seen = [group_of(get(lb.port, "/s/%d" % i, "BERTHTG=%s" % value)) for i in range(20)]
        assert seen == [g] * 20, "BERTHTG for group %s: %r" % (g, seen)
