# SPDX-License-Identifier: MIT
"""Metrics: the Prometheus exposition on the control socket counts what clients saw, per
listener and per target group, and is valid exposition format (promtool when installed)."""

import re
import shutil
import subprocess

from httpwire import fetch

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*"'
                    r'(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*)?\})? (-?[0-9.eE+]+|\+Inf|NaN)$')


def parse(text):
    """Parses the exposition strictly: every sample belongs to a family announced by HELP and
    TYPE lines. Returns {(name, frozenset(labels)): value}."""
    families, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            families.setdefault(line.split()[2], set()).add("help")
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram"), line
            families.setdefault(name, set()).add(kind)
        else:
            m = SAMPLE.match(line)
            assert m, "not a valid sample line: %r" % line
            name = m.group(1)
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in families or base in families, "sample without HELP/TYPE: %r" % line
            labels = frozenset(re.findall(r'([a-zA-Z_]+)="([^"]*)"', m.group(3) or ""))
            samples[(name, labels)] = float(m.group(5))
    return samples


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def test_metrics_count_requests_per_listener_and_group(berth, backend, http_config):
    """Requests, target 2xx, berth-generated 5xx and response-time counts match the traffic sent."""
    b1 = backend()
    cfg = http_config([b1.addr])
    cfg["target_groups"].append({"name": "empty", "health_check": {"enabled": False}})
    cfg["listeners"][0]["rules"] = [{"priority": 1, "conditions": {"path": ["/none/*"]},
                                     "action": {"forward": {"target_groups": [{"name": "empty"}]}}}]
    lb = berth(cfg)
    for _ in range(7):
        assert fetch(lb.port, "GET", "/ok").status == 200
    for _ in range(3):
        assert fetch(lb.port, "GET", "/none/x").status == 503
    status, text = lb.ctl("GET", "/metrics")
    assert status == 200
    s = parse(text)
    listener = cfg["listeners"][0]["name"]
    assert value(s, "berth_requests_total", listener=listener) == 10
    assert value(s, "berth_new_connections_total", listener=listener) == 10
    assert value(s, "berth_elb_responses_total", listener=listener, code="5xx") == 3
    assert value(s, "berth_target_responses_total", target_group="app", code="2xx") == 7
    assert value(s, "berth_target_requests_total", target_group="app") == 7
    assert value(s, "berth_target_response_time_seconds_count", target_group="app") == 7
    assert value(s, "berth_target_response_time_seconds_bucket", target_group="app",
                 le="+Inf") == 7
    assert value(s, "berth_healthy_targets", target_group="app") == 1
    assert value(s, "berth_healthy_targets", target_group="empty") == 0
    assert value(s, "berth_processed_bytes_total", listener=listener) > 0


def test_metrics_target_connection_errors(berth, backend, http_config):
    """A refused target connection is counted as a target connection error of its group."""
    from backends import refused_addr
    lb = berth(http_config([refused_addr()]))
    assert fetch(lb.port, "GET", "/").status == 502
    s = parse(lb.ctl("GET", "/metrics")[1])
    assert value(s, "berth_target_connection_errors_total", target_group="app") >= 1


def test_metrics_pass_promtool(berth, backend, http_config, tmp_path):
    """promtool (Debian's prometheus package) accepts the exposition, when installed."""
    promtool = shutil.which("promtool")
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    fetch(lb.port, "GET", "/")
    text = lb.ctl("GET", "/metrics")[1]
    parse(text)
    if promtool is None:
        import pytest
        pytest.skip("promtool not installed (apt-get install prometheus); the parser check ran")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
