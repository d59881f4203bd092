# SPDX-License-Identifier: MIT
"""Process hygiene: pid file, SIGUSR1 reopening the access log after rotation, dropping
privileges, and the stop sequence (Connection: close to keep-alive clients, second signal)."""

import os
import signal
import subprocess
import time

import pytest

from conftest import berth_bin, free_port
from httpwire import Client, fetch


def test_pid_file_written_and_removed(berth, backend, http_config, tmp_path):
    """The pid file holds berth's pid while it runs and is gone after it stops."""
    b = backend()
    pid_file = str(tmp_path / "berth.pid")
    cfg = http_config([b.addr])
    cfg["pid_file"] = pid_file
    lb = berth(cfg)
    assert int(open(pid_file).read()) == lb.pid
    assert lb.stop() == 0
    assert not os.path.exists(pid_file)


def test_sigusr1_reopens_access_log(berth, backend, http_config, tmp_path):
    """After the log is moved away, SIGUSR1 makes berth write new lines to a fresh file at the configured path."""
    b = backend()
    lb = berth(http_config([b.addr]))
    fetch(lb.port, "GET", "/before")
    time.sleep(0.5)  # the workers flush their log buffers every 200 ms
    os.rename(lb.log_path, lb.log_path + ".1")
    lb.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.3)
    fetch(lb.port, "GET", "/after")
    time.sleep(0.5)
    assert "/before" in open(lb.log_path + ".1").read()
    fresh = open(lb.log_path).read()
    assert "/after" in fresh and "/before" not in fresh


def test_drops_privileges_to_nobody(berth, backend, http_config, tmp_path):
    """With user and group set, berth serves as that user after binding."""
    if os.getuid() != 0:
        import pytest
        pytest.skip("needs root to drop privileges")
    os.chmod(str(tmp_path), 0o777)
    b = backend()
    cfg = http_config([b.addr])
    cfg["user"] = "nobody"
    cfg["group"] = "nogroup"
    lb = berth(cfg)
    uid = [ln for ln in open("/proc/%d/status" % lb.pid) if ln.startswith("Uid:")][0].split()
    assert uid[1] == str(65534), uid
    assert fetch(lb.port, "GET", "/").status == 200


def test_stop_closes_keepalive_and_finishes_inflight(berth, backend, http_config):
    """On SIGTERM an in-flight slow request finishes and is answered with Connection: close; berth exits 0."""
    b = backend()
    lb = berth(http_config([b.addr]))
    with Client(lb.port, timeout=10) as c:
        c.send(b"GET /slow?ms=800 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        lb.proc.send_signal(signal.SIGTERM)
        r = c.response()
        assert r.status == 200, r
        assert (r.header("Connection") or "").lower() == "close", r.headers
    assert lb.stop() == 0


def test_second_signal_exits_at_once(berth, backend, http_config):
    """A second SIGTERM while requests are still in flight exits at once."""
    b = backend()
    lb = berth(http_config([b.addr]))
    with Client(lb.port, timeout=10) as c:
        c.send(b"GET /slow?ms=5000 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        lb.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        t = time.monotonic()
        lb.proc.send_signal(signal.SIGTERM)
        lb.proc.wait(3)
        assert time.monotonic() - t < 1.5


@pytest.mark.parametrize("key,value,error", [
    ("user", "nosuchuser-berth", "user nosuchuser-berth: no such user"),
    ("pid_file", "/nonexistent-berth-dir/berth.pid", "pid_file /nonexistent-berth-dir/berth.pid"),
])
def test_startup_failure_after_workers_start_exits(berth, backend, http_config, key, value,
                                                   error):
    """A start-up step that fails after the worker threads run (unknown user, unwritable pid file) makes berth exit 1 within 2 s with its error line, instead of hanging."""
    b = backend()
    cfg = http_config([b.addr])
    cfg["workers"] = 2
    cfg[key] = value
    lb = berth(cfg, wait_ready=False)
    try:
        rc = lb.proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        lb.proc.kill()
        raise AssertionError("berth still runs 2 s after a failed start-up")
    assert rc == 1, rc
    assert error in lb.stderr, lb.stderr


def test_workers_auto_follows_cpu_affinity(tmp_path):
    """workers: auto counts the CPUs berth may run on, not the host's: under taskset -c 0 it starts one worker."""
    cfg = tmp_path / "berth.yaml"
    cfg.write_text("workers: auto\ncontrol: {socket: %s}\naccess_log: off\n"
                   "listeners:\n  - {name: web, protocol: HTTP, bind: 127.0.0.1:%d,\n"
                   "     default_action: {forward: {target_groups: [{name: app}]}}}\n"
                   "target_groups:\n  - {name: app, protocol: HTTP, targets: []}\n"
                   % (tmp_path / "berth.sock", free_port()))
    proc = subprocess.Popen(["taskset", "-c", "0", berth_bin(), "-c", str(cfg)],
                            stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "ready" in line:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    text = "".join(lines)
    assert "workers: auto = 1 " in text, text
