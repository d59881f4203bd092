# SPDX-License-Identifier: MIT
"""Slow clients (slowloris): a request head that trickles in gets 408 at header_timeout, and a
request body that falls behind min_body_rate gets 408 once body_timeout + received/rate has
passed; both are counted, the target sees nothing of the head (and a truncated body it is
not left waiting on), and other clients are served meanwhile."""

import re
import select
import selectors
import socket
import threading
import time

from httpwire import Client, Reader, fetch, pattern_bytes, read_response
from conftest import metric



class NormalTraffic(threading.Thread):
    """Fresh-connection GETs one after another while a test runs; records each latency."""

    def __init__(self, port, count, gap):
        super().__init__(daemon=True)
        self.port, self.count, self.gap = port, count, gap
        self.latencies, self.statuses, self.errors = [], [], []

    def run(self):
        for i in range(self.count):
            t0 = time.monotonic()
            try:
                self.statuses.append(fetch(self.port, "GET", "/normal/%d" % i, timeout=5).status)
            except (OSError, EOFError) as e:
                self.errors.append(e)
            self.latencies.append(time.monotonic() - t0)
            time.sleep(self.gap)

    def check(self, count):
        self.join(10)
        assert not self.errors, self.errors
        assert self.statuses == [200] * count, self.statuses
        assert max(self.latencies) < 1.0, "slowest normal request %.2fs" % max(self.latencies)


class BytesReader(Reader):
    """A Reader over bytes already received."""

    def __init__(self, data):
        super().__init__(None)
        self.buf = bytearray(data)

    def _fill(self, size=262144):
        raise EOFError("connection closed by peer")


def trickle_body(c, body, chunk, interval, limit):
    """Sends <body> in <chunk>-byte pieces every <interval> s on Client <c> until it is all
    sent, berth answers, or <limit> s pass. Returns seconds until berth's answer was readable,
    or None if it was not within <limit>."""
    t0 = time.monotonic()
    sent = 0
    while time.monotonic() - t0 < limit:
        if sent < len(body):
            c.send(body[sent:sent + chunk])
            sent += chunk
            wait = interval
        else:
            wait = limit - (time.monotonic() - t0)
        readable, _, _ = select.select([c.sock], [], [], max(0.0, wait))
        if readable:
            return time.monotonic() - t0
    return None


def closed_target_connections(b):
    """Connections to Backend <b> that ended (the target saw its client, berth, go away)."""
    with b.lock:
        return sum(1 for s in b.conns if s.fileno() == -1)


def test_slow_request_heads_get_408(berth, backend, http_config):
    """100 clients trickling a request head at 1 byte/s all get 408 and a close at header_timeout (3s), counted in berth_header_timeouts_total, while 50 normal requests are each answered in under 1s."""
    b = backend()
    lb = berth(http_config([b.addr], header_timeout="3s"))
    head = b"GET /slowloris HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 64 + b"\r\n\r\n"
    sel = selectors.DefaultSelector()
    clients = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", lb.port), timeout=5)
        s.setblocking(False)
        st = {"sock": s, "sent": 0, "first": None, "data": b"", "closed": None}
        clients.append(st)
        sel.register(s, selectors.EVENT_READ, st)

    normal = NormalTraffic(lb.port, 50, 0.04)
    t_start = time.monotonic()
    next_tick = t_start
    while time.monotonic() - t_start < 9 and any(st["closed"] is None for st in clients):
        now = time.monotonic()
        if now >= next_tick:
            for st in clients:
                # Only to connections with nothing to read: berth's 408 comes first.
                if st["closed"] is None and not st["data"]:
                    try:
                        st["sock"].send(head[st["sent"]:st["sent"] + 1])
                    except OSError:
                        continue  # closed meanwhile: the read below tells
                    st["sent"] += 1
                    if st["first"] is None:
                        st["first"] = time.monotonic()
            next_tick += 1.0
            if normal.ident is None:
                normal.start()  # once every slow client has its first byte in
        for key, _ in sel.select(max(0.0, min(next_tick - time.monotonic(), 0.2))):
            st = key.data
            try:
                data = st["sock"].recv(4096)
            except ConnectionResetError:
                data = b""
            if data:
                st["data"] += data
            else:
                st["closed"] = time.monotonic()
                sel.unregister(st["sock"])
                st["sock"].close()
    sel.close()
    normal.check(50)

    waits = []
    for st in clients:
        assert st["closed"] is not None, "a slow client still open after 9s"
        r = read_response(BytesReader(st["data"]))
        assert r.status == 408, r
        assert r.header("Connection") == "close", r
        waits.append(st["closed"] - st["first"])
    assert 2.5 <= min(waits) and max(waits) <= 5.0, (min(waits), max(waits))
    assert all(st["sent"] < len(head) for st in clients)  # no head ever completed
    assert [q.path for q in b.requests] == ["/normal/%d" % i for i in range(50)]
    assert metric(lb, "berth_header_timeouts_total", listener="web") == 100
    assert metric(lb, "berth_body_timeouts_total", listener="web") == 0


