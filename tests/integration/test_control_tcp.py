# SPDX-License-Identifier: MIT
"""The TCP control listener (control.listen): Bearer token required on every request, the
same API with the right token, and refusal to start on a missing, empty or world-readable
token file."""

import json
import os
import time

from conftest import free_port
from httpwire import Client

TOKEN = "s3cret-T0ken_value.42"


def tcp_config(http_config, tmp_path, targets=(), mode=0o600, token=TOKEN + "\n"):
    """http_config plus control.listen on a free port and a token file with <mode>."""
    path = tmp_path / "token"
    if token is not None:
        path.write_text(token)
        path.chmod(mode)
    cfg = http_config(list(targets))
    cfg["control"] = {"listen": "127.0.0.1:%d" % free_port(), "token_file": str(path)}
    return cfg, int(cfg["control"]["listen"].rsplit(":", 1)[1])


def tcp_call(port, method, path, body=None, auth=None, headers=()):
    """One request to the TCP control listener; returns the Response (body parsed in .json)."""
    hdrs = list(headers)
    if auth is not None:
        hdrs.append(("Authorization", auth))
    data = None
    if body is not None:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body.encode()
        hdrs.append(("Content-Type", "application/json"))
    hdrs.append(("Connection", "close"))
    with Client(port, timeout=5.0) as c:
        r = c.request(method, path, headers=hdrs, body=data)
    try:
        r.json = json.loads(r.body.decode())
    except ValueError:
        r.json = None
    return r


def health_ids(lb):
    status, body = lb.ctl("GET", "/v1/target-groups/app/health")
    assert status == 200, body
    return sorted("%s:%d" % (d["Target"]["Id"], d["Target"]["Port"])
                  for d in body["TargetHealthDescriptions"])


REQUESTS = [
    ("GET", "/healthz", None),
    ("GET", "/metrics", None),
    ("GET", "/v1/target-groups", None),
    ("GET", "/v1/target-groups/app/health", None),
    ("GET", "/v1/config", None),
    ("GET", "/v1/target-groups/nosuch/health", None),
    ("GET", "/nothing-here", None),
    ("POST", "/v1/target-groups/app/register", {"Targets": [{"Id": "127.0.0.9", "Port": 81}]}),
    ("POST", "/v1/target-groups/app/deregister", {"Targets": [{"Id": "127.0.0.9", "Port": 80}]}),
    ("POST", "/v1/target-groups/app/register", "not json"),
]

BAD_AUTH = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer wrong-token",
    "Bearer " + TOKEN[:-1],
    "Bearer " + TOKEN + "x",
    "Basic " + TOKEN,
    TOKEN,
]


def test_requests_without_valid_token_get_401(berth, http_config, tmp_path):
    """Every request to the TCP listener with no, a wrong or a malformed Authorization header gets 401 Unauthorized with WWW-Authenticate, and changes nothing."""
    cfg, port = tcp_config(http_config, tmp_path, ["127.0.0.9:80"])
    lb = berth(cfg)
    before = health_ids(lb)
    failures = []
    for auth in BAD_AUTH:
        for method, path, body in REQUESTS:
            try:
                r = tcp_call(port, method, path, body, auth=auth)
            except (OSError, EOFError, ValueError) as e:
                failures.append("%s %s auth=%r: %r" % (method, path, auth, e))
                continue
            code = (r.json or {}).get("Error", {}).get("Code") if isinstance(r.json, dict) \
                else None
            www = r.header("WWW-Authenticate") or ""
            if r.status != 401 or code != "Unauthorized" or not www.startswith("Bearer"):
                failures.append("%s %s auth=%r -> %s %r WWW-Authenticate=%r" % (
                    method, path, auth, r.status, r.body[:200], www))
            if TOKEN.encode() in r.body:
                failures.append("%s %s auth=%r: the answer contains the token" % (
                    method, path, auth))
    assert not failures, "\n".join(failures)
    assert health_ids(lb) == before


