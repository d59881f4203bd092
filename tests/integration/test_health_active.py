# SPDX-License-Identifier: MIT
"""Active health checks: the ELB state machine (initial, healthy, unhealthy) with thresholds
counted check by check, reason codes and descriptions, matcher forms, timeouts, TCP checks,
a fixed check port, traffic only to healthy targets, fail open, transition logs and metrics,
and check connections kept apart from the pooled data-plane connections.

Thresholds are counted at the backend: a "switch" backend records every answer it gives to
the check path just before sending it, and the health view is polled every few ms; the
count read right after the poll that first sees the new state is the number of checks the
flip took (the next check is a whole interval away)."""

import subprocess
import time

import pytest

from backends import refused_addr
from httpwire import Client, fetch
from conftest import berth_bin, metric

HC_UA = "berth-health-checker/1.0"
POLL = 0.01


# ---- helpers ----

def tid(d):
    ip, port = d["Target"]["Id"], d["Target"]["Port"]
    return "[%s]:%d" % (ip, port) if ":" in ip else "%s:%d" % (ip, port)


def view(lb, group="app"):
    """{"ip:port": TargetHealthDescription} from GET /v1/target-groups/GROUP/health."""
    status, body = lb.ctl("GET", "/v1/target-groups/%s/health" % group)
    assert status == 200, (status, body)
    return {tid(d): d for d in body["TargetHealthDescriptions"]}


def th(lb, addr, group="app"):
    """TargetHealth of one target."""
    return view(lb, group)[addr]["TargetHealth"]


