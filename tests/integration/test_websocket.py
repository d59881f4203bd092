# SPDX-License-Identifier: MIT
"""Upgrade requests: a WebSocket handshake through berth becomes a two-way tunnel after 101."""

import base64
import os

from httpwire import Client, ws_accept, ws_encode, ws_read_frame


def test_websocket_echo(berth, backend, http_config):
    """A WebSocket handshake through berth yields 101 and text and 100 KB binary frames round-trip."""
    ws = backend("ws")
    lb = berth(http_config([ws.addr]))
    key = base64.b64encode(os.urandom(16)).decode()
    with Client(lb.port, timeout=10) as c:
        c.send(("GET /chat HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n" % (lb.port, key)).encode())
        r = c.response()
        assert r.status == 101, r
        assert (r.header("Upgrade") or "").lower() == "websocket", r.headers
        assert r.header("Sec-WebSocket-Accept") == ws_accept(key), r.headers
        assert r.header("X-Backend") == ws.addr
        for text in ("hello", "second frame", "x" * 300, "émoji ✓"):
            c.send(ws_encode(0x1, text.encode(), mask=True))
            fin, op, payload = ws_read_frame(c.reader)
            assert (fin, op, payload.decode()) == (True, 0x1, text)
        blob = os.urandom(100 * 1024)
        c.send(ws_encode(0x2, blob, mask=True))
        fin, op, payload = ws_read_frame(c.reader)
        assert (fin, op) == (True, 0x2)
        assert payload == blob
        c.send(ws_encode(0x8, b"\x03\xe8bye", mask=True))
        fin, op, payload = ws_read_frame(c.reader)
        assert (op, payload) == (0x8, b"\x03\xe8bye")
        assert c.wait_closed(3.0) is not None, "tunnel not closed after the target closed"
    seen = ws.requests[0]
    assert (seen.header("Upgrade") or "").lower() == "websocket", seen.headers
    assert "upgrade" in (seen.header("Connection") or "").lower(), seen.headers
    assert seen.header("Sec-WebSocket-Key") == key
