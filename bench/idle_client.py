#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Idle keep-alive connection memory client (driven by bench/idle.sh). Standard library only.

  idle_client.py --pid PID --port PORT --n N [--settle S] [--return-secs R] [--window W]

Measures the resident set (VmRSS from /proc/PID/status) of the proxy process PID, which
listens on 127.0.0.1:PORT, in three phases:

  baseline  RSS before any connection (after the RSS has been steady for a second).
  idle      N TCP connections that send nothing. Connections are opened in batches of
            BATCH; the next batch starts once the proxy has accepted all but one batch (its
            open descriptor count in /proc/PID/fd), so no accept queue overflows. Then it
            waits until the proxy holds N more descriptors than at baseline, S seconds more,
            and until the RSS is steady; reads the RSS.
  request   On the SAME N connections one "GET / HTTP/1.1" with a Host header each (keep-
            alive), at most W in flight at a time, each response read whole (status 200 and
            the expected body); the connections stay open and idle. S seconds and a steady
            RSS later, reads the RSS.
  return    All N connections are closed by the client. Then the RSS is sampled once a
            second for up to R seconds, stopping early at the first sample within 10% of
            the baseline.

Source addresses: all connections come from 127.0.0.1 unless N exceeds the ephemeral port
range (net.ipv4.ip_local_port_range) less 1,000; then they are spread over 127.0.0.1,
127.0.0.2, ... (IP_BIND_ADDRESS_NO_PORT, so the kernel still picks the port at connect).

Progress goes to stderr; the last line on stdout is
  RESULT baseline=KiB idle=KiB request=KiB close=KiB returned=SECS|-1 accepted=A
         errors=E closed_early=C fds_base=F
(KiB values are VmRSS; returned=-1: not within 10% after R seconds; errors: requests that
failed or had a wrong answer; closed_early: connections the proxy closed before the client
did). Exit status: 0 ok; 1 the proxy died or did not accept the connections; 2 usage.
"""

import argparse
import errno
import os
import resource
import selectors
import socket
import sys
import time

BATCH = 500
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h
EXPECT = b"hello from backend\n"


def log(msg):
    print("  [client] " + msg, file=sys.stderr, flush=True)


class ProxyGone(Exception):
    pass


class Proc:
    def __init__(self, pid):
        self.pid = pid

    def rss_kib(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
        raise ProxyGone("process %d is gone" % self.pid)

    def fds(self):
        try:
            return len(os.listdir("/proc/%d/fd" % self.pid))
        except (FileNotFoundError, ProcessLookupError):
            raise ProxyGone("process %d is gone" % self.pid)

    def steady_rss(self, min_wait=1.0, step=0.5, limit=15.0):
        """RSS once two samples STEP apart differ by at most max(64 KiB, 0.5%)."""
        time.sleep(min_wait)
        prev = self.rss_kib()
        deadline = time.monotonic() + limit
        while True:
            time.sleep(step)
            cur = self.rss_kib()
            if abs(cur - prev) <= max(64, cur // 200) or time.monotonic() > deadline:
                return cur
            prev = cur


def sources(n):
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        per = max(1000, hi - lo + 1 - 1000)
    except (OSError, ValueError):
        per = 20000
    if n <= per:
        return None, per
    return ["127.0.0.%d" % (1 + i) for i in range((n + per - 1) // per)], per


def open_conns(proc, port, n, fds_base, srcs, per):
    conns = []
    pending = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if srcs:
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((srcs[i // per], 0))
        err = s.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, "connect #%d: %s" % (i, os.strerror(err)))
        conns.append(s)
        pending.append(s)
        if len(pending) == BATCH or i == n - 1:
            finish_connects(pending)
            pending = []
            # let the proxy catch up to within one batch before the next one
            want = fds_base + len(conns) - (BATCH if i < n - 1 else 0)
            deadline = time.monotonic() + 20
            while proc.fds() < want and time.monotonic() < deadline:
                time.sleep(0.02)
    return conns


def finish_connects(socks):
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_WRITE)
    left = len(socks)
    deadline = time.monotonic() + 30
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            err = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, "connect: %s" % os.strerror(err))
            sel.unregister(key.fileobj)
            left -= 1
    sel.close()
    if left:
        raise OSError(errno.ETIMEDOUT, "%d connects did not complete in 30 s" % left)


def count_closed(conns):
    """Connections that are readable now: the proxy closed them (or sent something)."""
    sel = selectors.DefaultSelector()
    for s in conns:
        sel.register(s, selectors.EVENT_READ)
    n = len(sel.select(timeout=0))
    sel.close()
    return n


def response_done(buf):
    """None while incomplete, else (ok, reason)."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buf[:head_end]).decode("latin-1").split("\r\n")
    body = bytes(buf[head_end + 4:])
    parts = head[0].split(" ", 2)
    status = parts[1] if len(parts) > 1 else "?"
    clen, chunked, close = None, False, False
    for h in head[1:]:
        name, _, value = h.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            clen = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and "close" in value:
            close = True
    if chunked:
        if not body.endswith(b"0\r\n\r\n"):
            return None
        data, rest = b"", body  # tiny bodies only: one or a few chunks
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            data, rest = data + rest[:size], rest[size + 2:]
        body = data
    elif clen is not None:
        if len(body) < clen:
            return None
    else:
        return (False, "response without length")
    if status != "200" or body != EXPECT:
        return (False, "status %s body %r" % (status, body[:60]))
    if close:
        return (False, "proxy answered Connection: close")
    return (True, "")


