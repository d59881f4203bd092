# SPDX-License-Identifier: MIT
"""Client idle timeout: berth closes keep-alive connections that stay idle for idle_timeout."""

import time

from httpwire import Client


def test_idle_client_connection_closed(berth, backend, http_config):
    """With idle_timeout 1s an idle keep-alive client connection is closed by berth after about 1s."""
    b1 = backend()
    lb = berth(http_config([b1.addr], idle_timeout="1s"))
    with Client(lb.port, timeout=10) as c:
        assert c.request("GET", "/one").status == 200
        t0 = time.monotonic()
        closed_after = c.wait_closed(5.0)
        assert closed_after is not None, "idle connection still open after 5s"
        assert 0.7 <= closed_after <= 3.0, "closed after %.2fs, idle_timeout is 1s" % closed_after
        assert time.monotonic() - t0 < 5


def test_active_connection_not_closed(berth, backend, http_config):
    """A connection that keeps sending requests every 0.4s outlives idle_timeout (1s)."""
    b1 = backend()
    lb = berth(http_config([b1.addr], idle_timeout="1s"))
    with Client(lb.port, timeout=10) as c:
        for i in range(6):
            assert c.request("GET", "/tick/%d" % i).status == 200
            time.sleep(0.4)
