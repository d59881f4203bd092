# SPDX-License-Identifier: MIT
"""NLB mode over UDP: replies from the listener's address (also on a wildcard listener), flow
stickiness and spread, flow expiry after idle_timeout, the flow table limit, datagram
boundaries and size, a TCP_UDP listener serving both protocols on one port, and flows of
draining and unhealthy targets."""

import collections
import os
import socket
import time

import pytest

from l4servers import l4_fixture  # noqa: F401 (the l4 fixture)
from l4servers import (nlb_config, metric, udp_client, udp_ask, tcp_client, recv_line,
                       recv_exact, free_port, change_targets, wait_states)


def dest(lb):
    return ("127.0.0.1", lb.port)


def tag_of(answer):
    """The target's "ip:port" from a tagged echo answer."""
    assert answer is not None, "no answer"
    return answer.split(b"\n", 1)[0].decode()


def wait_metric(lb, name, labels, want, timeout):
    """Polls a metric until it equals <want>; returns (value, seconds waited)."""
    t0 = time.monotonic()
    while True:
        v = metric(lb, name, labels)
        if v == want or time.monotonic() - t0 > timeout:
            return v, time.monotonic() - t0
        time.sleep(0.05)


def test_udp_reply_comes_from_listener(berth, l4):
    """A datagram reaches the target and its answer comes back from the listener's address and port."""
    t = l4.udp("127.0.0.2")
    lb = berth(nlb_config([t.addr], protocol="UDP"))
    c = udp_client()
    data, src = udp_ask(c, dest(lb), b"hello")
    assert data == (t.addr + "\nhello").encode()
    assert src == dest(lb), "answer came from %s, listener is %s" % (src, dest(lb))
    got = t.datagrams()
    assert [d for d, _ in got] == [b"hello"]
    assert got[0][1][0] == "127.0.0.1"  # berth's flow socket, not the client's port
    c.close()


def test_udp_flow_sticks_to_one_target(berth, l4):
    """All datagrams of one flow (client address and port) go to the same target."""
    ts = [l4.udp("127.0.0.%d" % i) for i in (2, 3, 4)]
    lb = berth(nlb_config([t.addr for t in ts], protocol="UDP"))
    c = udp_client()
    seen = set()
    for i in range(30):
        data, src = udp_ask(c, dest(lb), b"n%d" % i)
        assert data is not None and data.endswith(b"\nn%d" % i), data
        seen.add(tag_of(data))
    assert len(seen) == 1, "one flow went to %s" % seen
    c.close()


def test_udp_flows_spread(berth, l4):
    """Many flows from different client ports spread over all targets."""
    ts = [l4.udp("127.0.0.%d" % i) for i in (2, 3, 4)]
    lb = berth(nlb_config([t.addr for t in ts], protocol="UDP"))
    clients = [udp_client() for _ in range(90)]
    first = [tag_of(udp_ask(c, dest(lb), b"x")[0]) for c in clients]
    counts = collections.Counter(first)
    assert set(counts) == {t.addr for t in ts}, dict(counts)
    assert min(counts.values()) >= 12, "uneven spread of 90 flows: %s" % dict(counts)
    again = [tag_of(udp_ask(c, dest(lb), b"y")[0]) for c in clients]
    assert again == first, "a flow's second datagram went to another target"
    for c in clients:
        c.close()


