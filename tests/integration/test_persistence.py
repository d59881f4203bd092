# SPDX-License-Identifier: MIT
"""state_file: API registrations and the lb_cookie key survive a restart, deregistrations
stay gone, a change that cannot be persisted is refused, and a corrupt state file refuses
the start (or, with state_file_recovery: move_aside, is set aside)."""

import collections
import glob
import json
import os
import re
import stat
import random
import threading
import time

from conftest import start_fails, unix_http
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
    assert any("move_aside" in ln and "kept as" in ln for ln in lines), lb.stderr
    aside = aside_files(state_path)
    assert len(aside) == 1, (aside, os.listdir(os.path.dirname(state_path)))
    with open(aside[0]) as f:
        assert f.read() == content
    return aside[0]


# Files a crash, a full disk or a hand edit can leave: each refuses the start by default.
def corrupt_cases(b2):
    good = {"Id": b2.host, "Port": b2.port}
    full = json.dumps({"version": 1, "target_groups": {"app": [good]}})
    return [
        ("", "1:1"),                                   # empty
        (full[:25], "1:25"),                           # torn in the middle
        (full + "\x00garbage", "1:%d" % (len(full) + 1)),
        ("{\n\"version\": 1,\n  \"target_groups\": {\"app\": [}\n", "3:"),
        (json.dumps({"version": 2, "target_groups": {"app": [good]}}), "not a berth state"),
        (json.dumps({"target_groups": {"app": [good]}}), "not a berth state"),
        (json.dumps([good]), "not a berth state"),
        (json.dumps({"version": 1, "target_groups": {"app": good}}), "target_groups.app"),
        (json.dumps({"version": 1, "cookie_key": "abc", "target_groups": {}}), "cookie_key"),
    ]


def test_corrupt_state_file_refuses_start(berth, backend, http_config, tmp_path):
    """An empty, torn, non-JSON or wrongly shaped state file stops the start with exit 1 and an error naming the file and the position, and the file is left as it was: never a silent empty start."""
    b1, b2 = backend(), backend()
    cfg = with_state(http_config([b1.addr]), tmp_path)
    for text, where in corrupt_cases(b2):
        with open(cfg["state_file"], "w") as f:
            f.write(text)
        err = start_fails(berth, cfg)
        lines = [ln for ln in err.splitlines() if cfg["state_file"] in ln]
        assert lines, err
        if where[0].isdigit():
            assert any(cfg["state_file"] + ":" + where in ln for ln in lines), (where, lines)
        else:
            assert any(where in ln for ln in lines), (where, lines)
        assert any("refusing to start" in ln for ln in lines), lines
        with open(cfg["state_file"]) as f:
            assert f.read() == text
        assert aside_files(cfg["state_file"]) == []


def test_corrupt_state_file_moved_aside_when_asked(berth, backend, http_config, tmp_path):
    """With state_file_recovery: move_aside, a corrupt state file is renamed to <state>.corrupt-<digits> with a log line, berth serves the config's targets, and new registrations persist again."""
    b1, b2 = backend(), backend()
    cfg = with_state(http_config([b1.addr]), tmp_path)
    cfg["state_file_recovery"] = "move_aside"
    lb = None
    for text, _ in corrupt_cases(b2):
        for p in aside_files(cfg["state_file"]):
            os.unlink(p)
        with open(cfg["state_file"], "w") as f:
            f.write(text)
        lb = berth(cfg) if lb is None else restart(berth, lb, cfg)
        assert_set_aside(lb, cfg["state_file"], text)
        assert set(health(lb)) == {b1.addr}, text
        assert fetch(lb.port, "GET", "/").header("X-Backend") == b1.addr, text
    status, body = lb.ctl("POST", "/v1/target-groups/app/register",
                          {"Targets": [{"Id": b2.host, "Port": b2.port}]})
    assert status == 200, body
    lb = restart(berth, lb, cfg)
    assert set(health(lb)) == {b1.addr, b2.addr}
    assert len(aside_files(cfg["state_file"])) == 1


def test_invalid_state_entry_skips_only_itself(berth, backend, http_config, tmp_path):
    """One state-file entry that is not a valid target is skipped with a warning naming it; the other saved targets are back and take traffic."""
    b1, b2, b3 = backend(), backend(), backend()
    cfg = with_state(http_config([b1.addr]), tmp_path)
    good = [{"Id": b2.host, "Port": b2.port}, {"Id": b3.host, "Port": b3.port, "Weight": 1}]
    bad_entries = [{"Id": "999.1.1.1", "Port": 80}, {"Id": b2.host, "Port": 0},
                   {"Id": b2.host, "Port": 70000}, {"Id": b2.host, "Port": "81"},
                   {"Port": 81}, "127.0.0.9:81", {"Id": b2.host, "Port": 81, "Weight": -1}]
    lb = None
    for bad in bad_entries:
        text = json.dumps({"version": 1, "target_groups": {"app": [good[0], bad, good[1]]}})
        with open(cfg["state_file"], "w") as f:
            f.write(text)
        lb = berth(cfg) if lb is None else restart(berth, lb, cfg)
        assert "target_groups.app[1] is not a valid target; skipped" in lb.stderr, lb.stderr
        assert set(health(lb)) == {b1.addr, b2.addr, b3.addr}, text
        assert spread(lb.port, 6, "/skip") == {b1.addr: 2, b2.addr: 2, b3.addr: 2}, text
        assert aside_files(cfg["state_file"]) == []