def wait_state(lb, addr, state, timeout, group="app", count=None):
    """Polls until <addr> is in <state>; returns (TargetHealth, count() read right after)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = th(lb, addr, group)
        if last["State"] == state:
            return last, (count() if count else None)
        time.sleep(POLL)
    raise AssertionError("%s not %s within %.1fs; last %r\n--- stderr ---\n%s"
                         % (addr, state, timeout, last, lb.stderr[-3000:]))


def hc_group(targets, name="app", **hc):
    """A target group with HTTP checks on /hc every 1s (timeout 500ms, thresholds 2/2)."""
    check = {"enabled": True, "protocol": "HTTP", "port": "traffic-port", "path": "/hc",
             "interval": "1s", "timeout": "500ms", "healthy_threshold": 2,
             "unhealthy_threshold": 2, "matcher": "200"}
    check.update(hc)
    return {"name": name, "protocol": "HTTP", "health_check": check,
            "outlier_detection": {"enabled": False}, "targets": list(targets)}


def hc_config(http_config, targets, **hc):
    cfg = http_config([])
    cfg["target_groups"] = [hc_group(targets, **hc)]
    return cfg



def transitions(lb, to):
    return metric(lb, "berth_health_transitions_total", target_group="app", to=to)


def log_lines(lb, needle):
    return [ln for ln in lb.stderr.splitlines() if needle in ln]


def register(lb, *backends, group="app"):
    body = {"Targets": [{"Id": b.host, "Port": b.port} for b in backends]}
    status, resp = lb.ctl("POST", "/v1/target-groups/%s/register" % group, body)
    assert status == 200, (status, resp)


def hc_requests(b):
    return [r for r in list(b.requests) if r.header("user-agent") == HC_UA]


# ---- the state machine, counted check by check ----

def test_initial_turns_healthy_after_one_pass(berth, backend, http_config):
    """A registered target is initial (Elb.InitialHealthChecking), is probed within ~100 ms, and turns healthy after exactly one passing check even with healthy_threshold 5."""
    b = backend("switch")
    b.set_answer("/hc", (400, 200))  # the answer leaves 400 ms after the check arrives
    lb = berth(hc_config(http_config, [], interval="3s", healthy_threshold=5))
    t0 = time.monotonic()
    register(lb, b)
    first = th(lb, b.addr)
    assert first["State"] == "initial", first
    assert first["Reason"] == "Elb.InitialHealthChecking", first
    deadline = time.monotonic() + 2
    while not hc_requests(b) and time.monotonic() < deadline:
        time.sleep(0.002)
    assert hc_requests(b), "no health check arrived"
    delay = time.monotonic() - t0
    assert delay < 0.3, "first check %.3fs after registration" % delay
    # Still initial while the first answer is pending.
    assert th(lb, b.addr)["State"] == "initial"
    got, n = wait_state(lb, b.addr, "healthy", 2.0,
                        count=lambda: len(b.answered_with("/hc", 200)))
    assert n == 1, "healthy after %d passing checks, expected 1" % n
    assert "Reason" not in got and "Description" not in got, got
    assert len(hc_requests(b)) == 1
    assert len(log_lines(lb, "target %s in group app is now healthy" % b.addr)) == 1


def test_initial_turns_unhealthy_after_threshold_failures(berth, backend, http_config):
    """A new target whose checks fail stays initial after one failure and turns unhealthy after exactly unhealthy_threshold (3) failures with Target.ResponseCodeMismatch."""
    b = backend("switch")
    b.set_answer("/hc", 500)
    lb = berth(hc_config(http_config, [], unhealthy_threshold=3))
    register(lb, b)
    fails = lambda: len(b.answered_with("/hc", 500))  # noqa: E731
    seen_initial = set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        st = th(lb, b.addr)
        n = fails()
        if st["State"] != "initial":
            break
        seen_initial.add(n)
        time.sleep(POLL)
    assert st["State"] == "unhealthy", st
    assert n == 3, "unhealthy after %d failing checks, expected 3" % n
    assert {1, 2} <= seen_initial, "initial not seen after 1 and 2 failures: %r" % seen_initial
    assert st["Reason"] == "Target.ResponseCodeMismatch", st
    assert st["Description"] == "Health checks failed with these codes: [500]", st
    assert transitions(lb, "unhealthy") == 1
    assert transitions(lb, "healthy") == 0


def test_healthy_unhealthy_healthy_counted_exactly(berth, backend, http_config):
    """healthy -> unhealthy after exactly unhealthy_threshold (3) failing checks and back after exactly healthy_threshold (2) passes, each transition logged once and counted in the metrics."""
    b = backend("switch")
    b.set_answer("/hc", 200)
    lb = berth(hc_config(http_config, [b.addr], unhealthy_threshold=3, healthy_threshold=2))
    wait_state(lb, b.addr, "healthy", 2.0)

    b.set_answer("/hc", 500)
    got, n = wait_state(lb, b.addr, "unhealthy", 5.0,
                        count=lambda: len(b.answered_with("/hc", 500)))
    assert n == 3, "unhealthy after %d failing checks, expected 3" % n
    assert got["Reason"] == "Target.ResponseCodeMismatch", got
    assert got["Description"] == "Health checks failed with these codes: [500]", got
    line = ("target %s in group app is now unhealthy: Target.ResponseCodeMismatch "
            "(Health checks failed with these codes: [500])" % b.addr)
    assert len(log_lines(lb, line)) == 1, lb.stderr[-3000:]

    passes_before = len(b.answered_with("/hc", 200))
    b.set_answer("/hc", 200)
    got, n = wait_state(lb, b.addr, "healthy", 4.0,
                        count=lambda: len(b.answered_with("/hc", 200)) - passes_before)
    assert n == 2, "healthy after %d passing checks, expected 2" % n
    assert "Reason" not in got, got

    # Logged once each (initial -> healthy, unhealthy -> healthy; one -> unhealthy),
    # even after more failing and passing checks went by.
    assert len(log_lines(lb, "target %s in group app is now unhealthy" % b.addr)) == 1
    assert len(log_lines(lb, "target %s in group app is now healthy" % b.addr)) == 2
    assert transitions(lb, "unhealthy") == 1
    assert transitions(lb, "healthy") == 2


def test_failure_streak_must_be_unbroken(berth, backend, http_config):
    """A passing check resets the failure count: with unhealthy_threshold 2 the answers 500, 200, 500, 500 make the target unhealthy at the fourth check, not the third."""
    b = backend("switch")
    b.set_answer("/hc", 200)
    lb = berth(hc_config(http_config, [b.addr]))
    wait_state(lb, b.addr, "healthy", 2.0)
    base = len(b.answered_with("/hc"))
    b.set_answer("/hc", [500, 200, 500, 500])
    got, n = wait_state(lb, b.addr, "unhealthy", 6.0,
                        count=lambda: len(b.answered_with("/hc")) - base)
    assert n == 4, "unhealthy after check %d of the script 500,200,500,500" % n
    assert got["Reason"] == "Target.ResponseCodeMismatch", got


def test_pass_streak_must_be_unbroken(berth, backend, http_config):
    """A failing check resets the pass count: with healthy_threshold 2 an unhealthy target answered 200, 500, 200, 200 turns healthy at the fourth check, not the second."""
    b = backend("switch")
    b.set_answer("/hc", 500)
    lb = berth(hc_config(http_config, [b.addr]))
    wait_state(lb, b.addr, "unhealthy", 3.0)
    base = len(b.answered_with("/hc"))
    b.set_answer("/hc", [200, 500, 200, 200])
    got, n = wait_state(lb, b.addr, "healthy", 6.0,
                        count=lambda: len(b.answered_with("/hc")) - base)
    assert n == 4, "healthy after check %d of the script 200,500,200,200" % n


# ---- the check request ----

def test_check_request_shape(berth, backend, http_config):
    """Each check is GET <path> with User-Agent berth-health-checker/1.0 and Connection: close, on its own connection that berth closes."""
    b = backend("switch")
    b.set_answer("/hc", 200)
    lb = berth(hc_config(http_config, [b.addr]))
    deadline = time.monotonic() + 3
    while len(hc_requests(b)) < 2 and time.monotonic() < deadline:
        time.sleep(POLL)
    reqs = hc_requests(b)
    assert len(reqs) >= 2, reqs
    for r in reqs:
        assert r.method == "GET" and r.target == "/hc", r
        assert r.header("connection") is not None and \
            "close" in r.header("connection").lower(), r
        assert r.header("host") is not None, r
    conns = [r.conn_id for r in reqs]
    assert len(set(conns)) == len(conns), "checks shared a connection: %r" % conns
    # Nothing else used those connections.
    for r in list(b.requests):
        if r.conn_id in conns:
            assert r.header("user-agent") == HC_UA, r
    assert lb.alive()


# ---- matchers ----

@pytest.mark.parametrize("matcher,code,ok", [
    ("200", 200, True),
    ("200", 201, False),
    ("200,302", 302, True),
    ("200,302", 301, False),
    ("200-399", 399, True),
    ("200-399", 200, True),
    ("200-399", 404, False),
])
def test_matcher(berth, backend, http_config, matcher, code, ok):
    """The matcher forms single, list and range accept the listed codes and fail others with Target.ResponseCodeMismatch naming the code."""
    b = backend("switch")
    b.set_answer("/hc", code)
    lb = berth(hc_config(http_config, [b.addr], matcher=matcher))
    if ok:
        got, _ = wait_state(lb, b.addr, "healthy", 2.0)
        assert "Reason" not in got, got
    else:
        got, _ = wait_state(lb, b.addr, "unhealthy", 3.0)
        assert got["Reason"] == "Target.ResponseCodeMismatch", got
        assert got["Description"] == "Health checks failed with these codes: [%d]" % code, got


# ---- reasons other than a code mismatch ----

def test_timeout_on_hanging_check_path(berth, backend, http_config):
    """A target whose /hc never answers turns unhealthy after exactly 2 timed-out checks with Target.Timeout "Request timed out", each check given up after the 500 ms timeout."""
    b = backend("switch")
    b.set_answer("/hc", 200)
    lb = berth(hc_config(http_config, [b.addr]))
    wait_state(lb, b.addr, "healthy", 2.0)
    b.set_answer("/hc", "hang")
    got, n = wait_state(lb, b.addr, "unhealthy", 4.0,
                        count=lambda: len(b.answered_with("/hc", "hang")))
    flipped = time.monotonic()
    assert n == 2, "unhealthy after %d timed-out checks, expected 2" % n
    assert got["Reason"] == "Target.Timeout", got
    assert got["Description"] == "Request timed out", got
    last = b.answered_with("/hc", "hang")[-1].t
    assert 0.4 <= flipped - last <= 0.9, \
        "flip %.3fs after the last check arrived (timeout 500ms)" % (flipped - last)
    assert len(log_lines(lb, "target %s in group app is now unhealthy: Target.Timeout "
                             "(Request timed out)" % b.addr)) == 1


def test_timeout_on_silent_target(berth, backend, http_config):
    """A target that accepts connections but never answers anything goes from initial to unhealthy with Target.Timeout."""
    b = backend("silent")
    lb = berth(hc_config(http_config, [b.addr]))
    got, _ = wait_state(lb, b.addr, "unhealthy", 4.0)
    assert got["Reason"] == "Target.Timeout", got
    assert got["Description"] == "Request timed out", got
    assert b.connections >= 2


def test_connection_refused(berth, http_config):
    """A target whose port refuses connections turns unhealthy with Target.FailedHealthChecks and a description naming the refusal."""
    addr = refused_addr()
    lb = berth(hc_config(http_config, [addr]))
    got, _ = wait_state(lb, addr, "unhealthy", 4.0)
    assert got["Reason"] == "Target.FailedHealthChecks", got
    assert "Connection refused" in got["Description"], got
    assert len(log_lines(lb, "target %s in group app is now unhealthy: "
                             "Target.FailedHealthChecks (" % addr)) == 1


@pytest.mark.parametrize("mode,words", [
    ("rude", ("closed",)),
    ("reset", ("reset",)),
    ("garbage", ("malformed",)),
])
def test_failed_checks_name_what_happened(berth, backend, http_config, mode, words):
    """A target that closes, resets or answers garbage to the check turns unhealthy with Target.FailedHealthChecks and a description naming what happened."""
    b = backend(mode)
    lb = berth(hc_config(http_config, [b.addr]))
    got, _ = wait_state(lb, b.addr, "unhealthy", 4.0)
    assert got["Reason"] == "Target.FailedHealthChecks", got
    assert got["Description"].startswith("Health checks failed"), got
    assert any(w in got["Description"].lower() for w in words), got


def test_tcp_checks(berth, backend, http_config):
    """TCP checks pass on an open port without sending a request and fail on a closed port with Target.FailedHealthChecks (Connection refused)."""
    up = backend("http")
    down = refused_addr()
    lb = berth(hc_config(http_config, [up.addr, down], protocol="TCP"))
    got, _ = wait_state(lb, up.addr, "healthy", 2.0)
    assert "Reason" not in got
    got, _ = wait_state(lb, down, "unhealthy", 4.0)
    assert got["Reason"] == "Target.FailedHealthChecks", got
    assert "Connection refused" in got["Description"], got
    time.sleep(1.2)  # more checks go by
    assert th(lb, up.addr)["State"] == "healthy"
    assert up.connections >= 2
    assert list(up.requests) == [], "a TCP check sent a request: %r" % up.requests


def test_fixed_check_port(berth, backend, http_config):
    """With port: N the checks go to port N, not the traffic port, HealthCheckPort shows N, and that port's answer decides the target's health."""
    traffic = backend("http")
    checked = backend("switch", host=traffic.host)
    checked.set_answer("/hc", 200)
    lb = berth(hc_config(http_config, [traffic.addr], port=checked.port))
    wait_state(lb, traffic.addr, "healthy", 2.0)
    d = view(lb)[traffic.addr]
    assert d["HealthCheckPort"] == str(checked.port), d
    assert len(hc_requests(checked)) >= 1
    assert hc_requests(traffic) == []
    assert fetch(lb.port, path="/x").status == 200
    assert [r.target for r in traffic.requests] == ["/x"]
    checked.set_answer("/hc", 500)
    got, _ = wait_state(lb, traffic.addr, "unhealthy", 4.0)
    assert got["Reason"] == "Target.ResponseCodeMismatch", got
    assert hc_requests(traffic) == []


# ---- traffic follows health ----

def test_traffic_only_to_healthy_then_fail_open(berth, backend, http_config):
    """Only healthy targets take traffic (not initial, not unhealthy ones) until every target is unhealthy; then traffic goes to all of them and berth_group_failing_open is 1."""
    a = backend("switch")
    b = backend("switch")
    a.set_answer("/hc", 200)
    lb = berth(hc_config(http_config, [a.addr]))
    wait_state(lb, a.addr, "healthy", 2.0)

    # b stays initial for 400 ms or more (its first answer is delayed): no traffic meanwhile.
    b.set_answer("/hc", [(400, 200), 200])
    register(lb, b)
    assert th(lb, b.addr)["State"] == "initial"
    for i in range(6):
        assert fetch(lb.port, path="/i%d" % i).status == 200
    assert th(lb, b.addr)["State"] == "initial", "test too slow: b left initial"
    assert [r for r in b.requests if r.header("user-agent") != HC_UA] == []
    wait_state(lb, b.addr, "healthy", 2.0)

    b.set_answer("/hc", 500)
    wait_state(lb, b.addr, "unhealthy", 3.0)
    for i in range(8):
        assert fetch(lb.port, path="/u%d" % i).status == 200
    assert [r.target for r in b.requests if r.target.startswith("/u")] == []
    assert len([r for r in a.requests if r.target.startswith("/u")]) == 8
    assert metric(lb, "berth_group_failing_open", target_group="app") == 0

    a.set_answer("/hc", 500)
    wait_state(lb, a.addr, "unhealthy", 3.0)
    assert metric(lb, "berth_group_failing_open", target_group="app") == 1
    for i in range(8):
        assert fetch(lb.port, path="/f%d" % i).status == 200
    na = len([r for r in a.requests if r.target.startswith("/f")])
    nb = len([r for r in b.requests if r.target.startswith("/f")])
    assert na + nb == 8 and na >= 2 and nb >= 2, (na, nb)

    a.set_answer("/hc", 200)
    wait_state(lb, a.addr, "healthy", 3.0)
    assert metric(lb, "berth_group_failing_open", target_group="app") == 0
    for i in range(4):
        assert fetch(lb.port, path="/back%d" % i).status == 200
    assert [r.target for r in b.requests if r.target.startswith("/back")] == []


def test_fail_open_is_logged_once_and_shown(berth, backend, http_config):
    """Issue 15, item 6: a group entering fail open is logged once as a warning and leaving it once as a notice; the health view ("FailOpen"), `berth ctl health` and berth_group_failing_open say it while it lasts."""
    a = backend("switch")
    b = backend("switch")
    a.set_answer("/hc", 200)
    b.set_answer("/hc", 200)
    lb = berth(hc_config(http_config, [a.addr, b.addr]))
    wait_state(lb, a.addr, "healthy", 2.0)
    wait_state(lb, b.addr, "healthy", 2.0)
    status, body = lb.ctl("GET", "/v1/target-groups/app/health")
    assert body["FailOpen"] is False, body
    entered = "target group app: all 2 targets unhealthy; failing open (routing to all)"
    left = "target group app: no longer failing open (1 of 2 targets healthy)"

    a.set_answer("/hc", 500)
    wait_state(lb, a.addr, "unhealthy", 3.0)
    assert log_lines(lb, "failing open") == []  # b still healthy
    b.set_answer("/hc", 500)
    wait_state(lb, b.addr, "unhealthy", 3.0)
    status, body = lb.ctl("GET", "/v1/target-groups/app/health")
    assert body["FailOpen"] is True, body
    assert metric(lb, "berth_group_failing_open", target_group="app") == 1
    out = subprocess.run([berth_bin(), "ctl", "-s", lb.sock_path, "health", "app"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    assert out.returncode == 0, out
    assert b"target group app is failing open" in out.stdout, out.stdout
    time.sleep(2.2)  # two more failing checks per target: still one warning
    lines = log_lines(lb, "failing open")
    assert len(lines) == 1 and " warn: " + entered in lines[0], lines

    a.set_answer("/hc", 200)
    wait_state(lb, a.addr, "healthy", 4.0)
    time.sleep(0.1)
    lines = log_lines(lb, "failing open")
    assert len(lines) == 2 and " notice: " + left in lines[1], lines
    status, body = lb.ctl("GET", "/v1/target-groups/app/health")
    assert body["FailOpen"] is False, body
    assert metric(lb, "berth_group_failing_open", target_group="app") == 0
    out = subprocess.run([berth_bin(), "ctl", "-s", lb.sock_path, "health", "app"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    assert b"failing open" not in out.stdout, out.stdout

    # A registry change can start it too: the healthy target leaves (draining).
    status, resp = lb.ctl("POST", "/v1/target-groups/app/deregister",
                          {"Targets": [{"Id": a.host, "Port": a.port}]})
    assert status == 200, resp
    lines = log_lines(lb, "failing open")
    assert len(lines) == 3, lines
    assert "target group app: its one target is unhealthy; failing open" in lines[2], lines
    assert lb.ctl("GET", "/v1/target-groups/app/health")[1]["FailOpen"] is True


def test_health_checks_never_use_pooled_connections(berth, backend, http_config):
    """Health checks and proxied requests never share a TCP connection at the target, while proxied requests do reuse pooled connections."""
    b = backend("switch")
    b.set_answer("/hc", 200)
    lb = berth(hc_config(http_config, [b.addr]))
    wait_state(lb, b.addr, "healthy", 2.0)
    t_end = time.monotonic() + 3.2
    sent = 0
    with Client(lb.port) as c:
        while time.monotonic() < t_end:
            r = c.request("GET", "/data%d" % sent)
            assert r.status == 200, r
            sent += 1
            time.sleep(0.03)
    by_conn = {}
    for r in list(b.requests):
        by_conn.setdefault(r.conn_id, []).append(r)
    hc_conns = data_conns = 0
    for cid, reqs in by_conn.items():
        kinds = {r.header("user-agent") == HC_UA for r in reqs}
        assert len(kinds) == 1, "connection %d carried checks and traffic: %r" % (cid, reqs)
        if True in kinds:
            hc_conns += 1
            assert len(reqs) == 1, "connection %d carried %d checks" % (cid, len(reqs))
        else:
            data_conns += 1
    assert hc_conns >= 3, "only %d checks during the test" % hc_conns
    proxied = sum(len(v) for v in by_conn.values()) - hc_conns
    assert proxied == sent
    assert data_conns < proxied, "no pooled reuse: %d requests on %d connections" % (
        proxied, data_conns)
