# SPDX-License-Identifier: MIT
"""Issue 15, item 7: berth under a small open file limit (RLIMIT_NOFILE set for the berth
process only). Clients beyond what the descriptors allow are closed at once instead of
making berth spin on accept(); when the process has no descriptor left at all, accepting
pauses (worker and control socket alike) with one log line; UDP flows are capped below the
limit so a flood from many source ports cannot starve TCP or the control socket."""

import os
import socket
import time

from conftest import metric, unix_http
from httpwire import fetch
from l4servers import l4_fixture  # noqa: F401 (the l4 fixture)
from l4servers import udp_ask, udp_client

NOFILE = 256


def cpu_seconds(pid):
    """utime + stime of the whole process (every thread), from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def log_lines(lb):
    return lb.stderr.count("\n")


def calm_for(lb, seconds=2.0):
    """(CPU seconds berth used, log lines it wrote) over <seconds> of doing nothing."""
    cpu0, lines0 = cpu_seconds(lb.pid), log_lines(lb)
    time.sleep(seconds)
    return cpu_seconds(lb.pid) - cpu0, log_lines(lb) - lines0


def connect_many(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        socks.append(s)
    return socks


def closed_by_berth(socks, timeout=2.0):
    """The sockets berth closed (EOF or reset) within <timeout>."""
    deadline = time.monotonic() + timeout
    closed, pending = [], list(socks)
    while pending and time.monotonic() < deadline:
        for s in list(pending):
            s.settimeout(0.01)
            try:
                data = s.recv(1)
            except socket.timeout:
                continue
            except ConnectionResetError:
                data = b""
            assert data == b"", data
            closed.append(s)
            pending.remove(s)
    return closed


def healthz(lb, timeout=2.0):
    status, body, _ = unix_http(lb.sock_path, "GET", "/healthz", timeout=timeout)
    return status, body


def test_clients_beyond_the_fd_limit_are_closed_without_spinning(berth, backend, http_config):
    """With more idle clients than descriptors, berth closes the excess at once and counts them, stays idle (CPU, log), keeps answering /healthz, and serves new clients once the others leave."""
    b = backend()
    lb = berth(http_config([b.addr]), nofile=NOFILE)
    socks = connect_many(lb.port, NOFILE + 60)
    closed = closed_by_berth(socks)
    # Every descriptor berth could give a client was given (the reserve aside), the rest closed.
    assert len(closed) >= 60, "berth closed only %d of %d clients" % (len(closed), len(socks))
    assert len(closed) < len(socks) - NOFILE // 2, len(closed)
    cpu, lines = calm_for(lb)
    assert cpu < 0.2, "berth used %.2fs of CPU in 2s at its fd limit" % cpu
    assert lines <= 3, "log grew by %d lines in 2s:\n%s" % (lines, lb.stderr[-3000:])
    assert healthz(lb) == (200, "ok\n")
    assert metric(lb, "berth_rejected_connections_total") == len(closed)
    assert "near the open file limit (%d)" % NOFILE in lb.stderr
    assert lb.stderr.count("near the open file limit") == 1, lb.stderr[-3000:]
    for s in socks:
        s.close()
    time.sleep(0.3)
    for i in range(3):
        assert fetch(lb.port, "GET", "/after%d" % i, timeout=3).status == 200


def test_accept_pauses_when_the_process_is_out_of_descriptors(berth, backend, http_config):
    """When every descriptor is taken (idle clients, then idle control connections), a new client waits in the backlog while berth pauses accepting: no spinning, one warning, and once descriptors free up the waiting client and the control socket are served."""
    b = backend()
    lb = berth(http_config([b.addr]), nofile=NOFILE)
    socks = connect_many(lb.port, NOFILE)
    closed_by_berth(socks, timeout=1.0)
    # The control socket takes what the workers left until nothing is left.
    ctl = []
    while open_fds(lb.pid) < NOFILE and len(ctl) < NOFILE:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(lb.sock_path)
        ctl.append(c)
        if len(ctl) % 8 == 0:
            time.sleep(0.05)
    time.sleep(0.2)
    assert open_fds(lb.pid) == NOFILE, open_fds(lb.pid)
    waiting = socket.create_connection(("127.0.0.1", lb.port), timeout=3)
    late_ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    late_ctl.connect(lb.sock_path)  # queued: the control socket cannot accept either
    time.sleep(0.3)
    cpu, lines = calm_for(lb)
    assert cpu < 0.2, "berth used %.2fs of CPU in 2s without descriptors" % cpu
    assert lines <= 3, "log grew by %d lines in 2s:\n%s" % (lines, lb.stderr[-3000:])
    assert lb.stderr.count("accept() failed: Too many open files") <= 2, lb.stderr[-3000:]
    assert "worker 0: accept() failed: Too many open files" in lb.stderr
    for s in socks + ctl:
        s.close()
    # The waiting client is accepted within a pause and served.
    waiting.sendall(b"GET /waited HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    waiting.settimeout(3)
    head = waiting.recv(64)
    assert head.startswith(b"HTTP/1.1 200"), head
    waiting.close()
    late_ctl.settimeout(3)
    late_ctl.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert late_ctl.recv(64).startswith(b"HTTP/1.1 200")
    late_ctl.close()
    assert healthz(lb) == (200, "ok\n")
    assert metric(lb, "berth_accept_pauses_total") >= 1
    assert "worker 0: accept() succeeds again" in lb.stderr


def test_udp_flood_cannot_take_every_descriptor(berth, backend, l4):
    """udp_max_flows is lowered to half the open file limit (with a warning); a flood from many source ports fills only that, the rest is dropped and counted, and TCP, HTTP and the control socket keep working."""
    nofile = 128
    t = l4.udp("127.0.0.2")
    b = backend(host="127.0.0.3")
    cfg = {
        "workers": 1,
        "listeners": [
            {"name": "l4", "protocol": "UDP",
             "default_action": {"forward": {"target_groups": [{"name": "g"}]}}},
            {"name": "web", "protocol": "HTTP",
             "default_action": {"forward": {"target_groups": [{"name": "app"}]}}},
        ],
        "target_groups": [
            {"name": "g", "protocol": "UDP", "health_check": {"enabled": False},
             "targets": [t.addr]},
            {"name": "app", "protocol": "HTTP", "health_check": {"enabled": False},
             "targets": [b.addr]},
        ],
    }
    lb = berth(cfg, nofile=nofile)
    cap = nofile // 2  # one worker, one UDP listener
    assert ("listener l4: udp_max_flows 65536 lowered to %d by the open file limit %d"
            % (cap, nofile)) in lb.stderr, lb.stderr
    udp = ("127.0.0.1", lb.ports["l4"])
    first = udp_client()
    assert udp_ask(first, udp, b"first")[0] is not None
    flood = 5 * nofile
    sources = []  # kept open: a closed socket's port could come back as a later source
    for i in range(flood):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.sendto(b"flood %d" % i, udp)
        sources.append(s)
    deadline = time.monotonic() + 5
    rejected = None
    while time.monotonic() < deadline:
        rejected = metric(lb, "berth_udp_flows_rejected_total", listener="l4")
        if rejected is not None and rejected >= flood + 1 - cap:
            break
        time.sleep(0.05)
    assert rejected == flood + 1 - cap, rejected
    assert metric(lb, "berth_udp_flows", listener="l4") == cap
    assert open_fds(lb.pid) < nofile - 16, open_fds(lb.pid)
    assert "UDP flow table full (%d flows: udp_max_flows, lowered by the open file limit)" % cap \
        in lb.stderr
    # What a user sees: the old flow still answers, a new one does not, HTTP and control work.
    assert udp_ask(first, udp, b"again")[0] is not None
    late = udp_client()
    assert udp_ask(late, udp, b"late", timeout=0.3)[0] is None
    for i in range(3):
        assert fetch(lb.ports["web"], "GET", "/tcp%d" % i, timeout=3).status == 200
    assert healthz(lb) == (200, "ok\n")
    for s in sources + [first, late]:
        s.close()
