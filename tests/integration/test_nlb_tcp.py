# SPDX-License-Identifier: MIT
"""NLB mode over TCP: byte forwarding (echo, half-close, early FIN, integrity of 100 MiB, a
target's burst to a late reader), idle timeout, retry past a refusing target, flow_hash
placement and its consistency when targets come and go, source_ip stickiness, draining with
and without connection termination, and resets of connections to a target that turns
unhealthy."""

import collections
import hashlib
import os
import socket
import threading
import time

import pytest

from l4servers import l4_fixture  # noqa: F401 (the l4 fixture)
from l4servers import (nlb_config, change_targets, wait_states, tcp_client, recv_line,
                       recv_exact, recv_all, free_port)


def dest(lb):
    return ("127.0.0.1", lb.port)


def target_of(lb, src=None):
    """Opens a connection (from <src> if given), reads the target's banner, aborts it (RST,
    so the same 5-tuple can be used again at once); returns the target's "ip:port"."""
    s = tcp_client(dest(lb), src=src, abort_on_close=True)
    try:
        line = recv_line(s)
    finally:
        s.close()
    assert line.endswith(b"\n"), "no banner from the target: %r" % line
    return line.decode().strip()


def open_to(lb, want, tries=200):
    """A connection (banner already read) that landed on target <want>; others are closed."""
    for _ in range(tries):
        s = tcp_client(dest(lb))
        if recv_line(s).decode().strip() == want:
            return s
        s.close()
    pytest.fail("no connection landed on %s in %d tries" % (want, tries))


def echo_ok(s, payload=b"ping\n"):
    s.sendall(payload)
    return recv_exact(s, len(payload)) == payload


def ended(s, timeout):
    """True once the connection ends (EOF or reset) within <timeout> seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = s.recv(4096)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if data == b"":
            return True
    return False


def test_tcp_echo_through_listener(berth, l4):
    """A client's bytes reach the target and the target's answer comes back unchanged."""
    t = l4.tcp("127.0.0.2")
    lb = berth(nlb_config([t.addr]))
    s = tcp_client(dest(lb))
    assert recv_line(s) == (t.addr + "\n").encode()
    for msg in (b"hello\n", os.urandom(70000), b"x"):
        assert echo_ok(s, msg)
    s.close()


def test_tcp_half_close(berth, l4):
    """After the client's shutdown(SHUT_WR) the target sees EOF, can still answer, and then both ends close."""
    t = l4.tcp("127.0.0.2", eof_answer=True)
    lb = berth(nlb_config([t.addr]))
    s = tcp_client(dest(lb))
    assert recv_line(s) == (t.addr + "\n").encode()
    s.sendall(b"abc" * 1000)
    s.shutdown(socket.SHUT_WR)
    rest = recv_all(s)  # EOF must follow the answer
    assert rest == b"abc" * 1000 + b"EOF after 3000 bytes\n"
    conn = t.wait_conns(1)[0]
    assert conn.ended.wait(3) and conn.eof and conn.error is None
    s.close()


def test_tcp_data_and_fin_before_target_connect(berth, l4):
    """Bytes and a FIN the client sends right after connecting, before berth's target connection is up, all reach the target."""
    t = l4.tcp("127.0.0.2", banner=False, eof_answer=True)
    lb = berth(nlb_config([t.addr]))
    for _ in range(10):
        s = tcp_client(dest(lb))
        s.sendall(b"early")
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"early" + b"EOF after 5 bytes\n"
        s.close()


def test_tcp_target_burst_then_close_reaches_slow_client(berth):
    """A target that writes 32 MiB and closes at once delivers every byte to a client that starts reading late."""
    blob = os.urandom(32 << 20)
    ls = socket.socket()
    ls.bind(("127.0.0.2", 0))
    ls.listen(4)

    def serve():
        c, _ = ls.accept()
        c.sendall(blob)
        c.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    lb = berth(nlb_config(["127.0.0.2:%d" % ls.getsockname()[1]]))
    s = tcp_client(dest(lb), timeout=10)
    time.sleep(0.3)  # the target is done and gone before the client reads
    got = recv_all(s)
    s.close()
    ls.close()
    assert len(got) == len(blob) and hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()


