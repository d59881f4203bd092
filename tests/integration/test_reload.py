# SPDX-License-Identifier: MIT
"""Reload (POST /v1/reload and SIGHUP): a valid file takes effect without a refused
connection or a failed request, keeps registrations and health state; an invalid one is
reported with FILE:LINE:COL and changes nothing."""

import json
import signal
import threading
import time

from httpwire import Client, fetch

CONFIG = """\
workers: 1
listeners:
  - name: web
    protocol: HTTP
    bind: 127.0.0.1:@PORT@
    rules:
      - priority: 1
        conditions: {path: ["/fixed"]}
        action: {fixed_response: {status: 200, content_type: text/plain, body: "%s"}}
    default_action: {forward: {target_groups: [{name: app}]}}
target_groups:
  - name: app
    health_check: {enabled: false}
    targets: ["%s"]
"""


def rewrite(lb, old, new):
    text = open(lb.config_path).read()
    assert old in text
    with open(lb.config_path, "w") as f:
        f.write(text.replace(old, new))


def test_reload_applies_new_rules_and_keeps_registrations(berth, backend):
    """After a reload the new fixed response is served, and a target registered through the API is still there and used."""
    b1, b2 = backend(), backend()
    lb = berth(CONFIG % ("one", b1.addr))
    ip, port = b2.addr.split(":")
    st, _ = lb.ctl("POST", "/v1/target-groups/app/register",
                   json.dumps({"Targets": [{"Id": ip, "Port": int(port)}]}))
    assert st == 200
    assert fetch(lb.port, "GET", "/fixed").body == b"one"
    rewrite(lb, '"one"', '"two"')
    st, body = lb.ctl("POST", "/v1/reload")
    assert st == 200, body
    assert fetch(lb.port, "GET", "/fixed").body == b"two"
    seen = {fetch(lb.port, "GET", "/x").header("X-Backend") for _ in range(6)}
    assert seen == {b1.addr, b2.addr}, seen
    st, body = lb.ctl("GET", "/v1/target-groups/app/health")
    assert len(body["TargetHealthDescriptions"]) == 2, body


def test_invalid_reload_reports_line_and_keeps_config(berth, backend):
    """A reload of a broken file answers 400 ConfigInvalid naming FILE:LINE:COL, and the running config keeps serving."""
    b1 = backend()
    lb = berth(CONFIG % ("one", b1.addr))
    rewrite(lb, "status: 200", "status: 2000")
    st, body = lb.ctl("POST", "/v1/reload")
    assert st == 400, body
    err = body["Error"]
    assert err["Code"] == "ConfigInvalid"
    line = next(i + 1 for i, ln in enumerate(open(lb.config_path).read().splitlines())
                if "status: 2000" in ln)
    assert "%s:%d:" % (lb.config_path, line) in err["Message"], err
    assert fetch(lb.port, "GET", "/fixed").body == b"one"
    _, metrics = lb.ctl("GET", "/metrics")
    assert 'berth_reloads_total{result="error"} 1' in metrics


def test_sighup_reloads(berth, backend):
    """SIGHUP reloads the file like the API does."""
    b1 = backend()
    lb = berth(CONFIG % ("one", b1.addr))
    rewrite(lb, '"one"', '"three"')
    lb.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if fetch(lb.port, "GET", "/fixed").body == b"three":
            break
        time.sleep(0.05)
    assert fetch(lb.port, "GET", "/fixed").body == b"three"


