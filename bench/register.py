#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Control API registration benchmark client (driven by bench/register.sh).

Talks HTTP/1.1 to berth's Unix control socket and measures, against group GROUP:
  a) one register call carrying 1,000 targets (127.1.x.y:8080),
  b) 1,000 sequential single-target register calls (127.2.x.y:8080) on one keep-alive
     connection,
  c) 1,000 sequential single-target deregister calls of the (b) targets, same way.
No traffic goes to the targets, so nothing ever connects to them. For each phase it prints
the wall time, per-call latency percentiles (b, c), and berth's CPU time (utime+stime of
PID from /proc) over the phase; after each phase it checks the group's target count.
Exit status: 0 all phases under LIMIT seconds; 1 a phase took LIMIT or more, a call failed
or berth died; 2 setup failure (socket never answered).
Standard library only.
"""

import argparse
import json
import os
import socket
import sys
import time

N = 1000


class Conn:
    """One keep-alive HTTP/1.1 connection to a Unix socket."""

    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = bytearray()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("berth closed the keep-alive connection")
        self.buf += data

    def call(self, method, path, body=None):
        """Sends one request, reads the whole response; returns (status, body bytes)."""
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        head = ("%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % (method, path, len(data))).encode()
        self.sock.sendall(head + data)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\r\n\r\n") + 4
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[:end]
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            elif name.strip().lower() == "transfer-encoding":
                raise ValueError("chunked answer not expected here: %r" % lines)
        if length is None:
            raise ValueError("answer without Content-Length: %r" % lines)
        while len(self.buf) < length:
            self._fill()
        out = bytes(self.buf[:length])
        del self.buf[:length]
        return status, out

    def close(self):
        self.sock.close()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def addr(net, i):
    return {"Id": "127.%d.%d.%d" % (net, i // 250, i % 250 + 1), "Port": 8080}


def target_count(path, group):
    c = Conn(path)
    try:
        status, body = c.call("GET", "/v1/target-groups")
    finally:
        c.close()
    if status != 200:
        raise RuntimeError("GET /v1/target-groups: %d %r" % (status, body))
    for g in json.loads(body)["TargetGroups"]:
        if g["TargetGroupName"] == group:
            return g["Targets"]
    raise RuntimeError("group %s not listed" % group)


def wait_ready(path, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            c = Conn(path, timeout=1.0)
            try:
                if c.call("GET", "/healthz")[0] == 200:
                    return None
            finally:
                c.close()
        except (OSError, EOFError, ValueError) as e:
            last = e
        time.sleep(0.05)
    return last or "no 200 from /healthz"


def pct(sorted_ms, p):
    return sorted_ms[min(len(sorted_ms) - 1, int(round(p / 100.0 * (len(sorted_ms) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--group", default="bench")
    ap.add_argument("--state-file")
    ap.add_argument("--limit", type=float, default=1.0, help="seconds allowed per phase")
    ap.add_argument("--ready-timeout", type=float, default=10.0)
    ap.add_argument("--scale", type=int, default=10000,
                    help="then grow the group by this many targets in one call and time "
                         "single registrations on top of it (0: skip)")
    args = ap.parse_args()

    why = wait_ready(args.socket, args.ready_timeout)
    if why is not None:
        print("error: berth's control socket %s did not answer: %s" % (args.socket, why),
              file=sys.stderr)
        return 2
    base = "/v1/target-groups/%s" % args.group
    results = []
    failed = []

    def phase(name, label, run, expect_targets):
        cpu0 = cpu_seconds(args.pid)
        t0 = time.perf_counter()
        lat = run()
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(args.pid) - cpu0
        # (c): an idle drain ends in the deregister call itself; allow the 50 ms drain timer.
        deadline = time.monotonic() + 1.0
        count = target_count(args.socket, args.group)
        while count != expect_targets and time.monotonic() < deadline:
            time.sleep(0.02)
            count = target_count(args.socket, args.group)
        line = "%s %-46s wall %7.3f s  berth cpu %6.3f s" % (name, label, wall, cpu)
        if lat:
            lat.sort()
            line += "  per call ms: p50 %.3f p99 %.3f max %.3f" % (
                pct(lat, 50), pct(lat, 99), lat[-1])
        line += "  targets %d" % count
        print(line, flush=True)
        results.append((name, wall))
        if count != expect_targets:
            failed.append("%s: group %s has %d targets, expected %d"
                          % (name, args.group, count, expect_targets))
        if wall >= args.limit:
            failed.append("%s: %.3f s >= %.1f s" % (name, wall, args.limit))

    def one_big_call():
        c = Conn(args.socket)
        try:
            register_batched(c, base, [addr(1, i) for i in range(N)])
        finally:
            c.close()
        return None

    def sequential(verb):
        def run():
            c = Conn(args.socket)
            lat = []
            try:
                for i in range(N):
                    t0 = time.perf_counter()
                    status, body = c.call("POST", "%s/%s" % (base, verb),
                                          {"Targets": [addr(2, i)]})
                    lat.append((time.perf_counter() - t0) * 1000.0)
                    if status != 200:
                        raise RuntimeError("%s call %d: %d %r" % (verb, i, status, body[:300]))
            finally:
                c.close()
            return lat
        return run

    try:
        phase("a)", "1 register call with %d targets" % N, one_big_call, N)
        phase("b)", "%d single-target register calls, keep-alive" % N, sequential("register"),
              2 * N)
        phase("c)", "%d single-target deregister calls, keep-alive" % N,
              sequential("deregister"), N)
    except (OSError, EOFError, ValueError, RuntimeError) as e:
        print("FAIL: %s" % e, file=sys.stderr)
        return 1
    if args.state_file:
        check_state_file(args, failed)
    if args.scale > 0:
        try:
            scale_phase(args, base, failed)
        except (OSError, EOFError, ValueError, RuntimeError) as e:
            print("FAIL: %s" % e, file=sys.stderr)
            return 1
    if failed:
        for f in failed:
            print("FAIL: %s" % f, file=sys.stderr)
        return 1
    print("ok: every phase under %.1f s" % args.limit)
    return 0


MAX_PER_CALL = 1000  # the control API's cap on targets per register call


def register_batched(c, base, targets):
    """Registers <targets> in calls of at most MAX_PER_CALL; raises on any refusal."""
    for i in range(0, len(targets), MAX_PER_CALL):
        status, body = c.call("POST", base + "/register", {"Targets": targets[i:i + MAX_PER_CALL]})
        if status != 200:
            raise RuntimeError("register of %d targets: %d %r"
                               % (len(targets[i:i + MAX_PER_CALL]), status, body[:300]))


def scale_phase(args, base, failed):
    """A group of args.scale more targets: the big call, then single registrations on top of
    it, each of which rebuilds and publishes the whole snapshot (and writes the state file)."""
    rss0 = rss_kib(args.pid)
    c = Conn(args.socket)
    try:
        t0 = time.perf_counter()
        register_batched(c, base, [addr(3, i) for i in range(args.scale)])
        big = time.perf_counter() - t0
        lat = []
        for i in range(20):
            t0 = time.perf_counter()
            status, body = c.call("POST", base + "/register", {"Targets": [addr(4, i)]})
            lat.append((time.perf_counter() - t0) * 1000.0)
            if status != 200:
                raise RuntimeError("register on top: %d %r" % (status, body[:300]))
    finally:
        c.close()
    rss1 = rss_kib(args.pid)
    total = target_count(args.socket, args.group)
    lat.sort()
    print("d) %d more targets in register calls of %d: wall %.3f s; group now %d targets"
          % (args.scale, MAX_PER_CALL, big, total))
    print("d) one more target on top (rebuild + publish + state file), 20 calls: ms p50 %.2f "
          "p99 %.2f max %.2f" % (pct(lat, 50), pct(lat, 99), lat[-1]))
    print("d) berth RSS %d KiB -> %d KiB (+%d KiB, %.2f KiB per target)"
          % (rss0, rss1, rss1 - rss0, (rss1 - rss0) / float(args.scale + 20)))
    if total != N + args.scale + 20:
        failed.append("d): group has %d targets, expected %d" % (total, N + args.scale + 20))


def check_state_file(args, failed):
    if args.state_file:
        with open(args.state_file) as f:
            state = json.load(f)
        saved = len(state["target_groups"].get(args.group, []))
        print("state file: %d bytes, %d targets of %s saved"
              % (os.path.getsize(args.state_file), saved, args.group))
        if saved != N:
            failed.append("state file lists %d targets of %s, expected %d"
                          % (saved, args.group, N))


if __name__ == "__main__":
    sys.exit(main())