def test_unpersistable_registration_is_refused(berth, backend, http_config, tmp_path):
    """When the state file cannot be written, register and deregister answer 500 with a JSON error and change nothing (health view, traffic); a restart shows exactly the acknowledged registrations."""
    b1, b2, b3, b4 = backend(), backend(), backend(), backend()
    cfg = with_state(http_config([b1.addr]), tmp_path)
    lb = berth(cfg)
    status, body = lb.ctl("POST", "/v1/target-groups/app/register",
                          {"Targets": [{"Id": b2.host, "Port": b2.port}]})
    assert (status, body) == (200, {}), body
    # The save goes through <state>.tmp; a directory in its place makes every write fail
    # (as root too, unlike a chmod).
    blocker = cfg["state_file"] + ".tmp"
    os.mkdir(blocker)
    before = set(health(lb))
    status, body = lb.ctl("POST", "/v1/target-groups/app/register",
                          {"Targets": [{"Id": b3.host, "Port": b3.port}]})
    assert status == 500, (status, body)
    assert body["Error"]["Code"] == "StateFileWriteFailed", body
    assert "nothing changed" in body["Error"]["Message"], body
    status, body = lb.ctl("POST", "/v1/target-groups/app/deregister",
                          {"Targets": [{"Id": b2.host, "Port": b2.port}], "Wait": True})
    assert status == 500 and body["Error"]["Code"] == "StateFileWriteFailed", (status, body)
    assert set(health(lb)) == before == {b1.addr, b2.addr}
    assert all(d["TargetHealth"]["State"] != "draining" for d in health(lb).values())
    assert spread(lb.port, 4, "/refused") == {b1.addr: 2, b2.addr: 2}
    assert b3.requests == []
    os.rmdir(blocker)
    status, body = lb.ctl("POST", "/v1/target-groups/app/register",
                          {"Targets": [{"Id": b4.host, "Port": b4.port}]})
    assert (status, body) == (200, {}), body
    lb = restart(berth, lb, cfg)
    assert set(health(lb)) == {b1.addr, b2.addr, b4.addr}
    assert set(state_targets(load_state(cfg["state_file"]))) == {b2.addr, b4.addr}


def test_unwritable_state_file_refuses_start(berth, backend, http_config, tmp_path):
    """A state_file berth cannot write stops the start with exit 1: otherwise every registration would fail."""
    b1 = backend()
    cfg = http_config([b1.addr])
    cfg["state_file"] = str(tmp_path / "no-such-dir" / "state.json")
    err = start_fails(berth, cfg)
    assert "state_file %s: directory" % cfg["state_file"] in err, err
    # The directory is there, but the write itself fails (its temporary file is a directory).
    cfg["state_file"] = str(tmp_path / "state.json")
    os.mkdir(cfg["state_file"] + ".tmp")
    err = start_fails(berth, cfg)
    assert "state file %s: write failed" % cfg["state_file"] in err, err


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


def test_kill9_during_burst_loses_no_acknowledged_change(berth, http_config, tmp_path):
    """50 rounds: a burst of register/deregister calls, berth killed with SIGKILL at a random moment, then restarted: the state file is never torn (the restart refuses torn files), and every change that was answered 200 is there; only the one call in flight at the kill may go either way."""
    cfg = with_state(http_config([]), tmp_path)
    cfg["target_groups"][0]["deregistration_delay"] = "0s"
    pool = ["127.0.1.%d:%d" % (1 + i % 7, 9000 + i) for i in range(24)]
    present = {a: False for a in pool}      # what the acknowledged calls say
    rng = random.Random(1515)
    lb = berth(cfg)
    calls = 0
    for round_no in range(50):
        acked, in_flight, stop = [], [None], threading.Event()

        def burst(sock=lb.sock_path):
            while not stop.is_set():
                addr = rng.choice(pool)
                add = rng.random() < 0.6
                host, port = addr.rsplit(":", 1)
                in_flight[0] = (addr, add)
                try:
                    status, body, _ = unix_http(
                        sock, "POST", "/v1/target-groups/app/%s" %
                        ("register" if add else "deregister"),
                        {"Targets": [{"Id": host, "Port": int(port)}]}, timeout=2.0)
                except (OSError, EOFError, ValueError):
                    return
                assert status == 200, (status, body)
                acked.append((addr, add))
                in_flight[0] = None

        t = threading.Thread(target=burst)
        t.start()
        time.sleep(rng.uniform(0.02, 0.25))
        lb.kill9()
        stop.set()
        t.join(5)
        assert not t.is_alive()
        calls += len(acked)
        for addr, add in acked:
            present[addr] = add
        with open(cfg["state_file"]) as f:
            text = f.read()
        saved = set(state_targets(json.loads(text)))
        maybe = in_flight[0]
        for addr in pool:
            if maybe is not None and addr == maybe[0] and (addr in saved) == maybe[1]:
                present[addr] = maybe[1]    # the unanswered call happened to land
            assert (addr in saved) == present[addr], (round_no, addr, present[addr], text)
        lb = berth(cfg)                   # a torn or corrupt file would refuse this start
        view = {a for a, d in health(lb).items() if d["Source"] == "api"}
        assert view == {a for a in pool if present[a]}, (round_no, view)
    assert calls >= 1000, "only %d acknowledged calls in 50 rounds" % calls
