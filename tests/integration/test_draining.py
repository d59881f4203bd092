# SPDX-License-Identifier: MIT
"""Deregistration draining: the draining state and reason, no new traffic, in-flight requests
finishing, the early end once idle, "Wait": true, cancellation by re-registering, and removal
at the deregistration_delay deadline while a request is still running."""

import threading
import time
import uuid

from httpwire import fetch


def tid(d):
    ip, port = d["Target"]["Id"], d["Target"]["Port"]
    return "[%s]:%d" % (ip, port) if ":" in ip else "%s:%d" % (ip, port)


def health(lb, group="app"):
    """{"ip:port": TargetHealth} from GET /v1/target-groups/GROUP/health."""
    status, body = lb.ctl("GET", "/v1/target-groups/%s/health" % group)
    assert status == 200, (status, body)
    return {tid(d): d["TargetHealth"] for d in body["TargetHealthDescriptions"]}


def call(lb, verb, b, **extra):
    body = {"Targets": [{"Id": b.host, "Port": b.port}]}
    body.update(extra)
    return lb.ctl("POST", "/v1/target-groups/app/%s" % verb, body)


def drain_config(http_config, targets, delay):
    cfg = http_config(targets)
    cfg["target_groups"][0]["deregistration_delay"] = delay
    return cfg


class InFlight(threading.Thread):
    """One request on its own connection, run in the background."""

    def __init__(self, port, path):
        super().__init__(daemon=True)
        self.port = port
        self.path = path
        self.resp = None
        self.error = None
        self.ended = None

    def run(self):
        try:
            self.resp = fetch(self.port, "GET", self.path, timeout=10.0)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
        self.ended = time.monotonic()

    def result(self, timeout=10.0):
        self.join(timeout)
        assert not self.is_alive(), "request %s still running" % self.path
        assert self.error is None, "request %s failed: %r" % (self.path, self.error)
        return self.resp


def start_slow(lb, backends, ms):
    """Starts GET /slow?ms=MS through berth; returns (InFlight, backend that received it)."""
    path = "/slow?ms=%d&tag=%s" % (ms, uuid.uuid4().hex)
    req = InFlight(lb.port, path)
    req.start()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        for b in backends:
            if any(r.target == path for r in list(b.requests)):
                return req, b
        time.sleep(0.005)
    raise AssertionError("the slow request reached no backend: %r" % req.error)


def call_in_background(lb, verb, b, **extra):
    """Runs call() in a thread; returns (thread, result dict with status, body and t)."""
    out = {}

    def run():
        try:
            out["status"], out["body"] = call(lb, verb, b, **extra)
        except Exception as e:  # noqa: BLE001 - reported by the test
            out["error"] = e
        out["t"] = time.monotonic()
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, out


def assert_served_by(resp, b):
    assert resp.status == 200, resp
    assert resp.header("X-Backend") == b.addr, resp
    assert b.addr.encode() in resp.body, resp


def test_draining_state_until_the_delay(berth, backend, http_config):
    """A deregistered target with a request in flight shows draining/Target.DeregistrationInProgress, gets no new requests, completes the request, and, as ELB, stays draining after going idle until its 3 s delay ends, then leaves the health view."""
    b1, b2 = backend(), backend()
    lb = berth(drain_config(http_config, [b1.addr, b2.addr], "3s"))
    slow, t = start_slow(lb, [b1, b2], 1500)
    other = b2 if t is b1 else b1
    t0 = time.monotonic()
    status, body = call(lb, "deregister", t)
    assert (status, body) == (200, {}), (status, body)
    assert time.monotonic() - t0 < 0.5, "deregister without Wait took %.2fs" % (
        time.monotonic() - t0)
    view = health(lb)
    assert view[t.addr]["State"] == "draining", view
    assert view[t.addr]["Reason"] == "Target.DeregistrationInProgress", view
    assert view[other.addr]["State"] == "unavailable", view
    count = len(t.requests)
    for i in range(10):
        r = fetch(lb.port, "GET", "/during/%d" % i)
        assert (r.status, r.header("X-Backend")) == (200, other.addr), r
    assert len(t.requests) == count, [q.target for q in t.requests[count:]]
    assert slow.is_alive(), "the 1.5 s request ended early"
    assert_served_by(slow.result(), t)
    time.sleep(0.5)  # idle now: still draining, still no traffic
    assert time.monotonic() - t0 < 2.7
    assert health(lb)[t.addr]["State"] == "draining"
    r = fetch(lb.port, "GET", "/idle")
    assert (r.status, r.header("X-Backend")) == (200, other.addr), r
    while t.addr in health(lb) and time.monotonic() - t0 < 5.0:
        time.sleep(0.02)
    gone = time.monotonic() - t0
    assert t.addr not in health(lb), "still listed %.1fs after deregister" % gone
    assert 2.8 <= gone < 3.8, "left %.2fs after deregister with a 3 s delay" % gone
    assert set(health(lb)) == {other.addr}
    assert len(t.requests) == count


