# SPDX-License-Identifier: MIT
"""What an idle keep-alive client connection costs berth in memory.

An idle connection holds only its small session: the parsers, head spans and target-side
buffers of an exchange are taken when a request arrives and given back when the connection
goes idle, and an empty input buffer holds no read reservation. bench/idle.sh measures the
figure side by side with HAProxy and nginx (about 1.1 KiB each); here berth must stay well
under 4 KiB per connection, where it was 12 KiB before exchange memory was given back.
"""

import resource
import socket
import subprocess
import time

import pytest

from conftest import berth_bin

N = 800  # under the usual 1024 descriptor limit of the test process and of berth
MAX_BYTES_PER_CONN = 4096
WINDOW = 50


def _settled_rss(lb, secs=1.0):
    """RSS once it stops moving (connections accepted, reads done)."""
    last = lb.rss_kib()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(secs / 4)
        now = lb.rss_kib()
        if now == last:
            return now
        last = now
    return last


def _connect(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
    return socks


def _with_jemalloc():
    out = subprocess.run([berth_bin(), "--version"], capture_output=True, text=True).stdout
    return "jemalloc not linked" not in out


@pytest.mark.skipif(not _with_jemalloc(), reason="sanitizer builds allocate with redzones and "
                    "quarantine; the figure is the release build's (jemalloc)")
def test_idle_connections_cost_little(berth, backend, http_config):
    """Idle keep-alive connections, before and after one request each, cost berth under 4 KiB each."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < N + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, N + 256), hard))
    b = backend()
    lb = berth(http_config([b.addr], idle_timeout="300s"))
    # Warm up the worker (first requests, first target connection), then take the baseline.
    warm = _connect(lb.port, 8)
    for s in warm:
        s.sendall(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
    base = _settled_rss(lb)
    socks = _connect(lb.port, N)
    try:
        idle = _settled_rss(lb)
        per_idle = (idle - base) * 1024 / N
        # 50 requests in flight at a time, as a real client population would: memory freed
        # by finished exchanges is purged only after jemalloc's decay time.
        for i in range(0, N, WINDOW):
            wave = socks[i:i + WINDOW]
            for s in wave:
                s.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
            for s in wave:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(65536)
                    assert chunk, "berth closed a keep-alive connection"
                    data += chunk
                assert data.startswith(b"HTTP/1.1 200"), data[:100]
        after = _settled_rss(lb)
        per_after = (after - base) * 1024 / N
        assert per_idle < MAX_BYTES_PER_CONN, "%.0f bytes per idle connection" % per_idle
        assert per_after < MAX_BYTES_PER_CONN, \
            "%.0f bytes per connection idle after a request" % per_after
    finally:
        for s in socks + warm:
            s.close()
