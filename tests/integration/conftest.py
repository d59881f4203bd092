# SPDX-License-Identifier: MIT
"""Fixtures for berth's integration tests.

`berth(config)` writes a YAML config into the test's tmp dir, starts the real binary
(env BERTH_BIN, default build/berth of this checkout) as `berth -c FILE`, waits for "ready" on
stderr and a 200 from GET /healthz on the control socket, and on teardown stops it with
SIGTERM (SIGKILL after 5 s), failing the test if berth died from a signal or a sanitizer
reported an error. The env vars BERTH_START_TIMEOUT and BERTH_STOP_TIMEOUT (seconds) change
the ready wait (10 s) and the wait before SIGKILL (5 s), e.g. under valgrind.
`berth(config, nofile=N)` starts berth with RLIMIT_NOFILE N (soft and hard), for the fd limits.
`backend(mode)` starts a target server on the next loopback address 127.0.0.2, 127.0.0.3, ...
`http_config(targets)` builds the minimal HTTP config.
"""

import copy
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backends import Backend  # noqa: E402
from httpwire import Reader, read_response  # noqa: E402

# The binary the README's build makes, relative to this checkout (ctest sets BERTH_BIN).
BERTH_BIN = os.environ.get("BERTH_BIN", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                     "..", "..", "build", "berth"))
# Both can be raised for slow runs (valgrind: scripts/valgrind.sh sets them).
READY_TIMEOUT = float(os.environ.get("BERTH_START_TIMEOUT", "10"))
STOP_TIMEOUT = float(os.environ.get("BERTH_STOP_TIMEOUT", "5"))
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "ERROR: ThreadSanitizer", "WARNING: ThreadSanitizer")


METRIC_LINE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$")


def metric(lb, name, **labels):
    """The value of one sample of GET /metrics (labels in the order berth prints them), or
    None when absent."""
    status, text = lb.ctl("GET", "/metrics")
    assert status == 200, (status, text)
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    for line in text.splitlines():
        m = METRIC_LINE.match(line)
        if m and m.group(1) == name and (m.group(2) or "") == want:
            return float(m.group(3))
    return None


