# SPDX-License-Identifier: MIT
"""Answers berth gives itself: 400, 405, 408, 414, 431, 501, 502, 503, 504."""

import select
import time

import pytest

from backends import refused_addr
from httpwire import Client, fetch


def assert_short_body(r):
    assert 0 < len(r.body) <= 2048, "expected a short explanatory body, got %r" % r.body[:300]


MALFORMED = {
    "duplicate-content-length":
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
    "space-before-colon-in-framing-field":  # Ambiguous: a mended "X-Foo : bar" is forwarded
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
    "non-numeric-content-length":
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_400_malformed_request(berth, backend, http_config, case):
    """A malformed or ambiguous request gets 400, the connection is closed, and the target never sees it."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    with Client(lb.port, timeout=5) as c:
        c.send(MALFORMED[case])
        r = c.response()
        assert r.status == 400, r
        assert_short_body(r)
        assert c.wait_closed(2.0) is not None, "connection left open after a 400"
    time.sleep(0.2)
    assert b1.requests == [], b1.requests


def test_405_trace(berth, backend, http_config):
    """TRACE gets 405 from berth and never reaches the target."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    r = fetch(lb.port, "TRACE", "/")
    assert r.status == 405, r
    assert_short_body(r)
    time.sleep(0.2)
    assert b1.requests == []


@pytest.mark.parametrize("partial", [
    b"GET /slo",                                        # half a request line
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Partial: 1\r\n",   # head without its final CRLF
])
def test_408_header_timeout(berth, backend, http_config, partial):
    """A request head not complete within header_timeout (1s) gets 408 after about 1s, and the target never sees it."""
    b1 = backend()
    lb = berth(http_config([b1.addr], header_timeout="1s", idle_timeout="10s"))
    with Client(lb.port, timeout=10) as c:
        t0 = time.monotonic()
        c.send(partial)
        r = c.response()
        elapsed = time.monotonic() - t0
        assert r.status == 408, r
        assert 0.8 <= elapsed <= 3.0, "408 after %.2fs, header_timeout is 1s" % elapsed
        assert c.wait_closed(2.0) is not None
    assert b1.requests == []


def test_408_slowloris(berth, backend, http_config):
    """A head trickled in one header every 0.3s still gets 408 once header_timeout (1s) passes in total."""
    b1 = backend()
    lb = berth(http_config([b1.addr], header_timeout="1s", idle_timeout="10s"))
    with Client(lb.port, timeout=10) as c:
        t0 = time.monotonic()
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
        for i in range(12):
            readable, _, _ = select.select([c.sock], [], [], 0.3)
            if readable:
                break  # berth answered (or closed)
            try:
                c.send(b"X-Drip-%d: %d\r\n" % (i, i))
            except (BrokenPipeError, ConnectionResetError):
                break
        r = c.response()
        elapsed = time.monotonic() - t0
        assert r.status == 408, r
        assert elapsed <= 3.0, "408 after %.2fs, header_timeout is 1s" % elapsed
    assert b1.requests == []


def test_414_request_line_too_long(berth, backend, http_config):
    """A request line over max_request_line (1k) gets 414 while one just under it is proxied."""
    b1 = backend()
    lb = berth(http_config([b1.addr], max_request_line="1k"))
    ok = fetch(lb.port, "GET", "/" + "a" * 900)
    assert ok.status == 200, ok
    r = fetch(lb.port, "GET", "/" + "a" * 2000)
    assert r.status == 414, r
    assert_short_body(r)
    assert [q.target for q in b1.requests] == ["/" + "a" * 900]


def test_431_headers_too_large(berth, backend, http_config):
    """A header block over max_header_size (4k) gets 431 while 3k of headers is proxied."""
    b1 = backend()
    lb = berth(http_config([b1.addr], max_header_size="4k"))
    ok = fetch(lb.port, "GET", "/small", headers=[("X-Fill-%d" % i, "v" * 480) for i in range(6)])
    assert ok.status == 200, ok
    r = fetch(lb.port, "GET", "/large", headers=[("X-Fill-%d" % i, "v" * 1000) for i in range(8)])
    assert r.status == 431, r
    assert_short_body(r)
    assert [q.target for q in b1.requests] == ["/small"]


@pytest.mark.parametrize("te", ["gzip", "gzip, deflate"])
def test_501_unsupported_transfer_encoding(berth, backend, http_config, te):
    """A Transfer-Encoding berth does not implement (gzip) gets 501 and never reaches the target."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    with Client(lb.port, timeout=5) as c:
        c.send(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: %s\r\n\r\n"
               b"5\r\nhello\r\n0\r\n\r\n" % te.encode())
        r = c.response()
        assert r.status == 501, r
        assert_short_body(r)
    time.sleep(0.2)
    assert b1.requests == []


@pytest.mark.parametrize("mode", ["rude", "reset", "garbage"])
def test_502_bad_target(berth, backend, http_config, mode):
    """A target that closes, resets, or answers a malformed status line after getting the request gives 502."""
    b1 = backend(mode)
    lb = berth(http_config([b1.addr]))
    r = fetch(lb.port, "GET", "/bad")
    assert r.status == 502, r
    assert_short_body(r)
    assert b1.raw and b1.raw[0].startswith(b"GET /bad HTTP/1.1\r\n"), b1.raw
    # berth keeps serving afterwards.
    assert fetch(lb.port, "GET", "/again").status == 502


def test_502_all_targets_refuse(berth, http_config):
    """When every target refuses connections the client gets 502 quickly."""
    lb = berth(http_config([refused_addr("127.0.0.9"), refused_addr("127.0.0.10")]))
    t0 = time.monotonic()
    r = fetch(lb.port, "GET", "/")
    assert r.status == 502, r
    assert_short_body(r)
    assert time.monotonic() - t0 < 3.0


def test_503_no_targets(berth, http_config):
    """A group with no registered targets gives 503."""
    lb = berth(http_config([]))
    r = fetch(lb.port, "GET", "/")
    assert r.status == 503, r
    assert_short_body(r)


def test_504_target_silent(berth, backend, http_config):
    """A target that never answers gives 504 after idle_timeout (1s), not after 60s."""
    b1 = backend("silent")
    lb = berth(http_config([b1.addr], idle_timeout="1s"))
    t0 = time.monotonic()
    r = fetch(lb.port, "GET", "/wait", timeout=15)
    elapsed = time.monotonic() - t0
    assert r.status == 504, r
    assert_short_body(r)
    assert 0.8 <= elapsed <= 3.0, "504 after %.2fs, idle_timeout is 1s" % elapsed
    assert b1.raw and b1.raw[0].startswith(b"GET /wait HTTP/1.1\r\n")