def test_upload_below_min_body_rate_gets_408(berth, backend, http_config):
    """A 100000-byte upload trickling at 100 B/s, under min_body_rate 1000 with body_timeout 2s, gets 408 and a close after about 2.2s; the target's connection is closed, not reused, and other clients are served meanwhile."""
    b = backend()
    lb = berth(http_config([b.addr], min_body_rate=1000, body_timeout="2s"))
    assert fetch(lb.port, "GET", "/before").status == 200  # a pooled target connection
    body = pattern_bytes(100000)
    normal = NormalTraffic(lb.port, 10, 0.2)
    with Client(lb.port, timeout=10) as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        normal.start()
        answered = trickle_body(c, body, 10, 0.1, 8.0)
        assert answered is not None, "no answer within 8s"
        r = c.response("POST")
        assert r.status == 408, r
        assert r.header("Connection") == "close", r
        assert c.wait_closed(2.0) is not None, "client connection left open"
    # deadline: 2s + received/1000 s with 100 B/s coming in, so about 2.2s
    assert 1.9 <= answered <= 4.0, answered
    normal.check(10)
    deadline = time.monotonic() + 3
    while closed_target_connections(b) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closed_target_connections(b) == 1  # the one that carried the truncated body
    assert "/upload" not in [q.path for q in b.requests]
    # The next requests find no half-fed connection in the pool.
    for i in range(3):
        assert fetch(lb.port, "GET", "/after/%d" % i, timeout=3).status == 200
    assert metric(lb, "berth_body_timeouts_total", listener="web") == 1
    assert metric(lb, "berth_header_timeouts_total", listener="web") == 0
    assert "request body from" in lb.stderr and "too slow" in lb.stderr


def test_slow_upload_above_min_body_rate_completes(berth, backend, http_config):
    """An upload at 4000 B/s for 3s, above min_body_rate 1000 and longer than body_timeout 2s, completes with 200 and reaches the target intact."""
    b = backend()
    lb = berth(http_config([b.addr], min_body_rate=1000, body_timeout="2s"))
    body = pattern_bytes(12000)
    with Client(lb.port, timeout=10) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 12000\r\n\r\n")
        t0 = time.monotonic()
        answered = trickle_body(c, body, 400, 0.1, 8.0)
        assert answered is not None and answered >= 2.5, answered  # it did take ~3s
        r = c.response("POST")
        assert r.status == 200, r
        assert r.body == body
        assert c.request("GET", "/after").status == 200  # keep-alive survives
        assert time.monotonic() - t0 < 6
    assert [q.path for q in b.requests] == ["/echo", "/after"]
    assert b.requests[0].body == body
    assert metric(lb, "berth_body_timeouts_total", listener="web") == 0


def test_min_body_rate_zero_turns_the_check_off(berth, backend, http_config):
    """With min_body_rate 0 a body trickling at 100 B/s for 3s completes although body_timeout is 1s."""
    b = backend()
    lb = berth(http_config([b.addr], min_body_rate=0, body_timeout="1s"))
    body = pattern_bytes(300)
    with Client(lb.port, timeout=10) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\n")
        answered = trickle_body(c, body, 10, 0.1, 8.0)
        assert answered is not None and answered >= 2.5, answered
        r = c.response("POST")
        assert r.status == 200, r
        assert r.body == body
    assert b.requests[0].body == body
    assert metric(lb, "berth_body_timeouts_total", listener="web") == 0


class SlowReader(threading.Thread):
    """A target that reads one request body in 256 KiB steps 20 ms apart (at most ~12 MB/s),
    then answers 200 and records how many body bytes it got."""

    def __init__(self):
        super().__init__(daemon=True)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.addr = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.received = None

    def run(self):
        s, _ = self.lsock.accept()
        self.lsock.close()
        with s:
            r = Reader(s)
            head = r.read_until(b"\r\n\r\n")
            n = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            got = 0
            while got < n:
                got += len(r.read_exact(min(262144, n - got)))
                time.sleep(0.02)
            self.received = got
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            time.sleep(0.5)


def test_slow_target_does_not_time_out_its_client(berth, http_config):
    """An upload slowed down only by a slow target (berth holds the client back) is not timed out, however high min_body_rate is."""
    t = SlowReader()
    t.start()
    lb = berth(http_config([t.addr], min_body_rate=1000000000, body_timeout="500ms"))
    n = 16 << 20  # well over what the socket buffers on the way can hold
    with Client(lb.port, timeout=15) as c:
        t0 = time.monotonic()
        c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % n
               + pattern_bytes(n))
        r = c.response("POST")
        took = time.monotonic() - t0
    assert r.status == 200, r
    assert t.received == n
    assert took >= 1.0, took  # the target did hold the upload back past body_timeout
    assert metric(lb, "berth_body_timeouts_total", listener="web") == 0
