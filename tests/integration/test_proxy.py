# SPDX-License-Identifier: MIT
"""ALB mode basics: a GET is proxied, round robin spreads requests, keep-alive holds."""

import collections
import json

from httpwire import Client, fetch


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
