# SPDX-License-Identifier: MIT
"""Throwaway target servers for the integration tests, one per loopback address.

Each Backend listens on its own 127.0.0.N address (it stands for one container task),
serves every connection in a thread, and records what it received (request line, headers
in order with their case, decoded body) so tests can assert what the target saw.

Modes:
  http     keep-alive HTTP/1.1 server; routes below; answers carry X-Backend: ADDR:PORT
  silent   accepts and reads, never answers (504)
  rude     reads the request head, then closes (FIN) without answering (502)
  reset    reads the request head, then resets the connection (RST) (502)
  garbage  reads the request head, answers with a malformed status line (502)
  ws       WebSocket echo server (RFC 6455 handshake, echoes text/binary, answers ping/close)
  switch   like http, but answers set with set_answer(path, answer) override the routes, and
           can be changed while it runs (e.g. a health check path going from 200 to 500)

http routes:
  /echo            answers the request body back
  /big?n=BYTES     answers n pattern bytes (httpwire.pattern_bytes) with Content-Length
  /chunked?n=BYTES answers n pattern bytes chunked
  /slow?ms=MS      sleeps, then answers like /
  /status/NNN      answers status NNN
  /hop             answers with hop-by-hop headers that berth must remove
  anything else    200, a small JSON body naming the backend, method and path
"""

import json
import socket
import threading
import time
import urllib.parse

from httpwire import (Reader, parse_head, header_value, header_values, connection_tokens, read_chunked,
                      pattern_bytes, ws_accept, ws_encode, ws_read_frame)

REASONS = {
    101: "Switching Protocols", 200: "OK", 201: "Created", 204: "No Content",
    301: "Moved Permanently", 302: "Found", 304: "Not Modified", 400: "Bad Request",
    404: "Not Found", 418: "I'm a teapot", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable",
}


class Request:
    """One request as the backend received it."""

    def __init__(self, method, target, version, headers, body, chunked, peer, conn_id):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # [(name, value)] in arrival order, names as sent
        self.body = body        # decoded bytes
        self.chunked = chunked  # True if it arrived with Transfer-Encoding: chunked
        self.peer = peer        # "ip:port" of the connection it came on (berth's side)
        self.conn_id = conn_id  # index of the TCP connection at this backend

    @property
    def path(self):
        return self.target.split("?", 1)[0]

    def header(self, name):
        return header_value(self.headers, name)

    def header_all(self, name):
        lname = name.lower()
        return [v for n, v in self.headers if n.lower() == lname]

    def has(self, name):
        return self.header(name) is not None

    def __repr__(self):
        return "<Request %s %s %r body=%d bytes>" % (self.method, self.target, self.headers,
                                                     len(self.body))


class Answered:
    """Mode switch: one request answered by an override, stamped just before the answer."""

    def __init__(self, t, req, answer):
        self.t = t              # time.monotonic() when the answer was chosen
        self.req = req
        self.path = req.path
        self.answer = answer    # status code or "hang" (after any delay)
        self.conn_id = req.conn_id

    def __repr__(self):
        return "<Answered %s %r at %.3f conn %d>" % (self.path, self.answer, self.t, self.conn_id)