def one_request_each(conns, port, window):
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: berth-idle-bench\r\n\r\n" % port
    sel = selectors.DefaultSelector()
    errors, reasons = 0, {}
    nxt, inflight = 0, 0
    bufs = {}
    deadline = time.monotonic() + 120
    while (nxt < len(conns) or inflight) and time.monotonic() < deadline:
        while inflight < window and nxt < len(conns):
            s = conns[nxt]
            nxt += 1
            try:
                s.send(req)  # 60 bytes: fits any send buffer
            except OSError as e:
                errors += 1
                reasons[str(e)] = reasons.get(str(e), 0) + 1
                continue
            bufs[s] = bytearray()
            sel.register(s, selectors.EVENT_READ)
            inflight += 1
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                data, why = b"", str(e)
            else:
                why = "connection closed before a whole response"
            if data:
                bufs[s] += data
                res = response_done(bufs[s])
                if res is None:
                    continue
                ok, why = res
            else:
                ok = False
            if not ok:
                errors += 1
                reasons[why] = reasons.get(why, 0) + 1
            sel.unregister(s)
            del bufs[s]
            inflight -= 1
    if inflight or nxt < len(conns):
        n = inflight + len(conns) - nxt
        errors += n
        reasons["no answer in 120 s"] = n
    sel.close()
    for why, n in reasons.items():
        log("request errors: %d x %s" % (n, why))
    return errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--return-secs", type=int, default=30)
    ap.add_argument("--window", type=int, default=64)
    args = ap.parse_args()
    if args.n < 1 or args.window < 1:
        ap.error("--n and --window must be positive")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft < args.n + 64:
        print("error: open file limit %d is too low for %d connections" % (soft, args.n),
              file=sys.stderr)
        return 2

    proc = Proc(args.pid)
    try:
        fds_base = proc.fds()
        base = proc.steady_rss()
        log("baseline RSS %d KiB, %d descriptors" % (base, fds_base))

        srcs, per = sources(args.n)
        if srcs:
            log("source addresses: %s (%d connections each)" % (", ".join(srcs), per))
        t0 = time.monotonic()
        conns = open_conns(proc, args.port, args.n, fds_base, srcs, per)
        deadline = time.monotonic() + 30
        while proc.fds() < fds_base + args.n and time.monotonic() < deadline:
            time.sleep(0.1)
        accepted = proc.fds() - fds_base
        log("%d connections open in %.1f s; proxy holds %d more descriptors"
            % (len(conns), time.monotonic() - t0, accepted))
        if accepted < args.n:
            print("error: the proxy accepted only %d of %d connections" % (accepted, args.n),
                  file=sys.stderr)
            return 1
        time.sleep(args.settle)
        idle = proc.steady_rss()
        closed = count_closed(conns)
        log("idle RSS %d KiB (%+d KiB); %d closed by the proxy" % (idle, idle - base, closed))

        t0 = time.monotonic()
        errors = one_request_each(conns, args.port, args.window)
        log("%d requests (one per connection, window %d) in %.1f s, %d errors"
            % (len(conns), args.window, time.monotonic() - t0, errors))
        time.sleep(args.settle)
        after = proc.steady_rss()
        closed = max(closed, count_closed(conns))
        log("after-request RSS %d KiB (%+d KiB); %d closed by the proxy"
            % (after, after - base, closed))

        for s in conns:
            s.close()
        conns = []
        limit = base * 1.10
        returned = -1
        close_rss = proc.rss_kib()
        for sec in range(1, args.return_secs + 1):
            time.sleep(1.0)
            close_rss = proc.rss_kib()
            if close_rss <= limit:
                returned = sec
                break
        log("after close: RSS %d KiB %s" % (close_rss, "within 10%% of baseline after %d s"
            % returned if returned >= 0 else "not within 10%% after %d s" % args.return_secs))
    except ProxyGone as e:
        print("error: the proxy died: %s" % e, file=sys.stderr)
        return 1
    print("RESULT baseline=%d idle=%d request=%d close=%d returned=%d accepted=%d errors=%d "
          "closed_early=%d fds_base=%d" % (base, idle, after, close_rss, returned, accepted,
                                           errors, closed, fds_base), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
