# SPDX-License-Identifier: MIT
"""Control socket: health endpoint, run-time registration and deregistration, API errors."""

import json
import re
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


UNUSABLE = ["0.0.0.0", "0.1.2.3", "255.255.255.255", "224.0.0.1", "239.255.255.250", "::",
            "ff02::1", "ff05::2", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "[::ffff:1.2.3.4]"]


def test_issue15_unusable_targets_refused(berth, backend, http_config):
    """Register and deregister calls naming 0.0.0.0/8, 255.255.255.255, multicast, :: or an IPv4-mapped IPv6 address get 400 InvalidTarget naming the range and change nothing, even with a valid target beside it; loopback 127.0.0.x and ::1 stay allowed."""
    b = backend()
    lb = berth(http_config([b.addr]))
    failures = []
    for ip in UNUSABLE:
        for verb in ("register", "deregister"):
            status, body = lb.ctl("POST", "/v1/target-groups/app/%s" % verb,
                                  {"Targets": [{"Id": "127.0.0.9", "Port": 80},
                                               {"Id": ip, "Port": 80}]})
            code = body.get("Error", {}).get("Code") if isinstance(body, dict) else None
            msg = body.get("Error", {}).get("Message", "") if isinstance(body, dict) else ""
            if status != 400 or code != "InvalidTarget" or "Targets[1]" not in msg:
                failures.append("%s %s -> %s %r" % (verb, ip, status, body))
    assert not failures, "\n".join(failures)
    status, body = lb.ctl("GET", "/v1/target-groups/app/health")
    assert [d["Target"]["Id"] for d in body["TargetHealthDescriptions"]] == ["127.0.0.2"], body
    status, body = lb.ctl("POST", "/v1/target-groups/app/register",
                          {"Targets": [{"Id": "127.0.0.9", "Port": 80}, {"Id": "::1", "Port": 80},
                                       {"Id": "10.0.0.1", "Port": 80},
                                       {"Id": "fd00::1", "Port": 80}]})
    assert (status, body) == (200, {}), body
    status, body = lb.ctl("GET", "/v1/target-groups/app/health")
    assert len(body["TargetHealthDescriptions"]) == 5, body
    status, body = lb.ctl("POST", "/v1/target-groups/app/register",
                          {"Targets": [{"Id": "224.1.2.3", "Port": 80}]})
    assert "multicast" in body["Error"]["Message"], body


def test_issue15_unusable_config_targets(berth, http_config, tmp_path):
    """A config file with an unusable target (plain or as a mapping) fails `berth -t` and the start with FILE:LINE:COL naming it."""
    import subprocess
    from conftest import berth_bin
    for n, target in enumerate(("0.0.0.0:8080", "[ff02::1]:80", "255.255.255.255:80",
                                {"id": "::ffff:10.0.0.1", "port": 80})):
        sub = tmp_path / ("c%d" % n)
        sub.mkdir()
        cfg = http_config(["127.0.0.2:80", target])
        from conftest import _fill_config, to_yaml
        full, _, _, _ = _fill_config(cfg, str(sub))
        path = str(sub / "berth.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(full) + "\n")
        p = subprocess.run([berth_bin(), "-t", "-c", path], capture_output=True, text=True,
                           timeout=10)
        out = p.stdout + p.stderr
        assert p.returncode == 1, (target, out)
        lines = [ln for ln in out.splitlines() if "unusable target" in ln]
        assert len(lines) == 1 and re.match(re.escape(path) + r":\d+:\d+: ", lines[0]), out
        p = subprocess.run([berth_bin(), "-c", path], capture_output=True, text=True,
                           timeout=10, cwd=str(sub))
        assert p.returncode == 1 and "unusable target" in p.stderr, (target, p.stderr)


def test_issue15_state_file_drops_unusable_targets(berth, http_config, tmp_path):
    """Unusable targets in a state file written by an older berth are dropped with a warning at start; the file's other targets come back."""
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 1, "target_groups": {"app": [
        {"Id": "0.0.0.0", "Port": 80, "Weight": 1},
        {"Id": "127.0.0.9", "Port": 80, "Weight": 1},
        {"Id": "ff02::1", "Port": 80, "Weight": 1}]}}))
    cfg = http_config([])
    cfg["state_file"] = str(state)
    lb = berth(cfg)
    status, body = lb.ctl("GET", "/v1/target-groups/app/health")
    assert [d["Target"]["Id"] for d in body["TargetHealthDescriptions"]] == ["127.0.0.9"], body
    assert "unusable target 0.0.0.0:80 dropped" in lb.stderr, lb.stderr
    assert "2 unusable targets dropped" in lb.stderr, lb.stderr
    assert not list(tmp_path.glob("state.json.corrupt-*"))
