#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Health check scale benchmark helper (driven by bench/health_scale.sh). Standard library only.

  health_scale.py backend --targets N --port P --status-file F
      One process, one selectors loop, listening on N loopback addresses 127.0.2.1 ..
      (250 per /24: 127.0.2.1-250, 127.0.3.1-250, ...) at port P. Each connection gets its
      request head read, then "HTTP/1.1 200 OK" with Content-Length: 0 and Connection:
      close, and is closed. Once listening it writes "ready" to F, then every second
      "answered ANSWERED ACCEPTED T" (connections answered and accepted so far, at
      time.monotonic() T, a clock shared by all processes on Linux).

  health_scale.py run --socket S --pid PID --group G --targets N --port P
                      --status-file F --wait W --measure M --limit PCT
      Registers the N targets in one control API call, waits up to W seconds until the
      health view shows all of them healthy, then samples berth's main thread
      (/proc/PID/task/PID/stat, utime+stime) over M seconds with no data traffic and prints
      it as a percentage of one core, with the whole process and the backend's answer rate
      for context. Exit status: 0 under PCT; 1 PCT or more, a target not healthy, a call
      failed or berth died; 2 setup failure.
"""

import argparse
import json
import os
import resource
import selectors
import socket
import sys
import time

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def addresses(n):
    out = []
    for i in range(n):
        out.append("127.0.%d.%d" % (2 + i // 250, 1 + i % 250))
    return out


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---- backend ----

def backend(args):
    limit = raise_nofile()
    if limit < args.targets + 256:
        print("backend: RLIMIT_NOFILE %d is too low for %d listeners" % (limit, args.targets),
              file=sys.stderr)
        return 2
    sel = selectors.DefaultSelector()
    for addr in addresses(args.targets):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            ls.bind((addr, args.port))
        except OSError as e:
            print("backend: bind %s:%d: %s" % (addr, args.port, e), file=sys.stderr)
            return 2
        ls.listen(64)
        ls.setblocking(False)
        sel.register(ls, selectors.EVENT_READ, None)
    accepted = answered = 0

    def status(text):
        tmp = args.status_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.status_file)

    status("ready")
    next_report = time.monotonic() + 1.0
    while True:
        for key, _ in sel.select(timeout=0.5):
            if key.data is None:  # a listener
                while True:
                    try:
                        c, _ = key.fileobj.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    accepted += 1
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, bytearray())
                continue
            c, buf = key.fileobj, key.data
            try:
                data = c.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                buf += data
                if b"\r\n\r\n" not in buf:
                    continue
                try:
                    c.send(RESPONSE)  # fits any socket buffer
                    answered += 1
                except OSError:
                    pass
            sel.unregister(c)
            c.close()
        now = time.monotonic()
        if now >= next_report:
            status("answered %d %d %.3f" % (answered, accepted, now))
            next_report = now + 1.0


# ---- run ----

def unix_call(path, method, target, body=None, timeout=60.0):
    data = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(("%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                   "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                   % (method, target, len(data))).encode() + data)
        chunks = []
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            chunks.append(d)
    finally:
        s.close()
    raw = b"".join(chunks)
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, rest


def cpu_ticks(pid, tid):
    with open("/proc/%d/task/%d/stat" % (pid, tid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def proc_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def backend_answered(path):
    """(answered, monotonic time) from the backend's status file, or None."""
    try:
        with open(path) as f:
            parts = f.read().split()
    except FileNotFoundError:
        return None
    return (int(parts[1]), float(parts[3])) if len(parts) == 4 and parts[0] == "answered" \
        else None


def states(sock, group):
    status, body = unix_call(sock, "GET", "/v1/target-groups/%s/health" % group)
    if status != 200:
        raise RuntimeError("health view answered %d: %r" % (status, body[:200]))
    out = {}
    for d in json.loads(body)["TargetHealthDescriptions"]:
        st = d["TargetHealth"]["State"]
        out[st] = out.get(st, 0) + 1
    return out


