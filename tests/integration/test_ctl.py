# SPDX-License-Identifier: MIT
"""`berth ctl`: tables by default, --json bodies, messages, exit statuses and GET /v1/config."""

import json
import os
import re
import socket
import subprocess
import threading

import pytest

from conftest import berth_bin, free_port

CTL_TIMEOUT = 15


def ctl(sock, *args, timeout=CTL_TIMEOUT, env=None):
    """Runs `berth ctl -s SOCK ARGS...`; returns the CompletedProcess (text mode)."""
    cmd = [berth_bin(), "ctl"] + (["-s", sock] if sock is not None else []) + list(args)
    full_env = dict(os.environ)
    full_env.pop("BERTH_SOCKET", None)
    full_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)


def ok(sock, *args):
    """Runs ctl and asserts exit 0 and an empty stderr; returns stdout."""
    r = ctl(sock, *args)
    assert (r.returncode, r.stderr) == (0, ""), (args, r.returncode, r.stdout, r.stderr)
    return r.stdout


def table(text):
    """Splits a ctl table into rows of cells (columns are at least two spaces apart)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


def two_groups(http_config, targets, **group):
    """http_config plus an idle TCP group "spare"; extra keys go to group "app"."""
    cfg = http_config(targets)
    cfg["target_groups"][0].update(group)
    cfg["target_groups"].append({"name": "spare", "protocol": "TCP",
                                 "health_check": {"enabled": False}})
    return cfg


def test_groups_table(berth, backend, http_config):
    """`groups` prints a NAME/PROTOCOL/ALGORITHM/TARGETS/HEALTHY table with one row per group."""
    b = backend()
    lb = berth(two_groups(http_config, [b.addr]))
    rows = table(ok(lb.sock_path, "groups"))
    assert rows[0] == ["NAME", "PROTOCOL", "ALGORITHM", "TARGETS", "HEALTHY"]
    assert rows[1] == ["app", "HTTP", "round_robin", "1", "1"]
    assert rows[2] == ["spare", "TCP", "flow_hash", "0", "0"]
    assert len(rows) == 3


def test_register_then_health_table(berth, backend, http_config):
    """`register` reports the count, and `health GROUP` then lists IPv4 and bracketed IPv6 targets with state, reason and source."""
    b = backend()
    lb = berth(http_config([b.addr]))
    out = ok(lb.sock_path, "register", "app", "127.0.0.9:8081", "[fd00::5]:8080",
             "Id=10.0.0.7,Port=9000")
    assert out == "registered 3 target(s) in app\n"
    rows = table(ok(lb.sock_path, "health", "app"))
    assert rows[0] == ["TARGET", "STATE", "REASON", "DESCRIPTION", "SOURCE"]
    by_target = {r[0]: r for r in rows[1:]}
    assert set(by_target) == {b.addr, "127.0.0.9:8081", "[fd00::5]:8080", "10.0.0.7:9000"}
    assert by_target[b.addr][1:] == ["unavailable", "Target.HealthCheckDisabled",
                                     "Health checks are disabled", "config"]
    assert by_target["[fd00::5]:8080"][1] == "unavailable"
    assert by_target["[fd00::5]:8080"][4] == "api"


def test_health_all_groups(berth, backend, http_config):
    """`health` without a group lists every group's targets under a leading GROUP column."""
    b = backend()
    lb = berth(two_groups(http_config, [b.addr]))
    ok(lb.sock_path, "register", "spare", "127.0.0.9:7000")
    rows = table(ok(lb.sock_path, "health"))
    assert rows[0][:2] == ["GROUP", "TARGET"]
    assert sorted((r[0], r[1]) for r in rows[1:]) == [("app", b.addr),
                                                      ("spare", "127.0.0.9:7000")]
    data = json.loads(ok(lb.sock_path, "--json", "health"))
    assert set(data) == {"app", "spare"}
    assert data["spare"]["TargetHealthDescriptions"][0]["Target"]["Port"] == 7000


