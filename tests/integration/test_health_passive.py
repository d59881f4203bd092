# SPDX-License-Identifier: MIT
"""Passive health checks (outlier detection): a target whose traffic fails (5xx answers,
refused connections) consecutive_errors times in a row is ejected for base_ejection_time
times its number of ejections, never more than max_ejection_percent of its group; it comes
back afterwards on probation, when one more failure ejects it again for twice as long.

Berth sweeps the failure counts every 200 ms, so each test sends one request at a time and
stops as soon as the failing target has seen the number of failures it wants to test."""

import datetime
import re
import time

import pytest

from backends import refused_addr
from httpwire import fetch
from conftest import metric

LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z ")


# ---- helpers ----

def od_config(http_config, targets, hc=False, **od):
    """Group "app" with outlier detection (5 errors, 2s, 50%) and checks off or healthy."""
    cfg = http_config(targets)
    g = cfg["target_groups"][0]
    outlier = {"enabled": True, "consecutive_errors": 5, "base_ejection_time": "2s",
               "max_ejection_percent": 50}
    outlier.update(od)
    g["outlier_detection"] = outlier
    if hc:
        g["health_check"] = {"enabled": True, "protocol": "HTTP", "path": "/hc",
                             "interval": "1s", "timeout": "500ms", "healthy_threshold": 2,
                             "unhealthy_threshold": 2, "matcher": "200"}
    return cfg



def ejections(lb):
    return metric(lb, "berth_ejections_total", target_group="app")


def ejected_now(lb):
    return metric(lb, "berth_ejected_targets", target_group="app")


def eject_lines(lb, addr=r"\S+"):
    """[(timestamp, ms, failures, ejection number)] of the ejection log lines."""
    out = []
    pat = re.compile(r"target %s in group app ejected for (\d+)ms after (\d+) failures in a "
                     r"row \(ejection (\d+)\)" % addr)
    for ln in lb.stderr.splitlines():
        m = pat.search(ln)
        if m:
            out.append((stamp(ln), int(m.group(1)), int(m.group(2)), int(m.group(3))))
    return out


def return_lines(lb, addr):
    needle = "target %s in group app returns from ejection" % addr
    return [stamp(ln) for ln in lb.stderr.splitlines() if needle in ln]


def stamp(line):
    m = LOG_TS.match(line)
    assert m, "log line without a timestamp: %r" % line
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def wait_for(fn, timeout, what, lb):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.01)
    raise AssertionError("%s not seen within %.1fs\n--- stderr ---\n%s"
                         % (what, timeout, lb.stderr[-3000:]))


def traffic(b):
    """Requests the backend answered with an override, checks left out."""
    return [a for a in b.answered_with() if a.path != "/hc"]


def send_until(lb, b, n, limit=40, expect=None):
    """Sends requests one by one until <b> answered <n> of them; returns the statuses."""
    statuses = []
    for i in range(limit):
        if len(traffic(b)) >= n:
            return statuses
        statuses.append(fetch(lb.port, path="/r%d" % i).status)
    assert len(traffic(b)) >= n, "%s got %d of %d requests after %d sent" % (
        b.addr, len(traffic(b)), n, limit)
    return statuses


def send(lb, n, tag):
    return [fetch(lb.port, path="/%s%d" % (tag, i)).status for i in range(n)]


def hits(b, tag):
    return [r.target for r in list(b.requests) if r.target.startswith("/" + tag)]


# ---- tests ----

@pytest.mark.parametrize("hc", [False, True], ids=["checks-off", "checks-healthy"])
def test_ejection_return_and_probation(berth, backend, http_config, hc):
    """A target answering 500 is ejected after 5 failures in a row for 2s, comes back, and on probation one more failure ejects it again for 4s."""
    a = backend("http")
    b = backend("switch")
    b.set_answer("*", 500)
    b.set_answer("/hc", 200)
    lb = berth(od_config(http_config, [a.addr, b.addr], hc=hc))
    if hc:
        wait_for(lambda: all(d["TargetHealth"]["State"] == "healthy" for d in
                             lb.ctl("GET", "/v1/target-groups/app/health")[1]
                             ["TargetHealthDescriptions"]), 2.0, "both healthy", lb)

    send_until(lb, b, 5)
    assert len(traffic(b)) == 5
    ej = wait_for(lambda: eject_lines(lb, re.escape(b.addr)), 1.0, "ejection 1", lb)
    assert ej[0][1:] == (2000, 5, 1), ej
    assert ejections(lb) == 1
    assert ejected_now(lb) == 1
    d = {x["Target"]["Port"]: x["TargetHealth"] for x in
         lb.ctl("GET", "/v1/target-groups/app/health")[1]["TargetHealthDescriptions"]}[b.port]
    assert "ejected" in d.get("Description", "").lower(), d

    # Ejected: no traffic at all.
    assert send(lb, 10, "e1-") == [200] * 10
    assert hits(b, "e1-") == [] and len(hits(a, "e1-")) == 10

    back = wait_for(lambda: return_lines(lb, b.addr), 3.0, "return 1", lb)
    assert 1.95 <= back[0] - ej[0][0] <= 2.5, "ejected for %.3fs" % (back[0] - ej[0][0])
    assert ejected_now(lb) == 0

    # Back on probation: the very next failure ejects it again, for twice as long.
    send_until(lb, b, 6, limit=6)
    assert len(traffic(b)) == 6
    ej = wait_for(lambda: eject_lines(lb, re.escape(b.addr))[1:], 1.0, "ejection 2", lb)
    assert ej[0][1:] == (4000, 1, 2), ej
    assert ejections(lb) == 2
    assert ejected_now(lb) == 1
    assert send(lb, 10, "e2-") == [200] * 10
    assert hits(b, "e2-") == []

    back = wait_for(lambda: return_lines(lb, b.addr)[1:], 5.0, "return 2", lb)
    assert 3.95 <= back[0] - ej[0][0] <= 4.5, "ejected for %.3fs" % (back[0] - ej[0][0])
    assert ejected_now(lb) == 0
    send_until(lb, b, 7, limit=6)  # takes traffic again