def run(args):
    tck = os.sysconf("SC_CLK_TCK")
    pid = args.pid

    def alive():
        return os.path.exists("/proc/%d" % pid)

    targets = [{"Id": a, "Port": args.port} for a in addresses(args.targets)]
    t0 = time.monotonic()
    try:
        status, body = unix_call(args.socket, "POST",
                                 "/v1/target-groups/%s/register" % args.group,
                                 {"Targets": targets})
    except OSError as e:
        print("error: register call failed: %s" % e, file=sys.stderr)
        return 1
    t_reg = time.monotonic() - t0
    if status != 200:
        print("error: register answered %d: %s" % (status, body[:300]), file=sys.stderr)
        return 1
    print("registered %d targets in one call: %.3fs" % (args.targets, t_reg))

    deadline = t0 + args.wait
    st = {}
    while time.monotonic() < deadline:
        if not alive():
            print("error: berth died", file=sys.stderr)
            return 1
        st = states(args.socket, args.group)
        if st.get("healthy", 0) == args.targets:
            break
        time.sleep(0.1)
    t_healthy = time.monotonic() - t0
    if st.get("healthy", 0) != args.targets:
        print("error: not all healthy after %.0fs: %r" % (args.wait, st), file=sys.stderr)
        return 1
    print("all %d targets healthy %.3fs after the register call" % (args.targets, t_healthy))

    # Let the first round of checks (and its connections) settle before measuring.
    time.sleep(1.0)
    a0 = backend_answered(args.status_file)
    m0, p0, w0 = cpu_ticks(pid, pid), proc_ticks(pid), time.monotonic()
    time.sleep(args.measure)
    m1, p1, w1 = cpu_ticks(pid, pid), proc_ticks(pid), time.monotonic()
    time.sleep(1.1)  # the backend's status file is a second behind
    a1 = backend_answered(args.status_file)
    if not alive():
        print("error: berth died during the measurement", file=sys.stderr)
        return 1
    st = states(args.socket, args.group)
    wall = w1 - w0
    main_pct = 100.0 * (m1 - m0) / tck / wall
    proc_pct = 100.0 * (p1 - p0) / tck / wall
    if a0 is not None and a1 is not None and a1[1] > a0[1]:
        print("checks answered by the backend: %.1f/s (expected ~%.0f/s: %d targets every "
              "%gs)" % ((a1[0] - a0[0]) / (a1[1] - a0[1]), args.targets / args.interval,
                        args.targets, args.interval))
    print("target states after the measurement: %s" % json.dumps(st, sort_keys=True))
    print("berth process CPU (all threads) over %.1fs: %.2f%% of one core" % (wall, proc_pct))
    print("berth main thread CPU over %.1fs: %.2f%% of one core (limit %g%%)"
          % (wall, main_pct, args.limit))
    if st.get("healthy", 0) != args.targets:
        print("FAIL: targets left healthy during the measurement", file=sys.stderr)
        return 1
    if main_pct >= args.limit:
        print("FAIL: main thread at %.2f%% >= %g%%" % (main_pct, args.limit))
        return 1
    print("PASS")
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("backend")
    b.add_argument("--targets", type=int, required=True)
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--status-file", required=True)
    r = sub.add_parser("run")
    r.add_argument("--socket", required=True)
    r.add_argument("--pid", type=int, required=True)
    r.add_argument("--group", required=True)
    r.add_argument("--targets", type=int, required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--status-file", required=True)
    r.add_argument("--interval", type=float, default=5.0)
    r.add_argument("--wait", type=float, default=60.0)
    r.add_argument("--measure", type=float, default=30.0)
    r.add_argument("--limit", type=float, default=10.0)
    args = ap.parse_args()
    if args.cmd == "backend":
        return backend(args)
    try:
        return run(args)
    except (OSError, ValueError, RuntimeError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
