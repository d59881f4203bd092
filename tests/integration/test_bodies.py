# SPDX-License-Identifier: MIT
"""Body streaming in ALB mode: large, chunked and slowly read bodies arrive intact."""

import os
import time

from httpwire import Client, encode_chunked, fetch, pattern_bytes

MiB = 1 << 20


def test_large_request_body(berth, backend, http_config):
    """A 1 MiB Content-Length request body reaches the target intact and echoes back intact."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    body = os.urandom(MiB)
    r = fetch(lb.port, "POST", "/echo", headers=[("Content-Type", "application/octet-stream")],
              body=body, timeout=10)
    assert r.status == 200, r
    assert len(b1.requests) == 1
    assert b1.requests[0].header("Content-Length") == str(MiB) or b1.requests[0].chunked
    assert b1.requests[0].body == body
    assert r.body == body


def test_large_response_body(berth, backend, http_config):
    """A 1 MiB response body reaches the client intact."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    r = fetch(lb.port, "GET", "/big?n=%d" % MiB, timeout=10)
    assert r.status == 200, r
    assert len(r.body) == MiB
    assert r.body == pattern_bytes(MiB)


def test_chunked_request_body(berth, backend, http_config):
    """A chunked request body of odd-sized chunks reaches the target with the same decoded bytes."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    body = os.urandom(300000)
    with Client(lb.port, timeout=10) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + encode_chunked(body))
        r = c.response()
        assert r.status == 200, r
        assert r.body == body
        # The connection stays usable: berth found the end of the chunked body.
        r2 = c.request("GET", "/after-chunked")
        assert r2.status == 200, r2
    assert b1.requests[0].body == body
    assert [q.target for q in b1.requests] == ["/echo", "/after-chunked"]


def test_chunked_response_body(berth, backend, http_config):
    """A chunked response reaches the client with the same decoded bytes, and keep-alive survives it."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    n = 500000
    with Client(lb.port, timeout=10) as c:
        r = c.request("GET", "/chunked?n=%d" % n)
        assert r.status == 200, r
        assert r.body == pattern_bytes(n)
        assert c.request("GET", "/after").status == 200


def test_slow_reader_backpressure(berth, backend, http_config):
    """A 64 MiB answer to a client that stops reading does not grow berth's RSS by more than 16 MiB, and then arrives intact."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    n = 64 * MiB
    # Warm up allocator caches and buffers so the baseline is fair.
    assert fetch(lb.port, "GET", "/big?n=%d" % (2 * MiB), timeout=10).status == 200
    base = lb.rss_kib()
    with Client(lb.port, timeout=30) as c:
        c.send(b"GET /big?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
        peak = base
        t_end = time.monotonic() + 3.0
        while time.monotonic() < t_end:
            peak = max(peak, lb.rss_kib())
            time.sleep(0.1)
        growth_mib = (peak - base) / 1024.0
        assert growth_mib <= 16, "berth RSS grew by %.1f MiB while the client read nothing " \
            "(base %d KiB, peak %d KiB)" % (growth_mib, base, peak)
        r = c.response()
    assert r.status == 200, r
    assert len(r.body) == n
    assert r.body == pattern_bytes(n)