def test_udp_flow_expires_after_idle(berth, l4):
    """A flow idle for idle_timeout is removed (berth_udp_flows goes to 0) and the next datagram starts a new one."""
    t = l4.udp("127.0.0.2")
    lb = berth(nlb_config([t.addr], protocol="UDP", listener={"idle_timeout": "1s"}))
    labels = {"listener": "l4"}
    c = udp_client()
    assert udp_ask(c, dest(lb), b"a")[0] is not None
    assert udp_ask(c, dest(lb), b"b")[0] is not None
    assert metric(lb, "berth_udp_flows", labels) == 1
    v, took = wait_metric(lb, "berth_udp_flows", labels, 0, 4.0)
    assert v == 0, "flow still there %.1fs after the last datagram (idle_timeout 1s)" % took
    assert took >= 0.8, "flow removed after %.2fs, idle_timeout is 1s" % took
    data, src = udp_ask(c, dest(lb), b"c")
    assert data is not None and data.endswith(b"\nc") and src == dest(lb)
    assert metric(lb, "berth_udp_flows", labels) == 1
    # the new flow uses a new socket toward the target
    peers = [p for _, p in t.datagrams()]
    assert peers[0] == peers[1] and peers[2] != peers[0], peers
    c.close()


def test_udp_flow_table_full(berth, l4):
    """With udp_max_flows 3 a fourth concurrent flow gets no answer, is counted as rejected and logged, while the first three keep working."""
    t = l4.udp("127.0.0.2")
    lb = berth(nlb_config([t.addr], protocol="UDP", listener={"udp_max_flows": 3}))
    cs = [udp_client() for _ in range(4)]
    for c in cs[:3]:
        assert udp_ask(c, dest(lb), b"in")[0] is not None
    for _ in range(3):
        data, _ = udp_ask(cs[3], dest(lb), b"out", timeout=0.3)
        assert data is None, "the 4th flow got an answer: %r" % data
    assert b"out" not in [d for d, _ in t.datagrams()], "the rejected flow reached the target"
    rejected = metric(lb, "berth_udp_flows_rejected_total", {"listener": "l4"})
    assert rejected is not None and rejected >= 1, rejected
    assert metric(lb, "berth_udp_flows", {"listener": "l4"}) == 3
    assert "UDP flow table full" in lb.stderr
    for c in cs[:3]:
        assert udp_ask(c, dest(lb), b"still")[0] is not None
    for c in cs:
        c.close()


def test_udp_listener_added_by_reload_uses_its_own_settings(berth, l4):
    """A UDP listener that a reload adds after the existing ones starts with its own settings (here udp_max_flows 2), read from the snapshot it comes with."""
    t = l4.udp("127.0.0.2")
    cfg = nlb_config([t.addr], protocol="TCP", group_protocol="TCP_UDP")
    lb = berth(cfg)
    port = free_port()
    text = open(lb.config_path).read()
    added = ("  - name: udp\n    protocol: UDP\n    bind: 127.0.0.1:%d\n    udp_max_flows: 2\n"
             "    default_action:\n      forward:\n        target_groups:\n          - name: g\n"
             % port)
    assert "\ntarget_groups:" in text
    with open(lb.config_path, "w") as f:
        f.write(text.replace("\ntarget_groups:", "\n" + added + "target_groups:"))
    status, body = lb.ctl("POST", "/v1/reload")
    assert status == 200, body
    cs = [udp_client() for _ in range(3)]
    assert udp_ask(cs[0], ("127.0.0.1", port), b"a")[0] is not None
    assert udp_ask(cs[1], ("127.0.0.1", port), b"b")[0] is not None
    assert udp_ask(cs[2], ("127.0.0.1", port), b"c", timeout=0.3)[0] is None
    assert metric(lb, "berth_udp_flows_rejected_total", {"listener": "udp"}) == 1
    for c in cs:
        c.close()