def test_right_token_works(berth, backend, http_config, tmp_path):
    """With the right Bearer token the TCP listener serves healthz, the group list, register, health and deregister like the Unix socket."""
    b = backend()
    cfg, port = tcp_config(http_config, tmp_path, [b.addr])
    lb = berth(cfg)
    assert "control listening on 127.0.0.1:%d" % port in lb.stderr
    auth = "Bearer " + TOKEN
    r = tcp_call(port, "GET", "/healthz", auth=auth)
    assert (r.status, r.body) == (200, b"ok\n"), r
    r = tcp_call(port, "GET", "/v1/target-groups", auth=auth)
    assert r.status == 200, r
    assert [g["TargetGroupName"] for g in r.json["TargetGroups"]] == ["app"], r.json
    r = tcp_call(port, "POST", "/v1/target-groups/app/register",
                 {"Targets": [{"Id": "127.0.0.9", "Port": 81}]}, auth=auth)
    assert (r.status, r.json) == (200, {}), r
    assert health_ids(lb) == sorted([b.addr, "127.0.0.9:81"])
    r = tcp_call(port, "GET", "/v1/target-groups/app/health", auth=auth)
    assert r.status == 200, r
    assert sorted("%s:%d" % (d["Target"]["Id"], d["Target"]["Port"])
                  for d in r.json["TargetHealthDescriptions"]) == sorted([b.addr, "127.0.0.9:81"])
    r = tcp_call(port, "POST", "/v1/target-groups/app/deregister",
                 {"Targets": [{"Id": "127.0.0.9", "Port": 81}], "Wait": True}, auth=auth)
    assert (r.status, r.json) == (200, {}), r
    assert health_ids(lb) == [b.addr]
    r = tcp_call(port, "GET", "/v1/target-groups/nosuch/health", auth=auth)
    assert r.status == 404 and r.json["Error"]["Code"] == "TargetGroupNotFound", r
    r = tcp_call(port, "POST", "/v1/target-groups/app/register", "{", auth=auth)
    assert r.status == 400 and r.json["Error"]["Code"] == "ValidationError", r
    r = tcp_call(port, "GET", "/metrics", auth=auth)
    assert r.status == 200 and b"berth_" in r.body, r
    # The Unix socket needs no token.
    assert lb.ctl("GET", "/healthz")[0] == 200


def test_token_file_refusals(berth, http_config, tmp_path):
    """berth exits 1 with one line on stderr naming the token file when it is missing, world-readable (0644) or empty."""
    for why, mode, token, words in (("missing", 0o600, None, ()),
                                    ("0644", 0o644, TOKEN + "\n", ("world-readable",)),
                                    ("0604", 0o604, TOKEN + "\n", ("world-readable",)),
                                    ("empty", 0o600, "\n", ("empty",))):
        sub = tmp_path / why
        sub.mkdir()
        cfg, port = tcp_config(http_config, sub, mode=mode, token=token)
        lb = berth(cfg, wait_ready=False)
        try:
            rc = lb.proc.wait(5)
        except Exception:  # noqa: BLE001 - reported below
            rc = None
        token_file = cfg["control"]["token_file"]
        err = lb.stderr
        assert rc == 1, "%s token file: berth did not exit 1 (rc %r)\n%s" % (why, rc, err)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, "%s token file: expected one line, got\n%s" % (why, err)
        assert token_file in lines[0], (why, lines)
        for w in words:
            assert w in lines[0], (why, lines)
        assert "ready" not in err
        assert TOKEN not in err


def test_refused_start_leaves_no_socket(berth, http_config, tmp_path):
    """A start refused for a world-readable token file leaves no control socket file behind."""
    cfg, port = tcp_config(http_config, tmp_path, mode=0o644)
    lb = berth(cfg, wait_ready=False)
    assert lb.proc.wait(5) == 1, lb.stderr
    assert not os.path.exists(lb.sock_path), \
        "control socket %s left behind by a refused start:\n%s" % (lb.sock_path, lb.stderr)


def test_token_file_0600_starts(berth, http_config, tmp_path):
    """A token file with mode 0600 (and one with 0640) lets berth start with the TCP listener up."""
    for mode in (0o600, 0o640):
        sub = tmp_path / ("m%o" % mode)
        sub.mkdir()
        cfg, port = tcp_config(http_config, sub, mode=mode)
        lb = berth(cfg)
        r = tcp_call(port, "GET", "/healthz", auth="Bearer " + TOKEN)
        assert r.status == 200, (oct(mode), r)
        assert lb.stop() == 0
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                Client(port, timeout=0.5).close()
            except OSError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("TCP control listener still accepts after the stop")
