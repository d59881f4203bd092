# SPDX-License-Identifier: MIT
"""state_file: API registrations and the lb_cookie key survive a restart, deregistrations
stay gone, and a corrupt or invalid state file is set aside without blocking the start."""

import collections
import glob
import json
import os
import re
import stat

from httpwire import fetch


def tid(d):
    ip, port = d["Target"]["Id"], d["Target"]["Port"]
    return "[%s]:%d" % (ip, port) if ":" in ip else "%s:%d" % (ip, port)


def health(lb, group="app"):
    """{"ip:port": description} from GET /v1/target-groups/GROUP/health."""
    status, body = lb.ctl("GET", "/v1/target-groups/%s/health" % group)
    assert status == 200, (status, body)
    return {tid(d): d for d in body["TargetHealthDescriptions"]}


def with_state(cfg, tmp_path):
    cfg["state_file"] = str(tmp_path / "state.json")
    return cfg


def restart(berth, lb, cfg):
    """Stops <lb> with SIGTERM (asserting exit 0) and starts a new berth on <cfg>."""
    rc = lb.stop()
    assert rc == 0, "berth exited with %s\n%s" % (rc, lb.stderr[-4000:])
    return berth(cfg)


def load_state(path):
    with open(path) as f:
        text = f.read()
    data = json.loads(text)
    assert data.get("version") == 1, text
    assert isinstance(data.get("target_groups"), dict), text
    return data


def state_targets(data, group="app"):
    """{"ip:port": weight} of <group> in a loaded state file."""
    out = {}
    for t in data["target_groups"].get(group, []):
        out["%s:%d" % (t["Id"], t["Port"])] = t.get("Weight", 1)
    return out


def spread(port, n, prefix):
    return collections.Counter(fetch(port, "GET", "%s/%d" % (prefix, i)).header("X-Backend")
                               for i in range(n))


def test_registrations_survive_restart(berth, backend, http_config, tmp_path):
    """Targets registered through the API (with their weights) are written to the state file and are back, taking traffic, after a restart."""
    b1, b2, b3 = backend(), backend(), backend()
    cfg = with_state(http_config([b1.addr]), tmp_path)
    lb = berth(cfg)
    status, body = lb.ctl("POST", "/v1/target-groups/app/register", {"Targets": [
        {"Id": b2.host, "Port": b2.port}, {"Id": b3.host, "Port": b3.port, "Weight": 2}]})
    assert (status, body) == (200, {}), (status, body)
    assert spread(lb.port, 8, "/before") == {b1.addr: 2, b2.addr: 2, b3.addr: 4}
    lb = restart(berth, lb, cfg)
    data = load_state(cfg["state_file"])
    saved = state_targets(data)
    assert saved.get(b2.addr) == 1 and saved.get(b3.addr) == 2, data
    mode = stat.S_IMODE(os.stat(cfg["state_file"]).st_mode)
    assert mode & 0o077 == 0, "state file (it holds the cookie key) has mode %o" % mode
    view = health(lb)
    assert set(view) == {b1.addr, b2.addr, b3.addr}, view
    assert view[b2.addr]["Source"] == "api" and view[b3.addr]["Source"] == "api", view
    assert view[b1.addr]["Source"] == "config", view
    assert all(d["TargetHealth"]["State"] == "unavailable" for d in view.values()), view
    assert spread(lb.port, 8, "/after") == {b1.addr: 2, b2.addr: 2, b3.addr: 4}


def test_deregistered_gone_after_restart(berth, backend, http_config, tmp_path):
    """A target deregistered before the stop is absent from the state file and, after a restart, from the health view and the traffic."""
    b1, b2, b3 = backend(), backend(), backend()
    cfg = with_state(http_config([b1.addr]), tmp_path)
    lb = berth(cfg)
    status, body = lb.ctl("POST", "/v1/target-groups/app/register", {"Targets": [
        {"Id": b2.host, "Port": b2.port}, {"Id": b3.host, "Port": b3.port}]})
    assert status == 200, body
    status, body = lb.ctl("POST", "/v1/target-groups/app/deregister",
                          {"Targets": [{"Id": b2.host, "Port": b2.port}], "Wait": True})
    assert (status, body) == (200, {}), (status, body)
    saved = state_targets(load_state(cfg["state_file"]))
    assert b2.addr not in saved and b3.addr in saved, saved
    lb = restart(berth, lb, cfg)
    saved = state_targets(load_state(cfg["state_file"]))
    assert b2.addr not in saved and b3.addr in saved, saved
    assert set(health(lb)) == {b1.addr, b3.addr}
    count = len(b2.requests)
    assert spread(lb.port, 6, "/after") == {b1.addr: 3, b3.addr: 3}
    assert len(b2.requests) == count


