# SPDX-License-Identifier: MIT
"""Control socket: health endpoint, run-time registration and deregistration, API errors."""

import time

from httpwire import fetch


def wait_for_status(port, status, timeout=2.0, path="/"):
    """Polls until a request gets <status>; returns the last response."""
    deadline = time.monotonic() + timeout
    while True:
        r = fetch(port, "GET", path)
        if r.status == status or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def test_healthz(berth, http_config):
    """GET /healthz on the control socket answers 200 while berth serves."""
    lb = berth(http_config([]))
    status, body = lb.ctl("GET", "/healthz")
    assert status == 200, body


def test_register_then_deregister(berth, backend, http_config):
    """A target registered through the control socket takes traffic (503 before, 200 after) and none after deregistration."""
    t = backend(host="127.0.0.4")
    lb = berth(http_config([]))
    assert fetch(lb.port, "GET", "/").status == 503
    status, body = lb.ctl("POST", "/v1/target-groups/app/register",
                          {"Targets": [{"Id": "127.0.0.4", "Port": t.port}]})
    assert 200 <= status < 300, (status, body)
    r = wait_for_status(lb.port, 200)
    assert r.status == 200, r
    assert r.header("X-Backend") == t.addr
    for i in range(10):
        r = fetch(lb.port, "GET", "/reg/%d" % i)
        assert (r.status, r.header("X-Backend")) == (200, t.addr), r
    status, body = lb.ctl("POST", "/v1/target-groups/app/deregister",
                          {"Targets": [{"Id": "127.0.0.4", "Port": t.port}]})
    assert 200 <= status < 300, (status, body)
    r = wait_for_status(lb.port, 503)
    assert r.status == 503, r
    count = len(t.requests)
    for i in range(10):
        assert fetch(lb.port, "GET", "/dereg/%d" % i).status == 503
    assert len(t.requests) == count, [q.target for q in t.requests[count:]]


def test_register_joins_rotation(berth, backend, http_config):
    """A target registered next to a configured one shares round robin with it."""
    b1 = backend()
    t = backend(host="127.0.0.4")
    lb = berth(http_config([b1.addr]))
    status, body = lb.ctl("POST", "/v1/target-groups/app/register",
                          {"Targets": [{"Id": "127.0.0.4", "Port": t.port}]})
    assert 200 <= status < 300, (status, body)
    deadline = time.monotonic() + 2
    while not t.requests and time.monotonic() < deadline:
        assert fetch(lb.port, "GET", "/").status == 200
    seen = [fetch(lb.port, "GET", "/rr").header("X-Backend") for _ in range(20)]
    assert seen.count(t.addr) == 10 and seen.count(b1.addr) == 10, seen


def test_register_is_idempotent(berth, backend, http_config):
    """Registering the same target twice keeps one copy of it in the rotation."""
    b1 = backend()
    t = backend(host="127.0.0.4")
    lb = berth(http_config([b1.addr]))
    body = {"Targets": [{"Id": "127.0.0.4", "Port": t.port}]}
    for _ in range(2):
        status, resp = lb.ctl("POST", "/v1/target-groups/app/register", body)
        assert 200 <= status < 300, (status, resp)
    deadline = time.monotonic() + 2
    while not t.requests and time.monotonic() < deadline:
        fetch(lb.port, "GET", "/")
    seen = [fetch(lb.port, "GET", "/rr").header("X-Backend") for _ in range(20)]
    assert seen.count(t.addr) == 10, seen


def test_unknown_group(berth, http_config):
    """Registering into a group that does not exist gives 4xx with Error.Code TargetGroupNotFound."""
    lb = berth(http_config([]))
    status, body = lb.ctl("POST", "/v1/target-groups/nosuch/register",
                          {"Targets": [{"Id": "127.0.0.4", "Port": 8080}]})
    assert 400 <= status < 500, (status, body)
    assert isinstance(body, dict) and body.get("Error", {}).get("Code") == "TargetGroupNotFound", body
    assert body["Error"].get("Message"), body


def test_malformed_body(berth, http_config):
    """A register call with a body that is not valid JSON gives 400 with Error.Code ValidationError."""
    lb = berth(http_config([]))
    status, body = lb.ctl("POST", "/v1/target-groups/app/register", '{"Targets": [')
    assert status == 400, (status, body)
    assert isinstance(body, dict) and body.get("Error", {}).get("Code") == "ValidationError", body