def free_port(host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def berth_bin():
    if not os.access(BERTH_BIN, os.X_OK):
        pytest.fail("berth binary not found at %s (set BERTH_BIN or build it)" % BERTH_BIN)
    return BERTH_BIN


# ---- a small block-style YAML writer, enough for configs ----
_PLAIN = re.compile(r"^[A-Za-z0-9_./\[\]-][A-Za-z0-9_./:\[\]*-]*$")
_SPECIAL = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if (_PLAIN.fullmatch(s) and not s.endswith(":") and s.lower() not in _SPECIAL
            and not re.match(r"^[-+]?[0-9.]+$", s) and not s.startswith("[")):
        return s
    return json.dumps(s)


def to_yaml(obj, indent=0):
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                out.append("%s%s:" % (pad, k))
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list) and v:
                out.append("%s%s:" % (pad, k))
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, dict):
                out.append("%s%s: {}" % (pad, k))
            elif isinstance(v, list):
                out.append("%s%s: []" % (pad, k))
            else:
                out.append("%s%s: %s" % (pad, k, _scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict) and item:
                sub = to_yaml(item, indent + 2)
                out.append(pad + "- " + sub[indent + 2:])
            elif isinstance(item, (dict, list)):
                out.append(pad + "- " + ("{}" if isinstance(item, dict) else "[]"))
            else:
                out.append(pad + "- " + _scalar(item))
    else:
        out.append(pad + _scalar(obj))
    return "\n".join(out)


def make_http_config(targets, group="app", **listener):
    """The minimal config of the tests: one HTTP listener "web" -> group "app"."""
    lst = {"name": "web", "protocol": "HTTP", "idle_timeout": "60s",
           "header_timeout": "10s",
           "default_action": {"forward": {"target_groups": [{"name": group}]}}}
    lst.update(listener)
    return {
        "workers": 1,
        "listeners": [lst],
        "target_groups": [{"name": group, "protocol": "HTTP",
                           "health_check": {"enabled": False},
                           "targets": list(targets)}],
    }


def start_fails(berth, config, timeout=2):
    """Starts berth on <config> (the berth fixture), expecting exit 1 within <timeout> s, as
    every refused start must; returns its stderr."""
    lb = berth(config, wait_ready=False)
    try:
        rc = lb.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        lb.proc.kill()
        raise AssertionError("berth did not refuse to start:\n" + lb.stderr)
    assert rc == 1, (rc, lb.stderr)
    return lb.stderr


# ---- the control socket client ----
def unix_http(sock_path, method, path, body=None, timeout=5.0):
    """One HTTP/1.1 request over a Unix socket; returns (status, json-or-text, headers)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        req = "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" % (method, path)
        if body is not None:
            req += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        s.sendall(req.encode() + b"\r\n" + (body or b""))
        resp = read_response(Reader(s), method)
    finally:
        s.close()
    text = resp.body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = text
    return resp.status, data, resp.headers


class Berth:
    """A running berth process started by the `berth` fixture."""

    def __init__(self, tmpdir, config_path, ports, sock_path, log_path, stderr_path):
        self.tmpdir = tmpdir
        self.config_path = config_path
        self.ports = ports            # listener name -> port
        self.port = next(iter(ports.values())) if ports else None
        self.sock_path = sock_path
        self.log_path = log_path
        self.stderr_path = stderr_path
        self.proc = None
        self.returncode = None
        self.killed = False           # killed on purpose by the test (kill9)

    @property
    def pid(self):
        return self.proc.pid

    @property
    def stderr(self):
        try:
            with open(self.stderr_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def ctl(self, method, path, body=None):
        status, data, _ = unix_http(self.sock_path, method, path, body)
        return status, data

    def access_log(self, expect=None, timeout=3.0):
        """Parsed access log lines; with <expect>, waits until at least that many exist."""
        deadline = time.monotonic() + timeout
        while True:
            lines = []
            if self.log_path and os.path.exists(self.log_path):
                with open(self.log_path, "r", errors="replace") as f:
                    lines = [ln for ln in f.read().splitlines() if ln.strip()]
            if expect is None or len(lines) >= expect or time.monotonic() > deadline:
                return [json.loads(ln) for ln in lines]
            time.sleep(0.05)

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends <sig>, waits up to <timeout>, then SIGKILL; returns the exit status."""
        if self.returncode is not None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        return self.returncode

    def kill9(self):
        """SIGKILL, as a crash or an OOM kill would; the fixture does not count it a problem."""
        self.killed = True
        self.proc.kill()
        self.proc.wait()
        self.returncode = self.proc.returncode

    def sanitizer_report(self):
        err = self.stderr
        for mark in SANITIZER_MARKS:
            if mark in err:
                return err
        return None


def _fill_config(cfg, tmpdir):
    """Completes a config dict: control socket, access log, listener binds, shutdown."""
    cfg = copy.deepcopy(cfg)
    sock = os.path.join(tmpdir, "berth.sock")
    log = os.path.join(tmpdir, "access.log")
    control = cfg.setdefault("control", {})
    control.setdefault("socket", sock)
    cfg.setdefault("access_log", log)
    cfg.setdefault("shutdown_timeout", "3s")
    ports = {}
    for i, lst in enumerate(cfg.get("listeners", [])):
        if "bind" not in lst:
            lst["bind"] = "127.0.0.1:%d" % free_port()
        head = {k: lst.pop(k) for k in ("name", "protocol", "bind") if k in lst}
        head.update(lst)
        lst.clear()
        lst.update(head)
        port = int(str(lst["bind"]).rsplit(":", 1)[1])
        ports[lst.get("name", "listener%d" % i)] = port
    # Keep a deterministic key order: scalars first reads better in failure output.
    order = ["workers", "control", "access_log", "shutdown_timeout"]
    out = {k: cfg[k] for k in order if k in cfg}
    out.update({k: v for k, v in cfg.items() if k not in out})
    return out, ports, control["socket"], cfg["access_log"]


@pytest.fixture
def backend():
    """Factory: backend(mode="http", host=None) -> Backend on the next 127.0.0.N."""
    started = []
    counter = [2]

    def make(mode="http", host=None):
        if host is None:
            host = "127.0.0.%d" % counter[0]
            counter[0] += 1
        b = Backend(host, mode)
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()
    errors = [e for b in started for e in b.errors]
    if errors:
        pytest.fail("backend handler raised: %r" % errors)


@pytest.fixture
def http_config():
    return make_http_config


@pytest.fixture
def berth(tmp_path, backend):
    """Factory: berth(config dict or YAML text) -> running Berth.

    A dict is completed by _fill_config. In YAML text, each @PORT@ becomes a free port on
    127.0.0.1 and @TMP@ the test's tmp dir; control socket and access log are added when the
    text has none."""
    procs = []

    def start(config, wait_ready=True, nofile=None):
        tmpdir = str(tmp_path)
        if isinstance(config, dict):
            cfg, ports, sock, log = _fill_config(config, tmpdir)
            text = to_yaml(cfg) + "\n"
        else:
            sock = os.path.join(tmpdir, "berth.sock")
            log = os.path.join(tmpdir, "access.log")
            text = config.replace("@TMP@", tmpdir)
            while "@PORT@" in text:  # each @PORT@ becomes a different free port
                text = text.replace("@PORT@", str(free_port()), 1)
            if not re.search(r"(?m)^control:", text):
                text = "control: {socket: %s}\n" % sock + text
            if not re.search(r"(?m)^access_log:", text):
                text = "access_log: %s\n" % log + text
            m = re.search(r"(?m)^control:.*socket:\s*([^\s,}]+)", text)
            if m:
                sock = m.group(1)
            m = re.search(r"(?m)^access_log:\s*(\S+)", text)
            log = m.group(1) if m else None
            ports = {}
            for i, m in enumerate(re.finditer(r"bind:\s*\"?[\d.]+:(\d+)", text)):
                ports["listener%d" % i] = int(m.group(1))
        config_path = os.path.join(tmpdir, "berth.yaml")
        with open(config_path, "w") as f:
            f.write(text)
        stderr_path = os.path.join(tmpdir, "berth.stderr")
        b = Berth(tmpdir, config_path, ports, sock, log, stderr_path)
        stdout_path = os.path.join(tmpdir, "berth.stdout")
        preexec = None
        if nofile is not None:
            def preexec():  # in the child, before exec: berth cannot raise a hard limit
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        with open(stderr_path, "wb") as errf, open(stdout_path, "wb") as outf:
            b.proc = subprocess.Popen([berth_bin(), "-c", config_path], stdin=subprocess.DEVNULL,
                                      stdout=outf, stderr=errf, cwd=tmpdir, preexec_fn=preexec)
        procs.append(b)
        if wait_ready:
            _wait_ready(b, text)
        return b

    yield start

    problems = []
    for b in procs:
        rc = b.stop()
        if rc is not None and rc < 0 and not b.killed:
            problems.append("berth exited on signal %d\n--- config ---\n%s\n--- stderr ---\n%s"
                            % (-rc, open(b.config_path).read(), b.stderr[-8000:]))
        rep = b.sanitizer_report()
        if rep:
            problems.append("sanitizer report in berth's stderr:\n%s" % rep[-8000:])
    if problems:
        pytest.fail("\n\n".join(problems))


def _wait_ready(b, text):
    deadline = time.monotonic() + READY_TIMEOUT
    ready_line = False
    last = None
    while time.monotonic() < deadline:
        if b.proc.poll() is not None:
            pytest.fail("berth exited with %s before ready\n--- config ---\n%s\n--- stderr ---\n%s"
                        % (b.proc.returncode, text, b.stderr[-8000:]))
        if not ready_line:
            ready_line = any(ln.rstrip().endswith("ready") for ln in b.stderr.splitlines())
        if ready_line:
            try:
                status, _ = b.ctl("GET", "/healthz")
                if status == 200:
                    return
                last = "healthz answered %s" % status
            except (OSError, EOFError, ValueError) as e:
                last = "healthz: %r" % e
        time.sleep(0.02)
    pytest.fail("berth not ready within %.0fs (ready line seen: %s, %s)\n--- config ---\n%s\n"
                "--- stderr ---\n%s" % (READY_TIMEOUT, ready_line, last, text, b.stderr[-8000:]))
