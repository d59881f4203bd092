# SPDX-License-Identifier: MIT
"""HTTP/2 clients for the tests: a well-behaved one on Python's h2 library (Debian
python3-h2), and raw frames for the misbehaving ones (floods, bad HPACK, stream id reuse)
that the library refuses to produce."""

import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4

ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
          5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL",
          9: "COMPRESSION_ERROR", 11: "ENHANCE_YOUR_CALM"}


def connect(port, host="127.0.0.1", tls=False, timeout=10.0):
    s = socket.create_connection((host, port), timeout=timeout)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        s = ctx.wrap_socket(s, server_hostname="localhost")
        assert s.selected_alpn_protocol() == "h2"
    return s


class Client:
    """One HTTP/2 connection driven by the h2 library; responses collected per stream."""

    def __init__(self, port, tls=False, settings=None, authority="example.com"):
        self.sock = connect(port, tls=tls)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.authority = authority
        self.scheme = "https" if tls else "http"
        self.streams = {}  # id -> {"headers", "data", "trailers", "ended", "reset"}
        self.goaway = None  # error code name of a GOAWAY received
        self.closed = False
        self.auto_ack = True  # acknowledge received DATA (window updates); "connection": only
        # the connection's window, never a stream's
        self.flush()

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def request(self, method, path, headers=(), body=None, end=True, authority=None):
        sid = self.conn.get_next_available_stream_id()
        hs = [(":method", method), (":scheme", self.scheme),
              (":authority", authority or self.authority), (":path", path)] + list(headers)
        self.conn.send_headers(sid, hs, end_stream=body is None and end)
        self.streams[sid] = {"headers": None, "data": bytearray(), "trailers": None,
                             "ended": False, "reset": None, "informational": []}
        if body is not None:
            self.send_body(sid, body, end=end)
        self.flush()
        return sid

    def send_body(self, sid, body, end=True):
        """Sends <body> as the flow-control windows allow (reading meanwhile)."""
        view = memoryview(body)
        while view:
            win = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if win <= 0:
                self.flush()
                self.pump(0.5)
                continue
            self.conn.send_data(sid, bytes(view[:win]))
            view = view[win:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
        self.flush()

    def pump(self, timeout=1.0):
        """Reads once (up to <timeout>) and handles the events; False once the server closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return True
        except (ConnectionResetError, ssl.SSLError, OSError):
            self.closed = True
            return False
        if not data:
            self.closed = True
            return False
        for ev in self.conn.receive_data(data):
            self._event(ev)
        self.flush()
        return True

    def _event(self, ev):
        st = self.streams.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.ResponseReceived):
            st["headers"] = dict(ev.headers)
            st["header_list"] = list(ev.headers)
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            st["informational"].append(dict(ev.headers))
        elif isinstance(ev, h2.events.DataReceived):
            st["data"] += ev.data
            if self.auto_ack == "connection":
                if ev.flow_controlled_length:
                    self.conn.increment_flow_control_window(ev.flow_controlled_length)
            elif self.auto_ack:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            st["trailers"] = dict(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded):
            st["ended"] = True
        elif isinstance(ev, h2.events.StreamReset):
            if st is not None:
                st["reset"] = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ERRORS.get(int(ev.error_code), str(ev.error_code))

    def wait(self, sids, timeout=10.0):
        """Pumps until every stream of <sids> ended or was reset."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.streams[s]["ended"] or self.streams[s]["reset"] is not None
                   for s in sids):
                return
            if not self.pump(0.2):
                break
        missing = [s for s in sids if not (self.streams[s]["ended"]
                                           or self.streams[s]["reset"] is not None)]
        assert not missing, "streams %r did not end" % missing

    def get(self, path, **kw):
        sid = self.request("GET", path, **kw)
        self.wait([sid])
        return self.streams[sid]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---- raw frames ----

def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid & 0x7fffffff) + payload


def settings_frame(pairs=(), ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0,
                 b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def request_block(enc, path="/", authority="example.com", method="GET", extra=()):
    return enc.encode([(":method", method), (":scheme", "http"), (":authority", authority),
                       (":path", path)] + list(extra))


class Raw:
    """A connection that sends whatever frames it is given and reads frames back."""

    def __init__(self, port, tls=False):
        self.sock = connect(port, tls=tls)
        self.enc = hpack.Encoder()
        self.buf = b""
        self.sock.sendall(PREFACE + settings_frame())

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def frames(self, timeout=5.0, until=None):
        """Reads frames until the server closes, <until>(type, flags, sid, payload) is
        true, or <timeout>; returns them as (type, flags, sid, payload)."""
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7fffffff,
                     self.buf[9:9 + n])
                self.buf = self.buf[9 + n:]
                out.append(f)
                if until is not None and until(*f):
                    return out
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            except OSError:
                break
            if not data:
                break
            self.buf += data
        return out

    def goaway(self, timeout=5.0):
        """The error code name of the GOAWAY the server sends (None if none)."""
        for t, _, _, p in self.frames(timeout, until=lambda t, *_: t == GOAWAY):
            if t == GOAWAY:
                return ERRORS.get(int.from_bytes(p[4:8], "big"), "?")
        return None

    def closed(self, timeout=3.0):
        """True when the server closed the connection within <timeout>."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(0.2)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return True
            if not data:
                return True
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
