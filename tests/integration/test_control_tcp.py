# SPDX-License-Identifier: MIT
"""The TCP control listener (control.listen): Bearer token required on every request, the
same API with the right token, and refusal to start on a missing, empty or world-readable
token file."""

import json
import os
import socket
import threading
import time

from conftest import free_port
from httpwire import Client, Reader, read_response

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


def health_ids(lb, draining=True):
    """The targets in the health view (without the draining ones when <draining> is False:
    as ELB, a deregistered target stays listed as draining until its delay ends)."""
    status, body = lb.ctl("GET", "/v1/target-groups/app/health")
    assert status == 200, body
    return sorted("%s:%d" % (d["Target"]["Id"], d["Target"]["Port"])
                  for d in body["TargetHealthDescriptions"]
                  if draining or d["TargetHealth"]["State"] != "draining")


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
    assert health_ids(lb, draining=False) == [b.addr]
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


# ---- issue 15 item 7: the control plane's own HTTP server ----

AUTH = ("Authorization", "Bearer " + TOKEN)


def cpu_seconds(pid):
    """User plus system CPU time of process <pid>, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def read_all(sock, timeout=5.0):
    """Everything the peer sends until it closes (a reset ends it too)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def split_responses(data):
    """Parses back-to-back responses (Content-Length framed) out of <data>."""
    out = []
    reader = Reader(_Bytes(data))
    while reader.buf or not reader.eof:
        try:
            out.append(read_response(reader))
        except EOFError:
            break
    return out


class _Bytes:
    """A socket stand-in serving <data> once, then EOF."""

    def __init__(self, data):
        self.data = data

    def recv(self, n):
        out, self.data = self.data[:n], self.data[n:]
        return out


def assert_json_error(r, status, code):
    """<r> is <status> with {"Error":{"Code":<code>,"Message":...}} as application/json."""
    assert r.status == status, r
    assert (r.header("Content-Type") or "").startswith("application/json"), r
    assert b"<html" not in r.body.lower(), r
    body = json.loads(r.body.decode())
    assert set(body) == {"Error"}, body
    assert body["Error"]["Code"] == code and body["Error"]["Message"], body


def test_issue15_connection_cap(berth, http_config, tmp_path):
    """Past 256 open TCP control connections a new one gets 503 JSON TooManyConnections and is closed at once, berth's descriptors stay bounded through 2000 attempts, one warning line is logged, and the Unix socket and freed slots keep working."""
    cfg, port = tcp_config(http_config, tmp_path)
    lb = berth(cfg)
    base_fds = open_fds(lb.pid)
    idle = []
    try:
        for _ in range(256):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        # every slot is taken once berth has accepted them all
        deadline = time.monotonic() + 5
        while open_fds(lb.pid) < base_fds + 256 and time.monotonic() < deadline:
            time.sleep(0.05)
        over = socket.create_connection(("127.0.0.1", port), timeout=5)
        t0 = time.monotonic()
        r = read_response(Reader(over))
        assert_json_error(r, 503, "TooManyConnections")
        assert over.recv(1) == b"", "connection past the cap stays open"
        assert time.monotonic() - t0 < 2
        over.close()
        for _ in range(2000):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.close()
        assert open_fds(lb.pid) < base_fds + 256 + 32, open_fds(lb.pid)
        assert lb.ctl("GET", "/healthz")[0] == 200
        assert lb.stderr.count("256 connections open, the limit") == 1, lb.stderr[-3000:]
        for s in idle[:10]:
            s.close()
        deadline = time.monotonic() + 5
        while True:
            r = tcp_call(port, "GET", "/healthz", auth="Bearer " + TOKEN)
            if r.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert (r.status, r.body) == (200, b"ok\n"), r
    finally:
        for s in idle:
            s.close()


