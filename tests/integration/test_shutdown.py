# SPDX-License-Identifier: MIT
"""Stopping: SIGTERM and SIGINT end berth cleanly with exit status 0."""

import signal
import threading
import time

from httpwire import Client, fetch


def test_sigterm_exits_zero(berth, backend, http_config):
    """SIGTERM makes an idle berth exit 0 within 5 seconds."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    assert fetch(lb.port, "GET", "/").status == 200
    t0 = time.monotonic()
    rc = lb.stop(signal.SIGTERM)
    assert rc == 0, "exit status %s\n%s" % (rc, lb.stderr[-4000:])
    assert time.monotonic() - t0 < 5


def test_sigint_exits_zero(berth, http_config):
    """SIGINT makes berth exit 0 as SIGTERM does."""
    lb = berth(http_config([]))
    rc = lb.stop(signal.SIGINT)
    assert rc == 0, "exit status %s\n%s" % (rc, lb.stderr[-4000:])


def test_sigterm_with_idle_keepalive_client(berth, backend, http_config):
    """An idle keep-alive client connection does not keep berth from exiting 0 promptly on SIGTERM."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    with Client(lb.port) as c:
        assert c.request("GET", "/").status == 200
        t0 = time.monotonic()
        rc = lb.stop(signal.SIGTERM)
        assert rc == 0, "exit status %s\n%s" % (rc, lb.stderr[-4000:])
        assert time.monotonic() - t0 < 5
        assert c.wait_closed(1.0) is not None


def test_sigterm_lets_inflight_request_finish(berth, backend, http_config):
    """A request in flight when SIGTERM arrives still gets its 200, then berth exits 0."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    result = {}

    def slow():
        try:
            result["r"] = fetch(lb.port, "GET", "/slow?ms=1000", timeout=10)
        except Exception as e:  # noqa: BLE001 - reported below
            result["e"] = e

    th = threading.Thread(target=slow)
    th.start()
    deadline = time.monotonic() + 2
    while not b1.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert b1.requests, "the slow request never reached the target"
    rc = lb.stop(signal.SIGTERM)
    th.join(10)
    assert "e" not in result, result
    assert result["r"].status == 200, result["r"]
    assert rc == 0, "exit status %s\n%s" % (rc, lb.stderr[-4000:])