def test_wait_answers_after_drain(berth, backend, http_config):
    """A deregister call with "Wait": true is answered once the 1.5 s in-flight request is over; the target is still draining then (the delay is 30 s)."""
    b1, b2 = backend(), backend()
    lb = berth(drain_config(http_config, [b1.addr, b2.addr], "30s"))
    slow, t = start_slow(lb, [b1, b2], 1500)
    t0 = time.monotonic()
    status, body = call(lb, "deregister", t, Wait=True)
    took = time.monotonic() - t0
    assert (status, body) == (200, {}), (status, body)
    assert took >= 1.2, "Wait answered after %.2fs with a 1.5 s request in flight" % took
    assert took < 4.0, "Wait answered after %.2fs" % took
    assert health(lb)[t.addr]["State"] == "draining"
    assert_served_by(slow.result(), t)


def test_wait_idle_is_immediate(berth, backend, http_config):
    """A deregister call with "Wait": true on a target with only idle pooled connections is answered at once despite a 30 s delay."""
    b1, b2 = backend(), backend()
    lb = berth(drain_config(http_config, [b1.addr, b2.addr], "30s"))
    for i in range(4):  # leaves a pooled keep-alive connection to each target
        assert fetch(lb.port, "GET", "/warm/%d" % i).status == 200
    assert b1.requests and b2.requests
    t0 = time.monotonic()
    status, body = call(lb, "deregister", b1, Wait=True)
    took = time.monotonic() - t0
    assert (status, body) == (200, {}), (status, body)
    assert took < 0.5, "Wait with nothing in flight took %.2fs" % took
    assert health(lb)[b1.addr]["State"] == "draining"
    for i in range(4):
        r = fetch(lb.port, "GET", "/after/%d" % i)
        assert (r.status, r.header("X-Backend")) == (200, b2.addr), r


def test_reregister_cancels_drain(berth, backend, http_config):
    """Re-registering a draining target cancels the drain: it is unavailable again, takes traffic, stays past the delay, and a waiting deregister call is answered."""
    b1, b2 = backend(), backend()
    lb = berth(drain_config(http_config, [b1.addr, b2.addr], "1s"))
    slow, t = start_slow(lb, [b1, b2], 1500)
    other = b2 if t is b1 else b1
    t0 = time.monotonic()
    waiter, out = call_in_background(lb, "deregister", t, Wait=True)
    deadline = time.monotonic() + 1.0
    while health(lb).get(t.addr, {}).get("State") != "draining" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert health(lb)[t.addr]["State"] == "draining"
    assert waiter.is_alive(), "Wait answered while the target was draining: %r" % out
    status, body = call(lb, "register", t)
    t_reg = time.monotonic()
    assert (status, body) == (200, {}), (status, body)
    view = health(lb)
    assert view[t.addr]["State"] == "unavailable", view
    assert view[t.addr]["Reason"] == "Target.HealthCheckDisabled", view
    waiter.join(1.0)
    assert not waiter.is_alive(), "the waiting deregister call still hangs after re-register"
    assert "error" not in out, out
    assert out["t"] - t_reg < 0.5, out
    seen = {fetch(lb.port, "GET", "/back/%d" % i).header("X-Backend") for i in range(6)}
    assert seen == {t.addr, other.addr}, seen
    # Past the 1 s deregistration delay (plus margin) it is still there and in rotation.
    time.sleep(max(0.0, t0 + 1.6 - time.monotonic()))
    view = health(lb)
    assert view.get(t.addr, {}).get("State") == "unavailable", view
    count = len(t.requests)
    seen = {fetch(lb.port, "GET", "/later/%d" % i).header("X-Backend") for i in range(6)}
    assert seen == {t.addr, other.addr}, seen
    assert len(t.requests) > count
    assert_served_by(slow.result(), t)
    assert health(lb).get(t.addr, {}).get("State") == "unavailable"