def test_issue15_huge_header_refused_early(berth, http_config, tmp_path):
    """A 64 MiB header line with no newline gets 431 JSON after 16 KiB, within a second and well under half a second of berth's CPU; a 15 KiB head still works."""
    cfg, port = tcp_config(http_config, tmp_path)
    lb = berth(cfg)
    r = tcp_call(port, "GET", "/healthz", auth="Bearer " + TOKEN,
                 headers=[("X-Pad", "p" * (15 * 1024))])
    assert r.status == 200, r
    for path, name in ((("127.0.0.1", port), "TCP"), (lb.sock_path, "Unix")):
        fam = socket.AF_INET if name == "TCP" else socket.AF_UNIX
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        cpu0, t0 = cpu_seconds(lb.pid), time.monotonic()
        errors = []

        def send():
            try:
                s.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * (64 << 20))
            except OSError as e:  # berth may close before taking it all
                errors.append(e)

        th = threading.Thread(target=send)
        th.start()
        r = read_response(Reader(s))
        took = time.monotonic() - t0
        th.join(10)
        s.close()
        cpu = cpu_seconds(lb.pid) - cpu0
        assert_json_error(r, 431, "RequestHeaderFieldsTooLarge")
        assert took < 1.0, "%s: 431 after %.2fs" % (name, took)
        assert cpu < 0.5, "%s: berth used %.2fs of CPU on a 64 MiB header" % (name, cpu)
    # many small header lines count too
    hdrs = [("X-H%d" % i, "v" * 200) for i in range(90)]
    r = tcp_call(port, "GET", "/healthz", auth="Bearer " + TOKEN, headers=hdrs)
    assert_json_error(r, 431, "RequestHeaderFieldsTooLarge")
    assert lb.ctl("GET", "/healthz")[0] == 200