def test_json_output(berth, backend, http_config):
    """--json, before or after -s, prints the API's JSON body unchanged."""
    b = backend()
    lb = berth(http_config([b.addr]))
    groups = json.loads(ok(lb.sock_path, "--json", "groups"))
    assert groups["TargetGroups"][0]["TargetGroupName"] == "app"
    r = subprocess.run([berth_bin(), "ctl", "--json", "-s", lb.sock_path, "health", "app"],
                       capture_output=True, text=True, timeout=CTL_TIMEOUT)
    assert r.returncode == 0, r.stderr
    health = json.loads(r.stdout)
    target = health["TargetHealthDescriptions"][0]
    assert "%s:%d" % (target["Target"]["Id"], target["Target"]["Port"]) == b.addr
    assert target["TargetHealth"]["State"] == "unavailable"
    assert json.loads(ok(lb.sock_path, "--json", "register", "app", "127.0.0.9:81")) == {}


def test_deregister_messages(berth, backend, http_config):
    """`deregister` reports the targets it started draining, and `deregister --wait` returns once they drained."""
    b = backend()
    lb = berth(http_config([b.addr]))
    ok(lb.sock_path, "register", "app", "127.0.0.9:81", "127.0.0.9:82")
    assert ok(lb.sock_path, "deregister", "app", "127.0.0.9:81") == \
        "deregistered 1 target(s) from app\n"
    # Nothing is in flight on 127.0.0.9:82, so --wait returns at once despite the 300s delay;
    # as ELB, the target stays listed as draining until the delay ends.
    assert ok(lb.sock_path, "deregister", "--wait", "app", "127.0.0.9:82") == \
        "drained 1 target(s) from app\n"
    status, body = lb.ctl("GET", "/v1/target-groups/app/health")
    states = {"%s:%d" % (d["Target"]["Id"], d["Target"]["Port"]): d["TargetHealth"]["State"]
              for d in body["TargetHealthDescriptions"]}
    assert states["127.0.0.9:82"] == "draining", states


def test_unknown_group(berth, http_config):
    """An API error for an unknown group prints "berth ctl: TargetGroupNotFound: ..." and exits 1."""
    lb = berth(http_config([]))
    for args in (("health", "nope"), ("register", "nope", "127.0.0.9:80"),
                 ("--json", "deregister", "nope", "127.0.0.9:80")):
        r = ctl(lb.sock_path, *args)
        assert r.returncode == 1, (args, r)
        assert r.stderr.startswith("berth ctl: TargetGroupNotFound: "), (args, r.stderr)
        assert "nope" in r.stderr
        assert r.stdout == ""


def test_missing_socket(tmp_path):
    """A socket nobody listens on exits 1 with a message naming its path, from -s or BERTH_SOCKET."""
    sock = str(tmp_path / "absent.sock")
    r = ctl(sock, "groups")
    assert r.returncode == 1
    assert "cannot connect to %s" % sock in r.stderr, r.stderr
    assert "is berth running?" in r.stderr
    r = ctl(None, "healthz", env={"BERTH_SOCKET": sock})
    assert r.returncode == 1
    assert sock in r.stderr, r.stderr
    # A stale socket file: connection refused, same message.
    stale = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()
    r = ctl(stale, "groups")
    assert r.returncode == 1
    assert "cannot connect to %s" % stale in r.stderr, r.stderr


def test_usage_errors(tmp_path):
    """Bad target syntax, unknown commands and options, and missing arguments exit 2 without a call."""
    sock = str(tmp_path / "absent.sock")  # never reached: usage is checked first
    for args in (("register", "app", "10.0.1.5"), ("register", "app", "fd00::5:80"),
                 ("deregister", "--wait", "app", "Id=10.0.1.5"), ("register", "app"),
                 ("health", "a/b"), ("bogus",), ("--bogus", "groups"), ()):
        r = ctl(sock, *args)
        assert r.returncode == 2, (args, r)
        assert "cannot connect" not in r.stderr, (args, r.stderr)
    r = ctl(sock, "register", "app", "10.0.1.5")
    assert 'invalid target "10.0.1.5"' in r.stderr


def test_healthz_and_metrics(berth, http_config):
    """`healthz` prints "ok" and `metrics` the Prometheus text as it came."""
    lb = berth(http_config([]))
    assert ok(lb.sock_path, "healthz").strip() == "ok"
    assert 'berth_healthy_targets{target_group="app"} 0' in ok(lb.sock_path, "metrics")


