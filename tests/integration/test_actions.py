# SPDX-License-Identifier: MIT
"""Rule actions: forward to weighted target groups, redirect with URL templates, fixed
responses, and the config check that refuses a redirect back to the same URL."""

import collections
import re
import subprocess
import time

import pytest

from conftest import berth_bin
from cfgbuild import fwd, group
from httpwire import Client, fetch


def listener_config(groups, default_action, rules=(), **listener):
    lst = {"name": "web", "protocol": "HTTP", "idle_timeout": "60s", "header_timeout": "10s"}
    if rules:
        lst["rules"] = list(rules)
    lst["default_action"] = default_action
    lst.update(listener)
    return {"workers": 1, "listeners": [lst], "target_groups": list(groups)}


# ---- forward ----

def test_forward_splits_by_group_weight(berth, backend):
    """A forward to groups weighted 1, 3 and 0 sends about a quarter and three quarters of 400 requests to the first two and none to the weight-0 group."""
    a, b, z = backend(), backend(), backend()
    cfg = listener_config(
        [group("a", [a.addr]), group("b", [b.addr]), group("z", [z.addr])],
        {"forward": {"target_groups": [{"name": "a", "weight": 1}, {"name": "b", "weight": 3},
                                       {"name": "z", "weight": 0}]}})
    lb = berth(cfg)
    seen = collections.Counter()
    with Client(lb.port) as c:
        for i in range(400):
            r = c.request("GET", "/w/%d" % i)
            assert r.status == 200, "request %d: %r" % (i, r)
            seen[r.header("X-Backend")] += 1
    assert seen[z.addr] == 0 and len(z.requests) == 0, seen
    assert seen[a.addr] + seen[b.addr] == 400, seen
    share_b = seen[b.addr] / 400.0
    assert 0.65 <= share_b <= 0.85, "group b (weight 3 of 4) got %.1f%%: %r" % (share_b * 100, seen)


def test_forward_rule_to_weighted_groups(berth, backend):
    """A rule's forward action with weights 0 and 1 sends every matching request to the weight-1 group while the default action keeps its own group."""
    a, b, d = backend(), backend(), backend()
    cfg = listener_config(
        [group("a", [a.addr]), group("b", [b.addr]), group("d", [d.addr])], fwd("d"),
        rules=[{"priority": 1, "conditions": {"path": ["/api/*"]},
                "action": {"forward": {"target_groups": [{"name": "a", "weight": 0},
                                                         {"name": "b", "weight": 1}]}}}])
    lb = berth(cfg)
    with Client(lb.port) as c:
        api = [c.request("GET", "/api/%d" % i).header("X-Backend") for i in range(20)]
        other = [c.request("GET", "/web/%d" % i).header("X-Backend") for i in range(5)]
    assert api == [b.addr] * 20
    assert other == [d.addr] * 5
    assert a.requests == []


def assert_next_request_ok(c, r, t):
    """After answer <r> on Client <c>: either it said "Connection: close" and the connection
    closes, or the connection serves a next request (to target <t>)."""
    if "close" in (r.header("Connection") or "").lower():
        assert c.wait_closed(2.0) is not None, "Connection: close sent but connection left open"
        return
    r2 = c.request("GET", "/next")
    assert (r2.status, r2.header("X-Backend")) == (200, t.addr), r2


# ---- redirect ----

def assert_untouched(*backends):
    time.sleep(0.1)
    for b in backends:
        assert b.requests == [], "target %s saw %r" % (b.addr, b.requests)


def test_redirect_http_to_https(berth, backend):
    """The redirect {protocol: HTTPS, port: "443", status: 301} answers GET /a?b=1 with 301 and Location https://example.com/a?b=1."""
    t = backend()
    cfg = listener_config([group("app", [t.addr])],
                          {"redirect": {"protocol": "HTTPS", "port": "443", "status": 301}})
    lb = berth(cfg)
    r = fetch(lb.port, "GET", "/a?b=1", host="example.com:%d" % lb.port)
    assert r.status == 301, r
    assert r.header("Location") == "https://example.com/a?b=1", r.headers
    assert_untouched(t)


