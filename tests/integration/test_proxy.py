# SPDX-License-Identifier: MIT
"""ALB mode basics: a GET is proxied, round robin spreads requests, keep-alive holds."""

import collections
import json

from httpwire import Client, fetch, pattern_bytes


def test_get_is_proxied(berth, backend, http_config):
    """A GET through berth returns the target's status, headers and body, and the target saw it."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    r = fetch(lb.port, "GET", "/hello?x=1", headers=[("User-Agent", "itest/1")])
    assert r.status == 200, r
    assert r.header("X-Backend") == b1.addr
    assert r.header("Content-Type") == "application/json"
    assert json.loads(r.body) == {"backend": b1.addr, "method": "GET", "path": "/hello?x=1"}
    assert len(b1.requests) == 1
    seen = b1.requests[0]
    assert (seen.method, seen.target, seen.version) == ("GET", "/hello?x=1", "HTTP/1.1")
    assert seen.header("User-Agent") == "itest/1"


def test_target_status_passes_through(berth, backend, http_config):
    """A target's non-200 status (404, 500, 204) reaches the client unchanged."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    with Client(lb.port) as c:
        for code in (404, 500, 204, 418):
            r = c.request("GET", "/status/%d" % code)
            assert r.status == code, r
            assert r.header("X-Backend") == b1.addr
            if code != 204:
                assert r.body == b"status %d\n" % code


def test_round_robin_is_even(berth, backend, http_config):
    """30 requests over 3 targets with round robin land 10 (+-1) on each target."""
    bs = [backend() for _ in range(3)]
    lb = berth(http_config([b.addr for b in bs]))
    seen = collections.Counter()
    for i in range(30):
        r = fetch(lb.port, "GET", "/rr/%d" % i)
        assert r.status == 200, r
        seen[r.header("X-Backend")] += 1
    assert set(seen) == {b.addr for b in bs}, seen
    for b in bs:
        assert 9 <= seen[b.addr] <= 11, seen
        assert 9 <= len(b.requests) <= 11


def test_client_keepalive_connection_reused(berth, backend, http_config):
    """50 requests on one client TCP connection all succeed without berth closing it."""
    bs = [backend(), backend()]
    lb = berth(http_config([b.addr for b in bs]))
    with Client(lb.port) as c:
        port_before = c.local_addr
        for i in range(50):
            r = c.request("GET", "/ka/%d" % i)
            assert r.status == 200, "request %d: %r" % (i, r)
            assert "close" not in (r.header("Connection") or "").lower(), r
            assert json.loads(r.body)["path"] == "/ka/%d" % i
        assert c.local_addr == port_before
        assert c.wait_closed(0.2) is None, "berth closed the keep-alive connection"
    assert sum(len(b.requests) for b in bs) == 50


def test_upstream_connections_pooled(berth, backend, http_config):
    """Sequential requests reuse pooled keep-alive connections to the targets."""
    bs = [backend(), backend()]
    lb = berth(http_config([b.addr for b in bs]))
    with Client(lb.port) as c:
        for i in range(20):
            assert c.request("GET", "/pool/%d" % i).status == 200
    for b in bs:
        assert len(b.requests) == 10
        assert b.connections <= 2, "target %s got %d connections for 10 sequential requests" % (
            b.addr, b.connections)


MINIMAL_YAML = """\
workers: 1
listeners:
  - name: web
    protocol: HTTP
    bind: 127.0.0.1:@PORT@
    idle_timeout: 60s          # also bounds the wait for the target's answer (504)
    header_timeout: 10s        # whole request head must arrive in this, else 408
    max_request_line: 16k      # longer request line -> 414
    max_header_size: 64k       # larger header block -> 431
    default_action: {forward: {target_groups: [{name: app}]}}
target_groups:
  - name: app
    protocol: HTTP
    health_check: {enabled: false}
    targets: ["%s", "%s"]
"""


def test_hand_written_yaml_config(berth, backend):
    """A hand-written YAML config with comments and flow mappings serves traffic to both targets."""
    b1, b2 = backend(), backend()
    lb = berth(MINIMAL_YAML % (b1.addr, b2.addr))
    seen = {fetch(lb.port, "GET", "/").header("X-Backend") for _ in range(4)}
    assert seen == {b1.addr, b2.addr}


def test_pipelined_requests(berth, backend, http_config):
    """Three requests sent in one write get three answers, in order, on the same connection."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    with Client(lb.port) as c:
        c.send(b"".join(b"GET /pipe/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3)))
        paths = [json.loads(c.response().body)["path"] for _ in range(3)]
        assert paths == ["/pipe/0", "/pipe/1", "/pipe/2"]
        assert c.request("GET", "/after").status == 200


def _fixed_lb(berth, backend):
    """/fixed* -> a fixed 200 "ok", everything else to one target."""
    b1 = backend()
    cfg = {
        "workers": 1,
        "listeners": [{"name": "web", "protocol": "HTTP",
                       "rules": [{"priority": 1, "conditions": {"path": ["/fixed*"]},
                                  "action": {"fixed_response": {"status": 200,
                                                                "body": "ok"}}}],
                       "default_action": {"forward": {"target_groups": [{"name": "app"}]}}}],
        "target_groups": [{"name": "app", "protocol": "HTTP",
                           "health_check": {"enabled": False}, "targets": [b1.addr]}],
    }
    return berth(cfg), b1


def test_pipelined_after_berths_own_answer(berth, backend):
    """Requests pipelined behind one berth answers itself (a fixed response) are answered in order without waiting for more bytes."""
    lb, b1 = _fixed_lb(berth, backend)
    with Client(lb.port, timeout=5) as c:
        c.send(b"GET /fixed/1 HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /fixed/2 HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /to-target HTTP/1.1\r\nHost: x\r\n\r\n")
        bodies = [c.response().body for _ in range(3)]
        assert bodies[:2] == [b"ok", b"ok"]
        assert json.loads(bodies[2])["path"] == "/to-target"


def test_many_pipelined_answers_with_bodies(berth, backend):
    """2,000 pipelined requests with bodies that berth answers itself are all answered, in order, and berth stays up (no call nesting per request)."""
    lb, _ = _fixed_lb(berth, backend)
    n = 2000
    with Client(lb.port, timeout=10) as c:
        c.send(b"".join(b"PUT /fixed/%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx" % i
                        for i in range(n)))
        for _ in range(n):
            r = c.response()
            assert r.status == 200 and r.body == b"ok", r
    assert lb.alive()


def test_head_response_has_no_body(berth, backend, http_config):
    """A HEAD answer keeps the target's Content-Length but carries no body, and the connection stays usable."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    with Client(lb.port, timeout=5) as c:
        r = c.request("HEAD", "/big?n=1000")
        assert r.status == 200, r
        assert r.header("Content-Length") == "1000"
        r2 = c.request("GET", "/big?n=10")
        assert r2.status == 200 and len(r2.body) == 10, r2


def test_http10_client(berth, backend, http_config):
    """An HTTP/1.0 client gets a chunked target answer as a plain body and the connection then closes."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    with Client(lb.port, timeout=5) as c:
        c.send(b"GET /chunked?n=50000 HTTP/1.0\r\nHost: x\r\n\r\n")
        r = c.response()
        assert r.status == 200, r
        assert not r.chunked and r.header("Transfer-Encoding") is None, r.headers
        assert r.body == pattern_bytes(50000)
        assert c.wait_closed(2.0) is not None