def test_listener_on_busy_port_fails_reload(berth, backend):
    """A new listener whose port another process holds fails the reload with the bind error, and nothing changes."""
    import socket as _socket
    b1 = backend()
    lb = berth(CONFIG % ("one", b1.addr))
    hog = _socket.socket()
    hog.bind(("127.0.0.1", 0))
    hog.listen(1)
    busy = hog.getsockname()[1]
    text = open(lb.config_path).read()
    extra = """  - name: busy
    protocol: HTTP
    bind: 127.0.0.1:%d
    default_action: {fixed_response: {status: 200, content_type: text/plain, body: "x"}}
""" % busy
    with open(lb.config_path, "w") as f:
        f.write(text.replace("\ntarget_groups:", "\n" + extra + "target_groups:")
                    .replace('"one"', '"changed"'))
    try:
        st, body = lb.ctl("POST", "/v1/reload")
    finally:
        hog.close()
    assert st == 400 and "bind()" in body["Error"]["Message"], body
    assert fetch(lb.port, "GET", "/fixed").body == b"one"


def test_reload_under_load_loses_nothing(berth, backend):
    """Twenty reloads while keep-alive and new-connection clients send requests: every request succeeds."""
    b1 = backend()
    lb = berth(CONFIG % ("v0", b1.addr))
    failures, done = [], threading.Event()
    counts = [0, 0]

    def keepalive():
        with Client(lb.port, timeout=5) as c:
            while not done.is_set():
                try:
                    r = c.request("GET", "/x")
                    if r.status != 200:
                        failures.append(("keepalive", r.status))
                    counts[0] += 1
                except Exception as e:  # noqa: BLE001 - any failure counts
                    failures.append(("keepalive", repr(e)))
                    return

    def fresh():
        while not done.is_set():
            try:
                r = fetch(lb.port, "GET", "/fixed")
                if r.status != 200:
                    failures.append(("fresh", r.status))
                counts[1] += 1
            except Exception as e:  # noqa: BLE001
                failures.append(("fresh", repr(e)))

    threads = [threading.Thread(target=keepalive), threading.Thread(target=fresh)]
    for t in threads:
        t.start()
    for i in range(20):
        rewrite(lb, '"v%d"' % i, '"v%d"' % (i + 1))
        st, body = lb.ctl("POST", "/v1/reload")
        assert st == 200, body
        time.sleep(0.05)
    done.set()
    for t in threads:
        t.join(5)
    assert failures == [], failures[:5]
    assert counts[0] > 20 and counts[1] > 20, counts
    assert fetch(lb.port, "GET", "/fixed").body == b"v20"


def test_reload_adds_and_removes_listeners(berth, backend):
    """A reload opens a new listener and closes a removed one while its open connection finishes; the kept listener never refuses."""
    import socket as _socket
    from conftest import free_port
    b1 = backend()
    lb = berth(CONFIG % ("one", b1.addr))
    text = open(lb.config_path).read()
    p2, p3 = free_port(), free_port()
    second = """  - name: second
    protocol: HTTP
    bind: 127.0.0.1:%d
    default_action: {fixed_response: {status: 200, content_type: text/plain, body: "second"}}
""" % p2
    with open(lb.config_path, "w") as f:
        f.write(text.replace("\ntarget_groups:", "\n" + second + "target_groups:"))
    st, body = lb.ctl("POST", "/v1/reload")
    assert st == 200, body
    assert fetch(p2, "GET", "/").body == b"second"
    assert fetch(lb.port, "GET", "/fixed").body == b"one"
    with Client(p2, timeout=5) as c:
        assert c.request("GET", "/").status == 200
        # remove "second" and add "third": the open connection to "second" keeps working
        third = second.replace("second", "third").replace(str(p2), str(p3))
        with open(lb.config_path, "w") as f:
            f.write(text.replace("\ntarget_groups:", "\n" + third + "target_groups:"))
        st, body = lb.ctl("POST", "/v1/reload")
        assert st == 200, body
        assert c.request("GET", "/").body == b"second"
    assert fetch(p3, "GET", "/").body == b"third"
    s = _socket.socket()
    s.settimeout(2)
    try:
        refused = s.connect_ex(("127.0.0.1", p2)) != 0
    finally:
        s.close()
    assert refused, "removed listener still accepts"
    assert fetch(lb.port, "GET", "/fixed").body == b"one"