class Backend:
    def __init__(self, host, mode="http", port=0):
        self.host = host
        self.mode = mode
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.lsock = socket.socket(family, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(128)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.addr = ("[%s]:%d" if family == socket.AF_INET6 else "%s:%d") % (host, self.port)
        self.requests = []      # [Request]
        self.raw = []           # raw bytes per connection (silent/rude/reset/garbage modes)
        self.connections = 0    # TCP connections accepted
        self.body_bytes_sent = 0
        self.errors = []        # exceptions raised in handler threads
        self.lock = threading.Lock()
        self._tls = threading.local()  # per connection thread: answering a HEAD
        self.stopping = False
        self.conns = []
        self.answers = {}       # mode switch: path (or "*") -> answer (see set_answer)
        self.answered = []      # mode switch: [Answered] for each overridden request
        self.thread = threading.Thread(target=self._accept_loop, daemon=True,
                                       name="backend-%s" % self.addr)
        self.thread.start()

    # ---- lifecycle ----
    def _accept_loop(self):
        while not self.stopping:
            try:
                s, peer = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(None)
            # Heads and bodies are written separately; without this, delayed ACKs cost ~40 ms
            # per request on a reused connection.
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                conn_id = self.connections
                self.connections += 1
                self.conns.append(s)
            handler = getattr(self, "_serve_" + self.mode)
            threading.Thread(target=self._run, args=(handler, s, peer, conn_id),
                             daemon=True).start()

    def _run(self, handler, s, peer, conn_id):
        try:
            handler(s, "%s:%d" % peer[:2], conn_id)
        except (EOFError, ConnectionError, BrokenPipeError, OSError):
            pass
        except Exception as e:  # noqa: BLE001 - reported to the test through .errors
            self.errors.append(e)
        finally:
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(2)

    # ---- request reading ----
    def _read_request(self, reader, peer, conn_id):
        """Reads one request; returns Request, or None on a clean EOF between requests."""
        try:
            head = reader.read_until(b"\r\n\r\n", limit=1 << 20)
        except EOFError:
            return None
        start, headers = parse_head(head)
        method, target, version = start.split(" ", 2)
        # Transfer-Encoding is one list over all its fields; the final coding frames the body.
        codings = [c.split(";")[0].strip().lower()
                   for v in header_values(headers, "transfer-encoding") for c in v.split(",")]
        codings = [c for c in codings if c]
        cl = header_value(headers, "content-length")
        chunked = bool(codings) and codings[-1] == "chunked"
        if chunked:
            body, _ = read_chunked(reader)
        elif cl is not None:
            body = reader.read_exact(int(cl))
        else:
            body = b""
        req = Request(method, target, version, headers, body, chunked, peer, conn_id)
        with self.lock:
            self.requests.append(req)
        return req

    def _read_head_raw(self, s, conn_id):
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            data = s.recv(65536)
            if not data:
                break
            buf += data
        with self.lock:
            self.raw.append(bytes(buf))
        return bytes(buf)

    # ---- modes ----
    def _serve_http(self, s, peer, conn_id):
        reader = Reader(s)
        while True:
            req = self._read_request(reader, peer, conn_id)
            if req is None:
                return
            close = "close" in connection_tokens(req.headers) or \
                (req.version == "HTTP/1.0" and "keep-alive" not in connection_tokens(req.headers))
            self._tls.head_only = req.method == "HEAD"
            self._answer(s, req, close)
            if close:
                return

    def _send(self, s, status, headers, body=b"", close=False, extra=()):
        hs = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status"))]
        hs.append("X-Backend: %s" % self.addr)
        hs += ["%s: %s" % hv for hv in headers]
        hs += ["%s: %s" % hv for hv in extra]
        if close:
            hs.append("Connection: close")
        s.sendall(("\r\n".join(hs) + "\r\n\r\n").encode("latin-1"))
        if body:
            self._send_body(s, body)

    def _send_body(self, s, body):
        if getattr(self._tls, "head_only", False):
            return  # HEAD: headers as for GET, no body
        mv = memoryview(body)
        for i in range(0, len(body), 65536):
            piece = mv[i:i + 65536]
            s.sendall(piece)
            with self.lock:
                self.body_bytes_sent += len(piece)

    def _answer(self, s, req, close):
        url = urllib.parse.urlsplit(req.target)
        q = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        if path == "/echo":
            self._send(s, 200, [("Content-Type", "application/octet-stream"),
                                ("Content-Length", str(len(req.body)))], req.body, close)
        elif path == "/big":
            n = int(q.get("n", "0"))
            self._send(s, 200, [("Content-Type", "application/octet-stream"),
                                ("Content-Length", str(n))], pattern_bytes(n), close)
        elif path == "/chunked":
            n = int(q.get("n", "100000"))
            data = pattern_bytes(n)
            self._send(s, 200, [("Content-Type", "application/octet-stream"),
                                ("Transfer-Encoding", "chunked")], b"", close)
            sizes = (1, 13, 1000, 8192, 70000)
            i = k = 0
            while i < n:
                piece = data[i:i + sizes[k % len(sizes)]]
                k += 1
                s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                i += len(piece)
                with self.lock:
                    self.body_bytes_sent += len(piece)
            s.sendall(b"0\r\n\r\n")
        elif path.startswith("/status/"):
            code = int(path.split("/")[2])
            body = b"" if code in (204, 304) else b"status %d\n" % code
            hdrs = [] if code in (204, 304) else [("Content-Type", "text/plain"),
                                                   ("Content-Length", str(len(body)))]
            self._send(s, code, hdrs, body, close)
        elif path == "/hop":
            body = b"hop\n"
            self._send(s, 200, [("Content-Type", "text/plain"),
                                ("Content-Length", str(len(body)))], body, close,
                       extra=[("Connection", "keep-alive, X-Secret"),
                              ("X-Secret", "backend-only"),
                              ("Keep-Alive", "timeout=7, max=77"),
                              ("Proxy-Connection", "keep-alive"),
                              ("Upgrade", "h2c"),
                              ("Trailer", "X-Checksum"),
                              ("X-End-To-End", "kept")])
        else:
            if path == "/slow":
                time.sleep(int(q.get("ms", "1000")) / 1000.0)
            body = (json.dumps({"backend": self.addr, "method": req.method,
                                "path": req.target}) + "\n").encode()
            self._send(s, 200, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(body)))], body, close)

    # ---- mode switch ----
    def set_answer(self, path, answer):
        """Mode switch: from now on requests for <path> ("*": every path without its own
        answer) get <answer>: a status code, "hang" (never answered), (delay_ms, answer), or
        a list of those used one per request, the last one repeating; None removes it."""
        if isinstance(answer, list):
            answer = list(answer)
        with self.lock:
            if answer is None:
                self.answers.pop(path, None)
            else:
                self.answers[path] = answer

    def answered_with(self, path=None, answer=None):
        """The Answered records, optionally only those for <path> and/or with <answer>."""
        with self.lock:
            recs = list(self.answered)
        return [a for a in recs if (path is None or a.path == path)
                and (answer is None or a.answer == answer)]

    def _serve_switch(self, s, peer, conn_id):
        reader = Reader(s)
        while True:
            req = self._read_request(reader, peer, conn_id)
            if req is None:
                return
            close = "close" in connection_tokens(req.headers) or \
                (req.version == "HTTP/1.0" and "keep-alive" not in connection_tokens(req.headers))
            self._tls.head_only = req.method == "HEAD"
            with self.lock:
                key = req.path if req.path in self.answers else "*"
                answer = self.answers.get(key)
                if isinstance(answer, list):  # a script: one answer per request, last repeats
                    answer = answer.pop(0) if len(answer) > 1 else answer[0]
            if isinstance(answer, tuple):  # (delay in ms, answer)
                time.sleep(answer[0] / 1000.0)
                answer = answer[1]
            if answer is not None:
                with self.lock:  # recorded just before it is sent
                    self.answered.append(Answered(time.monotonic(), req, answer))
            if answer is None:
                self._answer(s, req, close)
            elif answer == "hang":
                while s.recv(65536):
                    pass
                return
            else:
                body = b"" if answer in (204, 304) else b"status %d\n" % answer
                hdrs = [] if answer in (204, 304) else [("Content-Type", "text/plain"),
                                                         ("Content-Length", str(len(body)))]
                self._send(s, answer, hdrs, body, close)
            if close:
                return

    def _serve_silent(self, s, peer, conn_id):
        buf = bytearray()
        with self.lock:
            idx = len(self.raw)
            self.raw.append(b"")
        while True:
            data = s.recv(65536)
            if not data:
                return
            buf += data
            with self.lock:
                self.raw[idx] = bytes(buf)

    def _serve_rude(self, s, peer, conn_id):
        self._read_head_raw(s, conn_id)

    def _serve_reset(self, s, peer, conn_id):
        self._read_head_raw(s, conn_id)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    def _serve_garbage(self, s, peer, conn_id):
        self._read_head_raw(s, conn_id)
        s.sendall(b"HTTP/1.1 twohundred OK\r\nContent-Length: 2\r\n\r\nhi")
        time.sleep(0.2)

    def _serve_ws(self, s, peer, conn_id):
        reader = Reader(s)
        req = self._read_request(reader, peer, conn_id)
        if req is None:
            return
        key = req.header("sec-websocket-key")
        if (req.header("upgrade") or "").lower() != "websocket" or not key \
                or "upgrade" not in connection_tokens(req.headers):
            body = b"websocket upgrade expected\n"
            self._send(s, 400, [("Content-Length", str(len(body)))], body, True)
            return
        s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                   "X-Backend: %s\r\n\r\n" % (ws_accept(key), self.addr)).encode())
        while True:
            fin, opcode, payload = ws_read_frame(reader)
            if opcode == 0x8:  # close: echo it and stop
                s.sendall(ws_encode(0x8, payload, mask=False))
                return
            if opcode == 0x9:  # ping
                s.sendall(ws_encode(0xA, payload, mask=False))
                continue
            s.sendall(ws_encode(opcode, payload, mask=False))


def refused_addr(host="127.0.0.9"):
    """An "ip:port" on which nothing listens (connections are refused)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return "%s:%d" % (host, port)