def test_only_failures_in_a_row_count(berth, backend, http_config):
    """A success resets the count: 4 failures, a success and 4 failures eject nothing; the fifth failure in a row ejects."""
    a = backend("http")
    b = backend("switch")
    b.set_answer("*", [500] * 4 + [200] + [500] * 4 + [500])
    lb = berth(od_config(http_config, [a.addr, b.addr]))
    send_until(lb, b, 9)
    assert [x.answer for x in traffic(b)] == [500] * 4 + [200] + [500] * 4
    time.sleep(0.6)  # three sweeps
    assert eject_lines(lb) == [], lb.stderr[-2000:]
    assert ejected_now(lb) == 0
    send_until(lb, b, 10)
    ej = wait_for(lambda: eject_lines(lb, re.escape(b.addr)), 1.0, "ejection", lb)
    assert ej[0][1:] == (2000, 5, 1), ej


def test_connect_errors_eject(berth, backend, http_config):
    """Refused connections count as failures: after 5 the target is ejected and berth stops trying it, while clients get 200 from the other target throughout."""
    a = backend("http")
    dead = refused_addr()
    lb = berth(od_config(http_config, [a.addr, dead]))
    errors = lambda: metric(lb, "berth_target_connection_errors_total",  # noqa: E731
                            target_group="app") or 0
    for i in range(40):
        if errors() >= 5:
            break
        assert fetch(lb.port, path="/c%d" % i).status == 200
    assert errors() == 5
    ej = wait_for(lambda: eject_lines(lb, re.escape(dead)), 1.0, "ejection", lb)
    assert ej[0][1:] == (2000, 5, 1), ej
    assert send(lb, 10, "after") == [200] * 10
    assert errors() == 5, "berth still tried the ejected target"


def test_max_ejection_percent_keeps_half(berth, backend, http_config):
    """With 2 failing targets and max_ejection_percent 50 only one is ejected, and the other keeps taking the traffic."""
    a = backend("switch")
    b = backend("switch")
    a.set_answer("*", 500)
    b.set_answer("*", 500)
    lb = berth(od_config(http_config, [a.addr, b.addr], consecutive_errors=3))
    assert send(lb, 12, "x") == [500] * 12
    time.sleep(0.6)
    ej = eject_lines(lb)
    assert len(ej) == 1, ej
    assert ejected_now(lb) == 1
    assert ejections(lb) == 1
    out = a if eject_lines(lb, re.escape(a.addr)) else b
    stay = b if out is a else a
    assert send(lb, 6, "y") == [500] * 6
    assert hits(out, "y") == [] and len(hits(stay, "y")) == 6
    time.sleep(0.4)
    assert len(eject_lines(lb)) == 1 and ejected_now(lb) == 1


def test_single_target_never_ejected(berth, backend, http_config):
    """The only target of a group is never ejected (50% of one target is none), so it keeps getting the traffic."""
    b = backend("switch")
    b.set_answer("*", 500)
    lb = berth(od_config(http_config, [b.addr], consecutive_errors=2))
    assert send(lb, 8, "s") == [500] * 8
    time.sleep(0.6)
    assert eject_lines(lb) == []
    assert ejected_now(lb) == 0
    assert send(lb, 3, "t") == [500] * 3
    assert len(hits(b, "t")) == 3


def test_outlier_detection_disabled(berth, backend, http_config):
    """With outlier_detection disabled a target answering 500 is never ejected."""
    a = backend("http")
    b = backend("switch")
    b.set_answer("*", 500)
    lb = berth(od_config(http_config, [a.addr, b.addr], enabled=False))
    send_until(lb, b, 8)
    time.sleep(0.6)
    assert eject_lines(lb) == []
    assert ejected_now(lb) == 0
    send(lb, 4, "z")
    assert len(hits(b, "z")) == 2
