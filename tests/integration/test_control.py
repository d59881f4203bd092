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


def many_targets(n, first=0):
    """<n> distinct targets 10.1.x.y:8080 (health checks are off: nothing connects)."""
    return [{"Id": "10.1.%d.%d" % ((first + i) // 250, (first + i) % 250 + 1), "Port": 8080}
            for i in range(n)]


def test_issue15_register_call_cap(berth, http_config, tmp_path):
    """A register call of 1000 targets is answered within seconds and a 1000-target "Wait" deregister too, while a call of 1001 gets 400 ValidationError and changes neither the group nor the state file."""
    state = tmp_path / "state.json"
    cfg = http_config([])
    cfg["state_file"] = str(state)
    cfg["target_groups"][0]["deregistration_delay"] = "0s"
    lb = berth(cfg)
    for call in range(3):
        t0 = time.monotonic()
        status, body = lb.ctl("POST", "/v1/target-groups/app/register",
                              {"Targets": many_targets(1000, 1000 * call)})
        took = time.monotonic() - t0
        assert (status, body) == (200, {}), body
        assert took < 3.0, "a 1000-target register call took %.2fs" % took
    status, body = lb.ctl("GET", "/v1/target-groups/app/health")
    assert len(body["TargetHealthDescriptions"]) == 3000
    saved = state.read_bytes()
    for verb in ("register", "deregister"):
        status, body = lb.ctl("POST", "/v1/target-groups/app/%s" % verb,
                              {"Targets": many_targets(1001, 5000)})
        assert status == 400 and body["Error"]["Code"] == "ValidationError", body
        assert "1001" in body["Error"]["Message"] and "1000" in body["Error"]["Message"], body
    status, body = lb.ctl("GET", "/v1/target-groups/app/health")
    assert len(body["TargetHealthDescriptions"]) == 3000
    assert state.read_bytes() == saved
    t0 = time.monotonic()
    status, body = lb.ctl("POST", "/v1/target-groups/app/deregister",
                          {"Targets": many_targets(1000, 1000), "Wait": True})
    took = time.monotonic() - t0
    assert (status, body) == (200, {}), body
    assert took < 3.0, "a 1000-target deregister call took %.2fs" % took
    status, body = lb.ctl("GET", "/v1/target-groups/app/health")
    ids = {d["Target"]["Id"] for d in body["TargetHealthDescriptions"]}
    assert len(ids) == 2000 and "10.1.4.1" not in ids and "10.1.0.1" in ids, len(ids)
