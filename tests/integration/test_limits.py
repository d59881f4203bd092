# SPDX-License-Identifier: MIT
"""ALB's request limits: one header line, X-Forwarded-For addresses (463) and
max_connections, each answered as ELB does while the target sees nothing."""

import socket
import time

from httpwire import Client, fetch


def test_header_line_over_limit_is_431(berth, backend, http_config):
    """A single header line over max_header_line gets 431; one just under passes."""
    b = backend()
    lb = berth(http_config([b.addr], max_header_line="1k"))
    ok = fetch(lb.port, "GET", "/ok", headers=[("X-Long", "v" * 900)])
    assert ok.status == 200, ok
    r = fetch(lb.port, "GET", "/long", headers=[("X-Long", "v" * 1100)])
    assert r.status == 431, r
    assert [q.target for q in b.requests] == ["/ok"]


def test_too_many_forwarded_addresses_is_463(berth, backend, http_config):
    """More than 30 addresses in X-Forwarded-For get 463, as ALB answers; 30 pass."""
    b = backend()
    lb = berth(http_config([b.addr]))
    thirty = ", ".join("10.0.0.%d" % i for i in range(30))
    assert fetch(lb.port, "GET", "/ok", headers=[("X-Forwarded-For", thirty)]).status == 200
    r = fetch(lb.port, "GET", "/many", headers=[("X-Forwarded-For", thirty + ", 10.0.1.1")])
    assert r.status == 463, r
    assert [q.target for q in b.requests] == ["/ok"]


def test_max_connections_rejects_and_counts(berth, backend, http_config):
    """Past a listener's max_connections a new connection is closed at once and counted, while open ones keep working."""
    b = backend()
    lb = berth(http_config([b.addr], max_connections=2))
    with Client(lb.port) as c1, Client(lb.port) as c2:
        assert c1.request("GET", "/a").status == 200
        assert c2.request("GET", "/b").status == 200
        s = socket.create_connection(("127.0.0.1", lb.port), timeout=3)
        s.sendall(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        s.close()
        assert data == b"", data
        assert c1.request("GET", "/d").status == 200
    time.sleep(0.2)
    assert fetch(lb.port, "GET", "/e").status == 200  # slots freed
    _, text = lb.ctl("GET", "/metrics")
    assert "berth_rejected_connections_total 1" in text, text
