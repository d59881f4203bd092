# SPDX-License-Identifier: MIT
"""TCP and UDP target servers for the NLB-mode (L4) integration tests.

TcpEcho listens on host:port (IPv4 or IPv6), optionally greets each connection with a banner
naming itself ("127.0.0.2:P\\n" or "[::1]:P\\n"), echoes every byte back, and on the
client's EOF optionally answers "EOF after N bytes\\n" before closing. It records, per
accepted connection, the peer, the first bytes received and whether the connection ended,
and can stop listening while keeping its accepted connections open (so a TCP health check
gets "connection refused").

UdpEcho answers each datagram to its sender, by default prefixed with its own address and a
newline, and records every datagram it received with the sender's address.

Helpers: tcp_client() binds a client socket to a chosen source address (SO_REUSEADDR), and
addr_text()/split_addr() format and parse "ip:port" / "[ip6]:port".
"""

import socket
import struct
import threading
import time

import pytest

from conftest import metric as conftest_metric


def addr_text(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def split_addr(text):
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def ipv6_available():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return True
    except OSError:
        return False


def free_port(host="127.0.0.1"):
    """A port free for both TCP and UDP on <host>."""
    for _ in range(50):
        s = socket.socket(family_of(host), socket.SOCK_STREAM)
        s.bind((host, 0))
        port = s.getsockname()[1]
        s.close()
        u = socket.socket(family_of(host), socket.SOCK_DGRAM)
        try:
            u.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            u.close()
    raise RuntimeError("no free port on %s" % host)


def tcp_client(dest, src=None, timeout=5.0, abort_on_close=False):
    """A connected TCP socket to <dest> (host, port), bound to <src> (host, port) if given."""
    s = socket.socket(family_of(dest[0]), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if abort_on_close:
        # close() sends RST: the 4-tuple leaves no TIME_WAIT and can be used again at once.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.settimeout(timeout)
    try:
        if src is not None:
            s.bind(src)
        s.connect(dest)
    except OSError:
        s.close()
        raise
    return s


def recv_line(s, limit=4096):
    """Bytes up to and including the first newline (or up to EOF)."""
    buf = b""
    while not buf.endswith(b"\n") and len(buf) < limit:
        b = s.recv(1)
        if not b:
            break
        buf += b
    return buf


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            break
        buf += b
    return bytes(buf)


def recv_all(s):
    """Everything until EOF."""
    chunks = []
    while True:
        b = s.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


class TcpConn:
    """One connection accepted by a TcpEcho."""

    def __init__(self, sock, peer):
        self.sock = sock
        self.peer = peer          # (host, port) of berth's side
        self.data = bytearray()   # the first `record` bytes received
        self.total = 0            # bytes received
        self.eof = False          # the client side sent FIN
        self.error = None         # e.g. ConnectionResetError
        self.ended = threading.Event()


class TcpEcho:
    """A TCP echo target on host:port (port 0: any free one)."""

    def __init__(self, host="127.0.0.2", port=0, banner=True, eof_answer=False, record=4096):
        self.host = host
        self.banner = banner
        self.eof_answer = eof_answer
        self.record = record
        self.conns = []
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.lsock = socket.socket(family_of(host), socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(1024)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.addr = addr_text(host, self.port)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, peer = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(None)
            conn = TcpConn(c, peer[:2])
            with self._lock:
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        s = conn.sock
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        try:
            if self.banner:
                s.sendall((self.addr + "\n").encode())
            while True:
                n = s.recv_into(buf)
                if n == 0:
                    conn.eof = True
                    break
                if len(conn.data) < self.record:
                    conn.data += view[:min(n, self.record - len(conn.data))]
                conn.total += n
                s.sendall(view[:n])
            if self.eof_answer:
                s.sendall(b"EOF after %d bytes\n" % conn.total)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            conn.error = e
        finally:
            conn.ended.set()
            try:
                s.close()
            except OSError:
                pass

    def stop_listening(self):
        """Closes the listening socket (new connections are refused); accepted ones stay."""
        self._stop.set()
        self._thread.join(2)
        self.lsock.close()

    def stop(self):
        if not self._stop.is_set():
            self.stop_listening()
        with self._lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def wait_conns(self, n, timeout=3.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.conns) >= n:
                    return list(self.conns)
            time.sleep(0.01)
        with self._lock:
            return list(self.conns)


class UdpEcho:
    """A UDP echo target on host:port; answers tag + datagram to the sender."""

    def __init__(self, host="127.0.0.2", port=0, tag=True):
        self.host = host
        self.sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except OSError:
            pass
        self.sock.bind((host, port))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.addr = addr_text(host, self.port)
        self.tag = (self.addr + "\n").encode() if tag else b""
        self.received = []  # [(datagram, (peer host, peer port))]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(70000)
            except socket.timeout:
                continue
            except OSError:
                continue  # e.g. an ICMP error from an earlier answer
            with self._lock:
                self.received.append((data, peer[:2]))
            try:
                self.sock.sendto(self.tag + data, peer)
            except OSError:
                pass

    def datagrams(self):
        with self._lock:
            return list(self.received)

    def stop(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def udp_client(host="127.0.0.1", src_host=None, timeout=1.0):
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    s.bind((src_host or host, 0))
    s.settimeout(timeout)
    return s


def udp_ask(s, dest, payload, timeout=1.0):
    """Sends <payload> to <dest>; returns (answer, source address) or (None, None)."""
    s.settimeout(timeout)
    s.sendto(payload, dest)
    try:
        data, src = s.recvfrom(70000)
    except socket.timeout:
        return None, None
    return data, src[:2]


# ---- fixtures and config helpers shared by the NLB test files ----
@pytest.fixture(name="l4")
def l4_fixture():
    """Factory for L4 targets: l4.tcp(host, **kw) -> TcpEcho, l4.udp(host, **kw) -> UdpEcho;
    all are stopped at teardown."""
    made = []

    class Factory:
        @staticmethod
        def tcp(host="127.0.0.2", **kw):
            srv = TcpEcho(host, **kw)
            made.append(srv)
            return srv

        @staticmethod
        def udp(host="127.0.0.2", **kw):
            srv = UdpEcho(host, **kw)
            made.append(srv)
            return srv

    yield Factory
    for srv in made:
        srv.stop()


def nlb_config(targets, protocol="TCP", group_protocol=None, host="127.0.0.1", listener=None,
               group=None):
    """One NLB listener "l4" on host:<free port> forwarding to group "g" with <targets>."""
    lst = {"name": "l4", "protocol": protocol, "bind": addr_text(host, free_port(host)),
           "default_action": {"forward": {"target_groups": [{"name": "g"}]}}}
    lst.update(listener or {})
    grp = {"name": "g", "protocol": group_protocol or protocol,
           "health_check": {"enabled": False}, "targets": list(targets)}
    grp.update(group or {})
    return {"workers": 1, "listeners": [lst], "target_groups": [grp]}


def metric(lb, name, labels=None):
    """The value of one sample from GET /metrics (None when absent)."""
    return conftest_metric(lb, name, **(labels or {}))


def target_states(lb, group="g"):
    """{"ip:port": state} from the control API's health view."""
    status, body = lb.ctl("GET", "/v1/target-groups/%s/health" % group)
    assert status == 200, (status, body)
    out = {}
    for d in body["TargetHealthDescriptions"]:
        out[addr_text(d["Target"]["Id"], d["Target"]["Port"])] = d["TargetHealth"]["State"]
    return out


def wait_states(lb, want, timeout=6.0, group="g"):
    """Polls the health view until every "ip:port" in <want> has its state; returns the view."""
    deadline = time.monotonic() + timeout
    while True:
        view = target_states(lb, group)
        if all(view.get(a) == st for a, st in want.items()) or time.monotonic() > deadline:
            return view
        time.sleep(0.05)


def change_targets(lb, verb, addrs, group="g"):
    targets = []
    for a in addrs:
        h, p = split_addr(a)
        targets.append({"Id": h, "Port": p})
    status, body = lb.ctl("POST", "/v1/target-groups/%s/%s" % (group, verb), {"Targets": targets})
    assert status == 200, (verb, status, body)