def test_config(berth, backend, http_config, tmp_path):
    """`config` pretty-prints GET /v1/config: binds, group names, durations as strings, sizes in bytes, the token file by path only."""
    b = backend()
    token = tmp_path / "token"
    token.write_text("s3cret-t0ken-value\n")
    token.chmod(0o600)
    cfg = two_groups(http_config, [b.addr], deregistration_delay="90s")
    cfg["listeners"][0]["max_header_size"] = "32k"
    cfg["control"] = {"listen": "127.0.0.1:%d" % free_port(), "token_file": str(token)}
    lb = berth(cfg)
    out = ok(lb.sock_path, "config")
    assert out.startswith("{\n  ")  # indented for people
    conf = json.loads(out)
    assert conf["listeners"][0]["bind"] == "127.0.0.1:%d" % lb.port
    assert conf["listeners"][0]["idle_timeout"] == "1m"
    assert conf["listeners"][0]["header_timeout"] == "10s"
    assert conf["listeners"][0]["max_header_size"] == 32768
    assert conf["shutdown_timeout"] == "3s"
    assert [g["name"] for g in conf["target_groups"]] == ["app", "spare"]
    app = conf["target_groups"][0]
    assert app["deregistration_delay"] == "90s"
    assert app["health_check"]["enabled"] is False
    assert app["health_check"]["interval"] == "30s"
    assert "%s:%d" % (app["targets"][0]["id"], app["targets"][0]["port"]) == b.addr
    assert conf["control"]["socket"] == lb.sock_path
    assert conf["control"]["token_file"] == str(token)
    assert "s3cret" not in out
    assert json.loads(ok(lb.sock_path, "--json", "config")) == conf


# ---- framing: a fake control socket answering with chosen bytes ----

class FakeServer:
    """Answers each connection on a Unix socket with <answer>, then closes or (keep_open) idles."""

    def __init__(self, path, answer, keep_open=False):
        self.path = path
        self.answer = answer
        self.keep_open = keep_open
        self.held = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            conn.sendall(self.answer)
            if self.keep_open:
                self.held.append(conn)
            else:
                conn.close()

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture
def fake(tmp_path):
    servers = []

    def make(answer, keep_open=False):
        s = FakeServer(str(tmp_path / ("fake%d.sock" % len(servers))), answer, keep_open)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def test_chunked_answer(fake):
    """A chunked answer (as an HTTP/1.1 server may send for large bodies) is decoded before the table is built."""
    body = json.dumps({"TargetGroups": [
        {"TargetGroupName": "g%03d" % i, "Protocol": "HTTP", "Algorithm": "round_robin",
         "Targets": i, "HealthyTargets": 0} for i in range(400)]}).encode()
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                      for i in range(0, len(body), 1000))
    s = fake(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    rows = table(ok(s.path, "groups"))
    assert len(rows) == 401
    assert rows[400] == ["g399", "HTTP", "round_robin", "399", "0"]
    assert json.loads(ok(s.path, "--json", "groups")) == json.loads(body)


def test_answer_until_close(fake):
    """An answer without Content-Length ends where the server closes the connection."""
    s = fake(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nok\n")
    assert ok(s.path, "healthz") == "ok\n"


def test_no_hang_after_content_length(fake):
    """ctl stops reading once Content-Length bytes arrived, even if the server keeps the connection."""
    s = fake(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n", keep_open=True)
    r = ctl(s.path, "healthz", timeout=5)
    assert (r.returncode, r.stdout) == (0, "ok\n")


def test_error_without_json(fake):
    """An error answer that is not the API's JSON still exits 1 with the HTTP status."""
    s = fake(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\n\r\noops")
    r = ctl(s.path, "groups")
    assert r.returncode == 1
    assert r.stderr == "berth ctl: HTTP 502: oops\n"


def test_truncated_answer(fake):
    """A connection closed before Content-Length bytes arrived is an error, not a partial table."""
    s = fake(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"TargetGroups\":")
    r = ctl(s.path, "groups")
    assert r.returncode == 1
    assert "truncated" in r.stderr
    assert r.stdout == ""
