# SPDX-License-Identifier: MIT
"""Byte-exact HTTP/1.1 and WebSocket wire helpers shared by the test clients and backends.

Everything works on raw sockets so tests control (and see) every byte: a buffered Reader,
head parsing, Content-Length / chunked body reading, a one-connection client, and RFC 6455
frame encoding. Standard library only.
"""

import base64
import hashlib
import os
import socket
import struct
import time

CRLF = b"\r\n"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Reader:
    """Buffered reader over a socket; counts the bytes handed out in `consumed`."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.consumed = 0
        self.eof = False

    def _fill(self, size=262144):
        if self.eof:
            raise EOFError("connection closed by peer")
        data = self.sock.recv(size)
        if not data:
            self.eof = True
            raise EOFError("connection closed by peer")
        self.buf += data

    def _take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.consumed += n
        return out

    def read_until(self, delim, limit=1 << 24):
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                return self._take(i + len(delim))
            if len(self.buf) > limit:
                raise ValueError("delimiter not found within %d bytes" % limit)
            start = max(0, len(self.buf) - len(delim) + 1)
            self._fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill(max(262144, n - len(self.buf)))
        return self._take(n)

    def read_some(self):
        if not self.buf:
            self._fill()
        return self._take(len(self.buf))

    def read_to_eof(self):
        while True:
            try:
                self._fill()
            except EOFError:
                return self._take(len(self.buf))


def parse_head(head):
    """Splits a message head into (start line, [(name, value), ...]); names keep their case."""
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    start = lines[0]
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name, value.strip(" \t")))
    return start, headers


def header_values(headers, name):
    lname = name.lower()
    return [v for (n, v) in headers if n.lower() == lname]


def header_value(headers, name):
    vals = header_values(headers, name)
    return vals[0] if vals else None


def connection_tokens(headers):
    toks = []
    for v in header_values(headers, "connection"):
        toks += [t.strip().lower() for t in v.split(",") if t.strip()]
    return toks


def read_chunked(reader):
    """Decodes a chunked body; returns (body bytes, trailer headers)."""
    body = bytearray()
    while True:
        line = reader.read_until(CRLF, limit=4096)
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            break
        body += reader.read_exact(size)
        if reader.read_exact(2) != CRLF:
            raise ValueError("chunk not followed by CRLF")
    trailers = []
    while True:
        line = reader.read_until(CRLF, limit=65536)
        if line == CRLF:
            break
        name, _, value = line.decode("latin-1").partition(":")
        trailers.append((name, value.strip()))
    return bytes(body), trailers


def encode_chunked(data, sizes=(1, 7, 100, 4096, 65536)):
    out = bytearray()
    i = k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        k += 1
        piece = data[i:i + n]
        out += b"%x\r\n" % len(piece) + piece + CRLF
        i += n
    out += b"0\r\n\r\n"
    return bytes(out)


_PATTERN = None


def pattern_bytes(n):
    """n deterministic bytes; the period (65521, prime) catches shifted or dropped ranges."""
    global _PATTERN
    if _PATTERN is None:
        seed = b""
        i = 0
        while len(seed) < 65521:
            seed += hashlib.sha256(b"berth%d" % i).digest()
            i += 1
        _PATTERN = seed[:65521]
    reps = n // len(_PATTERN) + 1
    return (_PATTERN * reps)[:n]


class Response:
    def __init__(self, version, status, reason, headers, body, raw_len, chunked):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.raw_len = raw_len  # bytes of the whole response as received (head + framed body)
        self.chunked = chunked

    def header(self, name):
        return header_value(self.headers, name)

    def header_all(self, name):
        return header_values(self.headers, name)

    def __repr__(self):
        return "<Response %s %s headers=%r body=%r>" % (
            self.status, self.reason, self.headers, self.body[:200])


def read_response(reader, method="GET"):
    """Reads one response (skipping nothing: a 1xx is returned as is)."""
    start_at = reader.consumed
    head = reader.read_until(b"\r\n\r\n", limit=1 << 20)
    start, headers = parse_head(head)
    parts = start.split(" ", 2)
    version, status = parts[0], int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    chunked = False
    te = header_value(headers, "transfer-encoding")
    cl = header_value(headers, "content-length")
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        body = b""
    elif te and "chunked" in te.lower():
        chunked = True
        body, _ = read_chunked(reader)
    elif cl is not None:
        body = reader.read_exact(int(cl))
    else:
        body = reader.read_to_eof()
    return Response(version, status, reason, headers, body, reader.consumed - start_at, chunked)


def build_request(method, path, host, headers=(), body=None, add_length=True):
    lines = ["%s %s HTTP/1.1" % (method, path)]
    names = {n.lower() for n, _ in headers}
    if host is not None and "host" not in names:
        lines.append("Host: %s" % host)
    for n, v in headers:
        lines.append("%s: %s" % (n, v))
    if body is not None and add_length and "content-length" not in names \
            and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class Client:
    """One client TCP connection to berth, speaking raw HTTP/1.1."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0, rcvbuf=None):
        self.port = port
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.reader = Reader(self.sock)
        self.sent = 0

    @property
    def local_addr(self):
        h, p = self.sock.getsockname()[:2]
        return "%s:%d" % (h, p)

    def send(self, data):
        self.sock.sendall(data)
        self.sent += len(data)

    def request(self, method, path, headers=(), body=None, host=None):
        if host is None:
            host = "%s:%d" % (self.host, self.port)
        self.send(build_request(method, path, host, headers, body))
        return read_response(self.reader, method)

    def response(self, method="GET"):
        return read_response(self.reader, method)

    def wait_closed(self, timeout):
        """Returns seconds until the peer closed (EOF or reset), or None if still open."""
        t0 = time.monotonic()
        old = self.sock.gettimeout()
        try:
            while True:
                left = timeout - (time.monotonic() - t0)
                if left <= 0:
                    return None
                self.sock.settimeout(left)
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    return None
                except (ConnectionResetError, BrokenPipeError):
                    return time.monotonic() - t0
                if not data:
                    return time.monotonic() - t0
                self.reader.buf += data  # unexpected bytes: keep them for the caller
        finally:
            self.sock.settimeout(old)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fetch(port, method="GET", path="/", headers=(), body=None, host=None, timeout=10.0):
    """One request on a fresh connection; returns the Response."""
    with Client(port, timeout=timeout) as c:
        return c.request(method, path, headers, body, host)


# ---- WebSocket (RFC 6455) ----

def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode()


def ws_encode(opcode, payload, mask):
    head = bytearray([0x80 | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        head += key
        payload = ws_mask(payload, key)
    return bytes(head) + payload


def ws_mask(payload, key):
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") \
        if n else b""


def ws_read_frame(reader):
    """Returns (fin, opcode, payload) with the payload unmasked."""
    b0, b1 = reader.read_exact(2)
    fin, opcode = bool(b0 & 0x80), b0 & 0x0F
    masked, n = bool(b1 & 0x80), b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", reader.read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", reader.read_exact(8))[0]
    key = reader.read_exact(4) if masked else None
    payload = reader.read_exact(n)
    if masked:
        payload = ws_mask(payload, key)
    return fin, opcode, payload