def test_redirect_host_port_query_templates(berth, backend):
    """Redirect templates fill #{host} without port (also inside a path), #{port} with the listener port, #{protocol} lowercase and #{query} raw, and keep the request path."""
    t = backend()
    cfg = listener_config(
        [group("app", [t.addr])], fwd("app"),
        rules=[{"priority": 1, "conditions": {"path": ["/go/*"]},
                "action": {"redirect": {"host": "www.#{host}", "port": "#{port}",
                                        "query": "from=#{protocol}&#{query}",
                                        "status": 302}}},
               {"priority": 2, "conditions": {"path": ["/site/*"]},
                "action": {"redirect": {"path": "/#{host}/x", "status": 302}}}])
    lb = berth(cfg)
    with Client(lb.port) as c:
        r = c.request("GET", "/site/z", host="example.com:%d" % lb.port)
        assert r.status == 302, r
        assert r.header("Location") == "http://example.com:%d/example.com/x" % lb.port, r.headers
        r = c.request("GET", "/go/p?x=1&y=%20z", host="example.com:%d" % lb.port)
        assert r.status == 302, r
        assert r.header("Location") == "http://www.example.com:%d/go/p?from=http&x=1&y=%%20z" \
            % lb.port, r.headers
        r2 = c.request("GET", "/go/q", host="example.com:%d" % lb.port)  # same connection
        assert r2.status == 302, r2
        assert r2.header("Location") == "http://www.example.com:%d/go/q?from=http&" % lb.port, \
            r2.headers
        r3 = c.request("GET", "/elsewhere", host="example.com:%d" % lb.port)
        assert (r3.status, r3.header("X-Backend")) == (200, t.addr), r3
    assert [q.target for q in t.requests] == ["/elsewhere"]


def test_redirect_path_template(berth, backend):
    """In a redirect path, #{path} is the request path without its leading "/", as in ALB (path "/new/#{path}" turns /old/x into /new/old/x)."""
    t = backend()
    cfg = listener_config(
        [group("app", [t.addr])], fwd("app"),
        rules=[{"priority": 1, "conditions": {"path": ["/old/*"]},
                "action": {"redirect": {"path": "/new/#{path}", "status": 301}}}])
    lb = berth(cfg)
    r = fetch(lb.port, "GET", "/old/x?y=2", host="example.com:%d" % lb.port)
    assert r.status == 301, r
    assert r.header("Location") == "http://example.com:%d/new/old/x?y=2" % lb.port, r.headers
    assert_untouched(t)


def test_redirect_default_port_and_empty_query_omitted(berth, backend):
    """The Location omits the port when it is the protocol's default (80 for http, 443 for https) and "?" when the query is empty."""
    t = backend()
    rules = [
        {"priority": 1, "conditions": {"path": ["/h80*"]},
         "action": {"redirect": {"protocol": "HTTP", "host": "plain.example.com", "port": "80",
                                 "status": 301}}},
        {"priority": 2, "conditions": {"path": ["/s8443*"]},
         "action": {"redirect": {"protocol": "HTTPS", "port": "8443", "status": 301}}},
        {"priority": 3, "conditions": {"path": ["/s443*"]},
         "action": {"redirect": {"protocol": "HTTPS", "port": "443", "status": 302}}},
        {"priority": 4, "conditions": {"path": ["/h443*"]},
         "action": {"redirect": {"protocol": "HTTP", "port": "443", "status": 302}}},
    ]
    lb = berth(listener_config([group("app", [t.addr])], fwd("app"), rules=rules))
    host = "example.com:%d" % lb.port
    cases = [
        ("/h80", 301, "http://plain.example.com/h80"),
        ("/h80?k=v", 301, "http://plain.example.com/h80?k=v"),
        ("/s8443", 301, "https://example.com:8443/s8443"),
        ("/s443", 302, "https://example.com/s443"),
        ("/s443?", 302, "https://example.com/s443"),
        ("/h443", 302, "http://example.com:443/h443"),
    ]
    with Client(lb.port) as c:
        got = []
        for path, _, _ in cases:
            r = c.request("GET", path, host=host)
            got.append((path, r.status, r.header("Location")))
    assert got == cases
    assert_untouched(t)


def test_redirect_status_302_and_post(berth, backend):
    """A 302 redirect answers a POST with a body too, and the connection then either serves the next request or was announced closed."""
    t = backend()
    cfg = listener_config(
        [group("app", [t.addr])], fwd("app"),
        rules=[{"priority": 1, "conditions": {"path": ["/form"]},
                "action": {"redirect": {"host": "forms.example.com", "status": 302}}}])
    lb = berth(cfg)
    with Client(lb.port) as c:
        r = c.request("POST", "/form", body=b"a=1&b=2" * 1000, host="example.com:%d" % lb.port)
        assert r.status == 302, r
        assert r.header("Location") == "http://forms.example.com:%d/form" % lb.port, r.headers
        assert_next_request_ok(c, r, t)
    assert [q.target for q in t.requests] in ([], ["/next"])


# ---- fixed_response ----