BAD_REQUESTS = [
    # (raw bytes, status, code)
    (b"this is not http\r\n\r\n", 405, "MethodNotAllowed"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 405, "MethodNotAllowed"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, "BadRequest"),
    (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400, "BadRequest"),
    (b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400,
     "BadRequest"),
    (b"PUT /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 405, "MethodNotAllowed"),
    (b"DELETE /v1/target-groups/app HTTP/1.1\r\nHost: x\r\n\r\n", 405, "MethodNotAllowed"),
    (b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 405, "MethodNotAllowed"),
    (b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", 405, "MethodNotAllowed"),
    (b"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n", 413,
     "RequestEntityTooLarge"),
]


def raw_exchange(target, data, timeout=5.0):
    """Sends <data> on a new connection to <target> ((host, port) or a Unix path) and
    returns the first response."""
    fam = socket.AF_UNIX if isinstance(target, str) else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(target)
        s.sendall(data)
        return read_response(Reader(s))


def test_issue15_errors_are_json(berth, http_config, tmp_path):
    """Malformed requests, refused methods and oversized bodies (Content-Length and chunked) get JSON errors with Error.Code on both the Unix socket and the TCP listener, never HTML."""
    cfg, port = tcp_config(http_config, tmp_path)
    lb = berth(cfg)
    auth = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
    failures = []
    for target in (lb.sock_path, ("127.0.0.1", port)):
        for data, status, code in BAD_REQUESTS:
            if not isinstance(target, str) and b"\r\n" in data and data.startswith(b"POST"):
                data = data.replace(b"\r\n", b"\r\n" + auth, 1)
            try:
                assert_json_error(raw_exchange(target, data), status, code)
            except (AssertionError, OSError, EOFError, ValueError) as e:
                failures.append("%r %r: %r" % (target, data[:40], e))
        # a chunked body past 4 MiB: refused once it passes the limit
        with socket.socket(socket.AF_UNIX if isinstance(target, str) else socket.AF_INET) as s:
            s.settimeout(10)
            s.connect(target)
            s.sendall(b"POST /v1/target-groups/app/register HTTP/1.1\r\nHost: x\r\n"
                      + (b"" if isinstance(target, str) else auth)
                      + b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (1 << 20, b" " * (1 << 20))
            try:
                for _ in range(5):
                    s.sendall(chunk)
            except OSError:
                pass
            try:
                assert_json_error(read_response(Reader(s)), 413, "RequestEntityTooLarge")
            except (AssertionError, OSError, EOFError, ValueError) as e:
                failures.append("%r chunked 5 MiB: %r" % (target, e))
    assert not failures, "\n".join(failures)
    r = raw_exchange(lb.sock_path, b"PUT /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.header("Allow") == "GET, POST", r
    assert lb.ctl("GET", "/healthz")[0] == 200


def test_issue15_half_close_gets_whole_answers(berth, backend, http_config, tmp_path):
    """A client that sends complete requests (one, a POST with a body, or three pipelined) and then shuts its sending side gets every answer whole, then the close, on both listeners; so does a "Wait" deregister."""
    t = backend()
    cfg, port = tcp_config(http_config, tmp_path, [t.addr])
    cfg["target_groups"][0]["deregistration_delay"] = "1s"
    lb = berth(cfg)
    auth = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
    body = json.dumps({"Targets": [{"Id": "127.0.0.9", "Port": 81}]}).encode()
    wait_body = json.dumps({"Targets": [{"Id": "127.0.0.9", "Port": 81}],
                            "Wait": True}).encode()

    def req(method, path, data=b"", tcp=False):
        head = b"%s %s HTTP/1.1\r\nHost: x\r\n" % (method, path)
        if tcp:
            head += auth
        if data:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
        return head + b"\r\n" + data

    for tcp in (False, True):
        target = ("127.0.0.1", port) if tcp else lb.sock_path
        cases = [
            ([req(b"GET", b"/v1/target-groups", tcp=tcp)], ["TargetGroups"]),
            ([req(b"POST", b"/v1/target-groups/app/register", body, tcp)], [{}]),
            ([req(b"GET", b"/healthz", tcp=tcp), req(b"GET", b"/v1/config", tcp=tcp),
              req(b"GET", b"/metrics", tcp=tcp)], ["ok", "config", "metrics"]),
            ([req(b"POST", b"/v1/target-groups/app/deregister", wait_body, tcp)], [{}]),
        ]
        for reqs, expect in cases:
            fam = socket.AF_INET if tcp else socket.AF_UNIX
            with socket.socket(fam, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(target)
                s.sendall(b"".join(reqs))
                s.shutdown(socket.SHUT_WR)
                got = split_responses(read_all(s, timeout=10))
            assert len(got) == len(expect), (tcp, reqs, got)
            for r, e in zip(got, expect):
                assert r.status == 200, (tcp, r)
                if e == "ok":
                    assert r.body == b"ok\n", r
                elif e == "metrics":
                    assert b"berth_requests_total" in r.body, r
                elif e == "config":
                    assert json.loads(r.body)["target_groups"][0]["name"] == "app", r
                elif e == "TargetGroups":
                    assert json.loads(r.body)["TargetGroups"][0]["TargetGroupName"] == "app"
                else:
                    assert json.loads(r.body) == e, r
        assert health_ids(lb, draining=False) == [t.addr]


def test_issue15_keep_alive_and_pipelining(berth, http_config, tmp_path):
    """http.client reuses one keep-alive connection for a series of calls, pipelined requests are answered in order on one connection, and Expect: 100-continue gets its interim answer."""
    import http.client
    cfg, port = tcp_config(http_config, tmp_path)
    lb = berth(cfg)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    hdrs = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
    seen = set()
    for i in range(5):
        conn.request("POST", "/v1/target-groups/app/register",
                     json.dumps({"Targets": [{"Id": "127.0.0.%d" % (20 + i), "Port": 80}]}),
                     hdrs)
        r = conn.getresponse()
        assert (r.status, json.loads(r.read())) == (200, {})
        seen.add(conn.sock.getsockname())
        conn.request("GET", "/v1/target-groups/app/health", headers=hdrs)
        r = conn.getresponse()
        assert r.status == 200
        assert len(json.loads(r.read())["TargetHealthDescriptions"]) == i + 1
        seen.add(conn.sock.getsockname())
    assert len(seen) == 1, "http.client needed %d connections" % len(seen)
    conn.close()
    auth = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (p, auth)
                           for p in (b"/healthz", b"/nothing", b"/v1/target-groups/nosuch/health",
                                     b"/healthz")))
        rd = Reader(s)
        got = [read_response(rd) for _ in range(4)]
    assert [r.status for r in got] == [200, 404, 404, 200], got
    assert json.loads(got[2].body)["Error"]["Code"] == "TargetGroupNotFound"
    # Expect: 100-continue, as curl sends for bodies over 1 KiB
    body = json.dumps({"Targets": [{"Id": "127.0.0.30", "Port": 80}]}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /v1/target-groups/app/register HTTP/1.1\r\nHost: x\r\n" + auth
                  + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        rd = Reader(s)
        assert read_response(rd).status == 100
        s.sendall(body)
        r = read_response(rd)
        assert (r.status, json.loads(r.body)) == (200, {}), r
    assert "127.0.0.30:80" in health_ids(lb)


def test_issue15_timeouts(berth, http_config, tmp_path):
    """On the TCP listener a connection that sends nothing is closed after control.request_timeout, a half-sent request head gets 408 JSON then, and an idle keep-alive connection outlives it and is closed after control.idle_timeout (2 s and 5 s here; 10 s and 30 s by default, which test_control_timeout_defaults checks in the config)."""
    cfg, port = tcp_config(http_config, tmp_path)
    cfg["control"]["request_timeout"] = "2s"
    cfg["control"]["idle_timeout"] = "5s"
    lb = berth(cfg)
    auth = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
    silent = socket.create_connection(("127.0.0.1", port), timeout=10)
    partial = socket.create_connection(("127.0.0.1", port), timeout=10)
    partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + auth)
    keep = Client(port, timeout=10)
    r = keep.request("GET", "/healthz", headers=[AUTH])
    assert r.status == 200 and r.header("Connection") is None, r
    t0 = time.monotonic()
    # the Unix socket is not held up meanwhile
    assert lb.ctl("GET", "/healthz")[0] == 200
    assert silent.recv(1) == b""
    took = time.monotonic() - t0
    assert 1.7 <= took < 3.5, "silent connection closed after %.1fs" % took
    r = read_response(Reader(partial))
    took = time.monotonic() - t0
    assert_json_error(r, 408, "RequestTimeout")
    assert took < 3.5, "408 after %.1fs" % took
    assert keep.wait_closed(0.5) is None, "keep-alive connection closed at the request timeout"
    closed = keep.wait_closed(6)
    assert closed is not None, "keep-alive connection still open after 9 s"
    took = time.monotonic() - t0
    assert 4.5 <= took < 6.5, "idle keep-alive connection closed after %.1fs" % took
    for s in (silent, partial):
        s.close()
    keep.close()


def test_control_timeout_defaults(berth, http_config, tmp_path):
    """Without control.request_timeout and idle_timeout the control API runs with 10 s and 30 s, as GET /v1/config shows; a reload changes them."""
    cfg, port = tcp_config(http_config, tmp_path)
    lb = berth(cfg)
    st, body = lb.ctl("GET", "/v1/config")
    assert st == 200 and body["control"]["request_timeout"] == "10s", body["control"]
    assert body["control"]["idle_timeout"] == "30s", body["control"]
    text = open(lb.config_path).read()
    assert "control:" in text
    cfg["control"]["idle_timeout"] = "7s"
    from conftest import _fill_config, to_yaml
    filled, _, _, _ = _fill_config(cfg, str(tmp_path))
    filled["control"]["socket"] = lb.sock_path
    filled["listeners"][0]["bind"] = "127.0.0.1:%d" % lb.port
    open(lb.config_path, "w").write(to_yaml(filled) + "\n")
    assert lb.ctl("POST", "/v1/reload")[0] == 200
    st, body = lb.ctl("GET", "/v1/config")
    assert body["control"]["idle_timeout"] == "7s", body["control"]


def test_issue15_long_token_read_whole(berth, http_config, tmp_path):
    """A 2000-character token works in full and its 1023-character prefix (what a 1 KiB read kept) is refused; a token file over 4096 bytes or with a control character inside stops the start with one line naming the file."""
    token = "".join("abcdefghijklmnopqrstuvwxyz0123456789-_"[i % 38] for i in range(2000))
    cfg, port = tcp_config(http_config, tmp_path, token=token + "\n")
    lb = berth(cfg)
    r = tcp_call(port, "GET", "/healthz", auth="Bearer " + token)
    assert (r.status, r.body) == (200, b"ok\n"), r
    for bad in (token[:1023], token[:1999], token + "x"):
        r = tcp_call(port, "GET", "/healthz", auth="Bearer " + bad)
        assert r.status == 401, (len(bad), r)
    assert lb.stop() == 0
    # exactly 4096 bytes (newline included) is accepted
    sub = tmp_path / "exact"
    sub.mkdir()
    exact = "t" * 4095
    cfg, port = tcp_config(http_config, sub, token=exact + "\n")
    lb = berth(cfg)
    assert tcp_call(port, "GET", "/healthz", auth="Bearer " + exact).status == 200
    assert lb.stop() == 0
    for why, text, words in (("long", "t" * 4097, "longer than 4096 bytes"),
                             ("long-nl", "t" * 4096 + "\n", "longer than 4096 bytes"),
                             ("two-lines", "part1\npart2\n", "control character")):
        sub = tmp_path / why
        sub.mkdir()
        cfg, port = tcp_config(http_config, sub, token=text)
        lb = berth(cfg, wait_ready=False)
        assert lb.proc.wait(5) == 1, (why, lb.stderr)
        lines = [ln for ln in lb.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, (why, lb.stderr)
        assert cfg["control"]["token_file"] in lines[0] and words in lines[0], (why, lines)
        assert "ttttt" not in lines[0] and "part" not in lines[0], lines
        assert not os.path.exists(lb.sock_path), why


def write_config(lb, cfg):
    """Rewrites the running berth's config file from <cfg> (a dict as given to berth())."""
    from conftest import _fill_config, to_yaml
    for lst in cfg["listeners"]:  # the same ports as at the start
        lst.setdefault("bind", "127.0.0.1:%d" % lb.ports[lst["name"]])
    full, _, _, _ = _fill_config(cfg, lb.tmpdir)
    with open(lb.config_path, "w") as f:
        f.write(to_yaml(full) + "\n")


def refused(port):
    """True when nothing accepts on 127.0.0.1:<port>."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_issue15_reload_applies_token_and_listen(berth, http_config, tmp_path):
    """A reload (POST /v1/reload or SIGHUP) puts a new token in force (the old one gets 401), moves, removes and adds the TCP listener, and answers a reload that arrives through the listener it moves; a reload whose token file or address is bad fails with the reason and changes nothing; a changed control.socket is reported as needing a restart."""
    import signal
    cfg, port_a = tcp_config(http_config, tmp_path)
    token_file = cfg["control"]["token_file"]
    lb = berth(cfg)

    def ok(port, token):
        return tcp_call(port, "GET", "/healthz", auth="Bearer " + token).status == 200

    def reload_via_unix():
        st, body = lb.ctl("POST", "/v1/reload")
        return st, body

    # new token, same address: SIGHUP
    with open(token_file, "w") as f:
        f.write("second-token\n")
    lb.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while not ok(port_a, "second-token") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ok(port_a, "second-token")
    assert tcp_call(port_a, "GET", "/healthz", auth="Bearer " + TOKEN).status == 401
    # move the listener, asking through the listener that moves
    port_b = free_port()
    cfg["control"]["listen"] = "127.0.0.1:%d" % port_b
    write_config(lb, cfg)
    r = tcp_call(port_a, "POST", "/v1/reload", auth="Bearer second-token")
    assert (r.status, r.json) == (200, {"Result": "reloaded"}), r
    assert ok(port_b, "second-token")
    assert refused(port_a)
    # a busy address: the reload fails, the listener and token stay
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    cfg["control"]["listen"] = "127.0.0.1:%d" % busy.getsockname()[1]
    write_config(lb, cfg)
    with open(token_file, "w") as f:
        f.write("third-token\n")
    st, body = reload_via_unix()
    assert st == 400 and body["Error"]["Code"] == "ConfigInvalid", body
    assert "bind() failed" in body["Error"]["Message"], body
    assert lb.config_path in body["Error"]["Message"], body
    busy.close()
    assert ok(port_b, "second-token") and not ok(port_b, "third-token")
    # a world-readable token file: the reload fails, nothing changes
    cfg["control"]["listen"] = "127.0.0.1:%d" % port_b
    write_config(lb, cfg)
    os.chmod(token_file, 0o644)
    st, body = reload_via_unix()
    assert st == 400 and "world-readable" in body["Error"]["Message"], body
    assert ok(port_b, "second-token") and not ok(port_b, "third-token")
    assert "third-token" not in json.dumps(body) and "third-token" not in lb.stderr
    os.chmod(token_file, 0o600)
    st, body = reload_via_unix()
    assert st == 200, body
    assert ok(port_b, "third-token") and not ok(port_b, "second-token")
    # no listener, then one again
    del cfg["control"]["listen"]
    del cfg["control"]["token_file"]
    write_config(lb, cfg)
    assert reload_via_unix()[0] == 200
    assert refused(port_b)
    port_c = free_port()
    cfg["control"].update({"listen": "127.0.0.1:%d" % port_c, "token_file": token_file})
    write_config(lb, cfg)
    assert reload_via_unix()[0] == 200
    assert ok(port_c, "third-token")
    assert "control no longer listening on 127.0.0.1:%d" % port_a in lb.stderr
    assert "control listening on 127.0.0.1:%d (token required)" % port_c in lb.stderr
    assert "no longer listening on 127.0.0.1:%d (HTTP)" % lb.port not in lb.stderr
    # control.socket needs a restart: said, and the socket stays
    cfg["control"]["socket"] = str(tmp_path / "other.sock")
    write_config(lb, cfg)
    assert reload_via_unix()[0] == 200
    assert "control.socket changed to %s" % cfg["control"]["socket"] in lb.stderr
    assert not os.path.exists(cfg["control"]["socket"])