def test_udp_datagram_boundaries_and_sizes(berth, l4):
    """A burst of equal-sized datagrams and single large ones reach the target and come back one for one, intact."""
    t = l4.udp("127.0.0.2", tag=False)
    lb = berth(nlb_config([t.addr], protocol="UDP"))
    c = udp_client()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    burst = [os.urandom(1200) for _ in range(64)] + [os.urandom(500)]
    for d in burst:
        c.sendto(d, dest(lb))
    big = [os.urandom(9000), os.urandom(60000), b""]
    deadline = time.monotonic() + 3
    while len(t.datagrams()) < len(burst) and time.monotonic() < deadline:
        time.sleep(0.02)
    got = [d for d, _ in t.datagrams()]
    assert len(got) >= 0.95 * len(burst), "only %d of %d datagrams arrived" % (len(got), len(burst))
    assert all(d in burst for d in got), "a datagram arrived cut, merged or changed: sizes %s" % (
        sorted({len(d) for d in got}))
    assert got == [d for d in burst if d in got], "datagrams of one flow were reordered"
    back = []  # the echoes, batched back through the listener's socket
    c.settimeout(0.5)
    try:
        while len(back) < len(got):
            back.append(c.recvfrom(70000)[0])
    except socket.timeout:
        pass
    assert len(back) >= 0.95 * len(got), "%d of %d echoes came back" % (len(back), len(got))
    assert all(d in burst for d in back), "an echo came back cut, merged or changed"
    for d in big:
        data, _ = udp_ask(c, dest(lb), d)
        assert data == d, "a %d-byte datagram came back as %r bytes" % (
            len(d), None if data is None else len(data))
    c.close()


def test_udp_sustained_stream_then_lone_datagrams(berth, l4):
    """A fast stream (which switches the listener to timed polling) arrives whole and in order,
    and lone datagrams after it are still answered at once (the listener switched back)."""
    t = l4.udp("127.0.0.2", tag=False)
    lb = berth(nlb_config([t.addr], protocol="UDP"))
    c = udp_client()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    stream = [b"%06d" % i + b"s" * 194 for i in range(20000)]
    for i, d in enumerate(stream):
        c.sendto(d, dest(lb))
        if i % 500 == 499:
            time.sleep(0.002)  # stay within what the Python echo target can take
    deadline = time.monotonic() + 5
    while len(t.datagrams()) < len(stream) and time.monotonic() < deadline:
        time.sleep(0.05)
    got = [d for d, _ in t.datagrams()]
    assert len(got) >= 0.98 * len(stream), "only %d of %d datagrams arrived" % (
        len(got), len(stream))
    assert got == sorted(got), "datagrams of one flow were reordered"
    c.close()
    q = udp_client()
    for i in range(20):
        time.sleep(0.01)
        t0 = time.monotonic()
        data, _ = udp_ask(q, dest(lb), b"lone%d" % i, timeout=2.0)
        rtt = time.monotonic() - t0
        assert data == b"lone%d" % i, "lone datagram %d was not answered" % i
        assert rtt < 0.25, "lone datagram %d took %.3f s" % (i, rtt)
    q.close()


def test_tcp_udp_listener_serves_both(berth, l4):
    """A TCP_UDP listener forwards TCP connections and UDP datagrams on one port to a TCP_UDP group."""
    tt = l4.tcp("127.0.0.2", port=free_port("127.0.0.2"))
    tu = l4.udp("127.0.0.2", port=tt.port)
    lb = berth(nlb_config([tt.addr], protocol="TCP_UDP"))
    s = tcp_client(dest(lb))
    assert recv_line(s) == (tt.addr + "\n").encode()
    s.sendall(b"over tcp")
    assert recv_exact(s, 8) == b"over tcp"
    s.close()
    c = udp_client()
    data, src = udp_ask(c, dest(lb), b"over udp")
    assert data == (tu.addr + "\nover udp").encode() and src == dest(lb)
    c.close()


def test_udp_wildcard_listener_replies_from_dialled_address(berth, l4):
    """On a 0.0.0.0 listener the answer comes from the address the client sent to, so a connected client socket accepts it."""
    t = l4.udp("127.0.0.2")
    cfg = nlb_config([t.addr], protocol="UDP")
    port = free_port("127.0.0.1")
    cfg["listeners"][0]["bind"] = "0.0.0.0:%d" % port
    berth(cfg)
    c = udp_client()
    data, src = udp_ask(c, ("127.0.0.9", port), b"to .9")
    assert data is not None and data.endswith(b"\nto .9"), "no answer at all"
    assert src == ("127.0.0.9", port), "answer came from %s:%d, client sent to 127.0.0.9:%d" % (
        src[0], src[1], port)
    c.close()