def test_fixed_response_rule(berth, backend):
    """A fixed_response rule answers GET and POST with exactly its status, Content-Type and body, the target never sees them, and keep-alive still works."""
    t = backend()
    body = "down for maintenance\n"
    cfg = listener_config(
        [group("app", [t.addr])], fwd("app"),
        rules=[{"priority": 1, "conditions": {"path": ["/maint*"]},
                "action": {"fixed_response": {"status": 503, "content_type": "text/plain",
                                              "body": body}}}])
    lb = berth(cfg)
    with Client(lb.port) as c:
        r = c.request("GET", "/maint")
        assert r.status == 503, r
        assert r.header("Content-Type") == "text/plain", r.headers
        assert r.body == body.encode(), r
        assert r.header("X-Backend") is None, r.headers
        r = c.request("GET", "/ok")
        assert (r.status, r.header("X-Backend")) == (200, t.addr), r
    with Client(lb.port) as c:
        r = c.request("POST", "/maintenance", body=b"z" * 20000)
        assert (r.status, r.header("Content-Type"), r.body) == \
            (503, "text/plain", body.encode()), r
        assert_next_request_ok(c, r, t)
    assert [q.target for q in t.requests] in (["/ok"], ["/ok", "/next"])


def test_fixed_response_default_action(berth, backend):
    """A fixed_response default action answers unmatched requests with its JSON body while a rule still forwards."""
    t = backend()
    body = '{"error":"no route"}'
    cfg = listener_config(
        [group("app", [t.addr])],
        {"fixed_response": {"status": 404, "content_type": "application/json", "body": body}},
        rules=[{"priority": 7, "conditions": {"path": ["/app/*"]}, "action": fwd("app")}])
    lb = berth(cfg)
    with Client(lb.port) as c:
        r = c.request("GET", "/nothing/here")
        assert (r.status, r.header("Content-Type"), r.body) == \
            (404, "application/json", body.encode()), r
        r = c.request("GET", "/app/x")
        assert (r.status, r.header("X-Backend")) == (200, t.addr), r
    assert [q.target for q in t.requests] == ["/app/x"]


def test_fixed_response_200_empty_body(berth, backend):
    """A fixed_response with status 200 and no body answers 200 with an empty body and Content-Length 0."""
    t = backend()
    cfg = listener_config(
        [group("app", [t.addr])], fwd("app"),
        rules=[{"priority": 1, "conditions": {"path": ["/ping"]},
                "action": {"fixed_response": {"status": 200, "content_type": "text/plain"}}}])
    lb = berth(cfg)
    with Client(lb.port) as c:
        r = c.request("GET", "/ping")
        assert (r.status, r.body) == (200, b""), r
        assert r.header("Content-Length") == "0", r.headers
        assert c.request("GET", "/x").header("X-Backend") == t.addr
    assert [q.target for q in t.requests] == ["/x"]


# ---- config check ----

CHECK = """\
workers: 1
control: {socket: %(tmp)s/check.sock}
access_log: off
listeners:
  - name: web
    protocol: HTTP
    bind: 127.0.0.1:18080
    rules:
      - priority: 10
        conditions: {path: ["/old/*"]}
        action: %(rule_action)s
    default_action: %(default_action)s
target_groups:
  - name: app
    protocol: HTTP
    health_check: {enabled: false}
    targets: ["127.0.0.2:8080"]
"""
FORWARD = "{forward: {target_groups: [{name: app}]}}"


def check(tmp_path, text):
    path = str(tmp_path / "check.yaml")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([berth_bin(), "-t", "-c", path], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    return path, p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


@pytest.mark.parametrize("where", ["rule", "default_action"])
def test_redirect_to_itself_refused(tmp_path, where):
    """`berth -t -c` refuses a redirect that keeps every URL component (a loop) with FILE:LINE:COL and exit 1."""
    loop = "{redirect: {status: 301}}"
    text = CHECK % {"tmp": tmp_path, "rule_action": loop if where == "rule" else FORWARD,
                    "default_action": loop if where == "default_action" else FORWARD}
    path, rc, out = check(tmp_path, text)
    line = next(i + 1 for i, ln in enumerate(text.splitlines()) if "{redirect:" in ln)
    assert rc == 1, out
    assert any(re.match(r"^%s:%d:\d+: \S" % (re.escape(path), line), ln)
               for ln in out.splitlines()), "expected %s:%d:COL: ... in:\n%s" % (path, line, out)


@pytest.mark.parametrize("redirect", [
    '{protocol: HTTPS}', '{host: "www.#{host}"}', '{port: "8443"}', '{path: "/new/x"}',
    '{query: "a=1"}'], ids=["protocol", "host", "port", "path", "query"])
def test_redirect_changing_a_component_accepted(tmp_path, redirect):
    """`berth -t -c` accepts a redirect that changes at least one URL component."""
    text = CHECK % {"tmp": tmp_path, "rule_action": "{redirect: %s}" % redirect,
                    "default_action": FORWARD}
    _, rc, out = check(tmp_path, text)
    assert rc == 0, out