def aside_files(state_path):
    return [p for p in glob.glob(state_path + ".corrupt-*")
            if re.fullmatch(re.escape(state_path) + r"\.corrupt-\d+", p)]


def assert_set_aside(lb, state_path, content):
    """The start logged one line naming the file, and the file is kept aside unchanged."""
    lines = [ln for ln in lb.stderr.splitlines() if state_path in ln]
    assert any("corrupt" in ln or "kept aside" in ln for ln in lines), lb.stderr
    aside = aside_files(state_path)
    assert len(aside) == 1, (aside, os.listdir(os.path.dirname(state_path)))
    with open(aside[0]) as f:
        assert f.read() == content
    return aside[0]


def test_corrupt_state_file_set_aside(berth, backend, http_config, tmp_path):
    """A state file that is not JSON is renamed to <state>.corrupt-<digits> with a log line, berth serves the config's targets, and new registrations persist again."""
    b1, b2 = backend(), backend()
    cfg = with_state(http_config([b1.addr]), tmp_path)
    garbage = '{"version":1,"target_groups":{"app":[{"Id":"%s","Port":%d' % (b2.host, b2.port) \
        + "\x00garbage\n"
    with open(cfg["state_file"], "w") as f:
        f.write(garbage)
    lb = berth(cfg)
    assert_set_aside(lb, cfg["state_file"], garbage)
    assert set(health(lb)) == {b1.addr}
    assert spread(lb.port, 3, "/corrupt") == {b1.addr: 3}
    status, body = lb.ctl("POST", "/v1/target-groups/app/register",
                          {"Targets": [{"Id": b2.host, "Port": b2.port}]})
    assert status == 200, body
    lb = restart(berth, lb, cfg)
    assert set(health(lb)) == {b1.addr, b2.addr}
    assert len(aside_files(cfg["state_file"])) == 1


def test_invalid_state_entries_set_aside(berth, backend, http_config, tmp_path):
    """A JSON state file with an invalid target entry or the wrong shape is set aside whole, and berth starts with the config's targets only."""
    b1, b2 = backend(), backend()
    cfg = with_state(http_config([b1.addr]), tmp_path)
    good = {"Id": b2.host, "Port": b2.port}
    cases = [
        {"version": 1, "target_groups": {"app": [good, {"Id": "999.1.1.1", "Port": 80}]}},
        {"version": 1, "target_groups": {"app": [good, {"Id": b2.host, "Port": 0}]}},
        {"version": 1, "target_groups": {"app": [good, {"Id": b2.host, "Port": 70000}]}},
        {"version": 1, "target_groups": {"app": [good, {"Id": b2.host, "Port": "81"}]}},
        {"version": 1, "target_groups": {"app": [good, {"Port": 81}]}},
        {"version": 1, "target_groups": {"app": [good, "127.0.0.9:81"]}},
        {"version": 1, "target_groups": {"app": {"Id": b2.host, "Port": b2.port}}},
        {"version": 1, "target_groups": [good]},
        {"version": 2, "target_groups": {"app": [good]}},
        {"target_groups": {"app": [good]}},
        [good],
    ]
    lb = None
    for case in cases:
        for p in aside_files(cfg["state_file"]):
            os.unlink(p)
        text = json.dumps(case)
        with open(cfg["state_file"], "w") as f:
            f.write(text)
        lb = berth(cfg) if lb is None else restart(berth, lb, cfg)
        assert_set_aside(lb, cfg["state_file"], text)
        assert set(health(lb)) == {b1.addr}, text
        assert fetch(lb.port, "GET", "/").header("X-Backend") == b1.addr, text


def test_lb_cookie_survives_restart(berth, backend, http_config, tmp_path):
    """With a state_file and no cookie_key_file, a BERTH-app cookie issued before a restart still pins requests to its target after it."""
    bs = [backend() for _ in range(3)]
    cfg = with_state(http_config([b.addr for b in bs]), tmp_path)
    cfg["target_groups"][0]["stickiness"] = {"type": "lb_cookie", "duration": "1h"}
    lb = berth(cfg)
    cookies = {}
    for i in range(3):
        r = fetch(lb.port, "GET", "/first/%d" % i)
        assert r.status == 200, r
        for line in r.header_all("Set-Cookie"):
            name, _, rest = line.partition("=")
            if name.strip() == "BERTH-app":
                cookies[r.header("X-Backend")] = rest.split(";", 1)[0]
    assert set(cookies) == {b.addr for b in bs}, cookies
    lb = restart(berth, lb, cfg)
    for addr, value in cookies.items():
        seen = [fetch(lb.port, "GET", "/again/%d" % i,
                      headers=[("Cookie", "BERTH-app=%s" % value)]).header("X-Backend")
                for i in range(5)]
        assert seen == [addr] * 5, "cookie of %s after restart went to %r" % (addr, seen)