def test_tcp_idle_timeout_closes_both_ends(berth, l4):
    """A connection silent for idle_timeout is closed toward both the client and the target."""
    t = l4.tcp("127.0.0.2")
    lb = berth(nlb_config([t.addr], listener={"idle_timeout": "1s"}))
    s = tcp_client(dest(lb))
    recv_line(s)
    assert echo_ok(s)  # activity resets the timer
    t0 = time.monotonic()
    assert ended(s, 4.0), "connection still open 4 s after going idle (idle_timeout 1s)"
    took = time.monotonic() - t0
    assert 0.8 <= took <= 3.0, "closed after %.2fs of silence, idle_timeout is 1s" % took
    conn = t.wait_conns(1)[0]
    assert conn.ended.wait(2), "the target's side of the connection was not closed"
    s.close()


def test_tcp_integrity_100mib(berth, l4):
    """100 MiB of random data go through berth to an echo target and back with equal sha256 both ways."""
    t = l4.tcp("127.0.0.2", banner=False, record=0)
    lb = berth(nlb_config([t.addr]))
    s = tcp_client(dest(lb), timeout=30)
    total = 100 << 20
    chunk = 1 << 20
    sent_hash = hashlib.sha256()
    errors = []

    def sender():
        try:
            seed = os.urandom(chunk)
            for i in range(total // chunk):
                block = hashlib.sha256(seed + i.to_bytes(4, "big")).digest() * (chunk // 32)
                sent_hash.update(block)
                s.sendall(block)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)

    th = threading.Thread(target=sender)
    th.start()
    got_hash = hashlib.sha256()
    got = 0
    buf = bytearray(1 << 20)
    while True:
        n = s.recv_into(buf)
        if n == 0:
            break
        got_hash.update(memoryview(buf)[:n])
        got += n
    th.join()
    s.close()
    assert not errors, errors
    assert got == total, "received %d of %d bytes" % (got, total)
    assert got_hash.hexdigest() == sent_hash.hexdigest()
    conn = t.wait_conns(1)[0]
    assert conn.ended.wait(3) and conn.total == total


def test_refused_target_is_skipped(berth, l4):
    """A connection whose flow_hash target refuses the connect is carried to another target instead of failing."""
    a = l4.tcp("127.0.0.2")
    dead = "127.0.0.3:%d" % free_port("127.0.0.3")  # nothing listens there
    lb = berth(nlb_config([a.addr, dead]))
    got = collections.Counter(target_of(lb) for _ in range(20))
    assert got == {a.addr: 20}, dict(got)


def test_flow_hash_spreads_and_is_consistent(berth, l4):
    """flow_hash keeps each 5-tuple on one target, spreads 300 tuples evenly over 3 targets, moves about a quarter of them to an added 4th target and, when a target is removed, moves only that target's tuples."""
    ts = [l4.tcp("127.0.0.%d" % i) for i in (2, 3, 4)]
    lb = berth(nlb_config([t.addr for t in ts]))
    # 300 distinct 5-tuples: 30 source addresses x 10 source ports below the ephemeral range.
    base = 21000 + (os.getpid() % 50) * 100
    tuples = [("127.0.3.%d" % (1 + i // 10), base + i % 10) for i in range(300)]
    first = {tp: target_of(lb, tp) for tp in tuples}
    counts = collections.Counter(first.values())
    assert set(counts) == {t.addr for t in ts}, counts
    for addr, n in counts.items():
        assert 60 <= n <= 140, "uneven spread over 3 targets: %s" % dict(counts)
    again = {tp: target_of(lb, tp) for tp in tuples[:100]}
    assert all(again[tp] == first[tp] for tp in again), "a repeated 5-tuple changed target"

    t4 = l4.tcp("127.0.0.5")
    change_targets(lb, "register", [t4.addr])
    time.sleep(0.3)  # the new snapshot reaches the worker
    second = {tp: target_of(lb, tp) for tp in tuples}
    to_new = sum(1 for tp in tuples if first[tp] != second[tp] and second[tp] == t4.addr)
    between_old = sum(1 for tp in tuples if first[tp] != second[tp] and second[tp] != t4.addr)
    moved = (to_new + between_old) / len(tuples)
    assert 0.15 <= moved <= 0.35, "%.1f%% of the 5-tuples moved after adding a 4th target" % (
        100 * moved)
    print("moved %d to new, %d between old; first %s" % (to_new, between_old, dict(counts)))
    assert between_old <= 0.04 * len(tuples), (
        "%d of 300 tuples moved between the old targets" % between_old)

    # Taking one target out moves its tuples and (almost) nothing else.
    gone = ts[0].addr
    change_targets(lb, "deregister", [gone])
    time.sleep(0.3)
    third = {tp: target_of(lb, tp) for tp in tuples}
    assert gone not in third.values()
    others_moved = sum(1 for tp in tuples if second[tp] != gone and third[tp] != second[tp])
    assert others_moved <= 0.04 * len(tuples), (
        "%d of the tuples not on the removed target moved" % others_moved)


def test_source_ip_stickiness(berth, l4):
    """With source_ip stickiness all connections from one client IP land on one target and different client IPs spread."""
    ts = [l4.tcp("127.0.0.%d" % i) for i in (2, 3, 4)]
    lb = berth(nlb_config([t.addr for t in ts], group={"stickiness": {"type": "source_ip"}}))
    same = {target_of(lb, ("127.0.1.7", 0)) for _ in range(30)}
    assert len(same) == 1, "connections from one client IP went to %s" % same
    spread = collections.Counter(target_of(lb, ("127.0.1.%d" % i, 0)) for i in range(1, 41))
    assert len(spread) == 3, "40 client IPs used only %s" % dict(spread)
    for ip in ("127.0.1.1", "127.0.1.2", "127.0.1.3"):
        assert len({target_of(lb, (ip, 0)) for _ in range(5)}) == 1


@pytest.mark.parametrize("termination", [False, True])
def test_draining_target(berth, l4, termination):
    """A deregistered target keeps its open connection while new ones go elsewhere; with connection_termination it is closed when the deregistration delay ends, without it stays open."""
    a, b = l4.tcp("127.0.0.2"), l4.tcp("127.0.0.3")
    lb = berth(nlb_config([a.addr, b.addr], group={
        "deregistration_delay": "2s", "connection_termination": termination}))
    s = open_to(lb, a.addr)
    change_targets(lb, "deregister", [a.addr])
    t0 = time.monotonic()
    time.sleep(0.2)
    assert echo_ok(s), "the open connection to the draining target stopped working"
    new = collections.Counter(target_of(lb) for _ in range(20))
    assert new == {b.addr: 20}, "new connections during draining went to %s" % dict(new)
    if termination:
        assert ended(s, 5.0), "connection to the drained target still open 5 s after the delay"
        took = time.monotonic() - t0
        assert 1.8 <= took <= 4.0, "closed %.2fs after deregistration (delay 2s)" % took
    else:
        time.sleep(3.0 - (time.monotonic() - t0))  # well past the 2 s delay
        assert echo_ok(s), "connection closed although connection_termination is false"
    s.close()


@pytest.mark.parametrize("terminate", [True, False])
def test_unhealthy_target_connections(berth, l4, terminate):
    """Connections to a target that fails its health checks are reset (kept with unhealthy_connection_termination false) while connections to a healthy target continue."""
    a, b = l4.tcp("127.0.0.2"), l4.tcp("127.0.0.3")
    lb = berth(nlb_config([a.addr, b.addr], group={
        "unhealthy_connection_termination": terminate,
        "health_check": {"protocol": "TCP", "interval": "1s", "timeout": "500ms",
                         "healthy_threshold": 2, "unhealthy_threshold": 2}}))
    view = wait_states(lb, {a.addr: "healthy", b.addr: "healthy"})
    assert view == {a.addr: "healthy", b.addr: "healthy"}, view
    sa, sb = open_to(lb, a.addr), open_to(lb, b.addr)
    a.stop_listening()  # checks now get "connection refused"; the accepted connection stays
    t0 = time.monotonic()
    if terminate:
        assert ended(sa, 6.0), "connection to the unhealthy target not ended within 6 s"
        took = time.monotonic() - t0
        assert took >= 0.9, "ended after %.2fs, before two failed checks could happen" % took
    else:
        view = wait_states(lb, {a.addr: "unhealthy"})
        assert view[a.addr] == "unhealthy", view
        time.sleep(1.5)  # more than one sweep after the state change
        assert echo_ok(sa), "connection to the unhealthy target ended although termination is off"
    assert echo_ok(sb), "connection to the healthy target broke"
    assert target_of(lb) == b.addr
    sa.close()
    sb.close()