def _flow_on(lb, want, tries=60):
    """A UDP client socket whose flow landed on target <want>."""
    for _ in range(tries):
        c = udp_client()
        if tag_of(udp_ask(c, dest(lb), b"find")[0]) == want:
            return c
        c.close()
    raise AssertionError("no flow landed on %s" % want)


@pytest.mark.parametrize("termination", [False, True])
def test_udp_draining_target(berth, l4, termination):
    """A flow of a deregistered target keeps reaching it during the delay while new flows go elsewhere; with connection_termination the flow ends at the delay's end and its next datagram goes to another target."""
    a, b = l4.udp("127.0.0.2"), l4.udp("127.0.0.3")
    lb = berth(nlb_config([a.addr, b.addr], protocol="UDP", group={
        "deregistration_delay": "1s", "connection_termination": termination}))
    c = _flow_on(lb, a.addr)
    change_targets(lb, "deregister", [a.addr])
    t0 = time.monotonic()
    time.sleep(0.2)
    assert tag_of(udp_ask(c, dest(lb), b"during")[0]) == a.addr
    others = [udp_client() for _ in range(10)]
    assert {tag_of(udp_ask(o, dest(lb), b"new")[0]) for o in others} == {b.addr}
    time.sleep(max(0, 2.6 - (time.monotonic() - t0)))  # delay (1s) plus a sweep or two
    after = tag_of(udp_ask(c, dest(lb), b"after")[0])
    assert after == (b.addr if termination else a.addr), (
        "after the delay the flow went to %s (connection_termination %s)" % (after, termination))
    for s in others + [c]:
        s.close()


def test_udp_flows_of_unhealthy_target_move(berth, l4):
    """When a target fails its TCP health checks its UDP flows end and their next datagrams go to a healthy target."""
    pa, pb = free_port("127.0.0.2"), free_port("127.0.0.3")
    a, b = l4.udp("127.0.0.2", port=pa), l4.udp("127.0.0.3", port=pb)
    ha = l4.tcp("127.0.0.2", port=pa)  # the TCP health check probes the traffic port
    l4.tcp("127.0.0.3", port=pb)
    lb = berth(nlb_config([a.addr, b.addr], protocol="UDP", group={
        "health_check": {"protocol": "TCP", "interval": "1s", "timeout": "500ms",
                         "healthy_threshold": 2, "unhealthy_threshold": 2}}))
    view = wait_states(lb, {a.addr: "healthy", b.addr: "healthy"})
    assert view == {a.addr: "healthy", b.addr: "healthy"}, view
    c = _flow_on(lb, a.addr)
    ha.stop_listening()
    view = wait_states(lb, {a.addr: "unhealthy"})
    assert view[a.addr] == "unhealthy", view
    time.sleep(1.2)  # one sweep ends the flow
    assert tag_of(udp_ask(c, dest(lb), b"moved?")[0]) == b.addr
    c.close()


def test_udp_two_workers_keep_flows(berth, l4):
    """With two workers every flow still gets all its answers and keeps one target."""
    ts = [l4.udp("127.0.0.%d" % i) for i in (2, 3)]
    cfg = nlb_config([t.addr for t in ts], protocol="UDP")
    cfg["workers"] = 2
    lb = berth(cfg)
    clients = [udp_client() for _ in range(30)]
    for c in clients:
        tags = {tag_of(udp_ask(c, dest(lb), b"m%d" % i)[0]) for i in range(4)}
        assert len(tags) == 1, "one flow reached %s" % tags
    assert metric(lb, "berth_udp_flows", {"listener": "l4"}) == 30
    for c in clients:
        c.close()