def test_deadline_ends_request_in_flight(berth, backend, http_config):
    """As ELB: with a 3 s request and a 1 s delay, the target leaves the health view at the deadline and the request still running is ended (502, no answer had started) within a sweep (1 s)."""
    b1, b2 = backend(), backend()
    lb = berth(drain_config(http_config, [b1.addr, b2.addr], "1s"))
    slow, t = start_slow(lb, [b1, b2], 3000)
    other = b2 if t is b1 else b1
    t0 = time.monotonic()
    status, body = call(lb, "deregister", t)
    assert (status, body) == (200, {}), (status, body)
    assert health(lb)[t.addr]["State"] == "draining"
    while t.addr in health(lb) and time.monotonic() - t0 < 2.5:
        time.sleep(0.02)
    gone = time.monotonic() - t0
    assert t.addr not in health(lb), "still listed %.2fs after deregister" % gone
    assert 0.8 <= gone < 1.6, "removed %.2fs after deregister with a 1 s delay" % gone
    slow.join(5)
    assert not slow.is_alive() and slow.error is None, slow.error
    assert slow.resp.status == 502, slow.resp
    assert slow.ended - t0 < 2.6, "ended %.2fs after deregister" % (slow.ended - t0)
    for i in range(4):
        r = fetch(lb.port, "GET", "/after/%d" % i)
        assert (r.status, r.header("X-Backend")) == (200, other.addr), r
    log = [e for e in lb.access_log(expect=6) if e["elb_status_code"] == 502]
    assert log and log[0]["error_reason"] == "deregistration delay ended", log


def test_wait_ends_at_deadline(berth, backend, http_config):
    """With a 2.5 s request and a 1 s delay, a "Wait": true deregister is answered at the deadline, and the request still running is ended then."""
    b1, b2 = backend(), backend()
    lb = berth(drain_config(http_config, [b1.addr, b2.addr], "1s"))
    slow, t = start_slow(lb, [b1, b2], 2500)
    t0 = time.monotonic()
    status, body = call(lb, "deregister", t, Wait=True)
    took = time.monotonic() - t0
    assert (status, body) == (200, {}), (status, body)
    assert 0.8 <= took < 1.6, "Wait answered after %.2fs with a 1 s delay" % took
    assert t.addr not in health(lb)
    slow.join(5)
    assert slow.error is None and slow.resp.status == 502, (slow.error, slow.resp)


def test_websocket_closed_at_deadline(berth, backend, http_config):
    """A WebSocket tunnel to a deregistered target is closed when its 1 s delay ends."""
    import base64
    import os
    from httpwire import Client, ws_encode, ws_read_frame
    ws = backend("ws")
    lb = berth(drain_config(http_config, [ws.addr], "1s"))
    key = base64.b64encode(os.urandom(16)).decode()
    with Client(lb.port, timeout=10) as c:
        c.send(("GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n" % key).encode())
        assert c.response().status == 101
        c.send(ws_encode(0x1, b"before", mask=True))
        assert ws_read_frame(c.reader)[2] == b"before"
        t0 = time.monotonic()
        status, body = call(lb, "deregister", ws)
        assert (status, body) == (200, {}), (status, body)
        c.send(ws_encode(0x1, b"draining", mask=True))  # still open while draining
        assert ws_read_frame(c.reader)[2] == b"draining"
        assert c.wait_closed(4.0) is not None, "tunnel still open after the delay"
        took = time.monotonic() - t0
        assert 0.8 <= took < 2.6, "tunnel closed %.2fs after deregister" % took


def test_http2_stream_ended_at_deadline(berth, backend, http_config):
    """An HTTP/2 stream whose exchange runs on the target gets its 502 when the delay ends; the connection serves on."""
    import subprocess
    b1, b2 = backend(), backend()
    cfg = drain_config(http_config, [b1.addr, b2.addr], "1s")
    cfg["listeners"][0]["h2c"] = True
    lb = berth(cfg)
    # find the target of the next request: round robin alternates, so send one first
    first = fetch(lb.port, "GET", "/first")
    nxt = b2 if first.header("X-Backend") == b1.addr else b1
    p = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w",
                          "%{http_code}", "http://127.0.0.1:%d/slow?ms=3000" % lb.port],
                         stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 2
    while not any(r.target.startswith("/slow") for r in nxt.requests):
        assert time.monotonic() < deadline, "the slow request reached no target"
        time.sleep(0.01)
    t0 = time.monotonic()
    assert call(lb, "deregister", nxt) == (200, {})
    out, _ = p.communicate(timeout=10)
    assert out == "502", out
    assert time.monotonic() - t0 < 2.6
