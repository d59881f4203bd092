# SPDX-License-Identifier: MIT
"""PROXY protocol v2 toward targets (proxy_protocol_v2: true): the exact header in front of
a TCP connection's bytes and in front of every UDP datagram, over IPv4 and IPv6, and no
header when the option is off; on a wildcard listener the header names the dialled address."""

import socket
import struct
import time

import pytest

from l4servers import l4_fixture  # noqa: F401 (the l4 fixture)
from l4servers import (nlb_config, tcp_client, udp_client, udp_ask, recv_line, recv_exact,
                       ipv6_available, free_port)

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def expected_header(src, dst, transport):
    """The PROXY v2 header (command PROXY) for a connection from <src> to <dst> ((host, port))."""
    v6 = ":" in src[0]
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    proto = {socket.SOCK_STREAM: 1, socket.SOCK_DGRAM: 2}[transport]
    addrs = (socket.inet_pton(fam, src[0]) + socket.inet_pton(fam, dst[0])
             + struct.pack(">HH", src[1], dst[1]))
    fam_byte = (0x20 if v6 else 0x10) | proto
    return SIG + bytes([0x21, fam_byte]) + struct.pack(">H", len(addrs)) + addrs


def listener_addr(lb, host):
    return (host, lb.port)


def wait_data(conn, n, timeout=3.0):
    deadline = time.monotonic() + timeout
    while len(conn.data) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return bytes(conn.data)


def need_ipv6():
    if not ipv6_available():
        pytest.skip("IPv6 loopback ::1 is not available here")


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_pp2_tcp_header(berth, l4, family):
    """The target receives the PROXY v2 header naming the client and the listener, then the client's bytes, and its answers reach the client unchanged."""
    if family == "ipv6":
        need_ipv6()
    host, thost = ("::1", "::1") if family == "ipv6" else ("127.0.0.1", "127.0.0.2")
    t = l4.tcp(thost)
    lb = berth(nlb_config([t.addr], host=host, group={"proxy_protocol_v2": True}))
    s = tcp_client(listener_addr(lb, host))
    assert recv_line(s) == (t.addr + "\n").encode()  # nothing is added toward the client
    s.sendall(b"payload")
    want = expected_header(s.getsockname()[:2], listener_addr(lb, host), socket.SOCK_STREAM)
    assert len(want) == (52 if family == "ipv6" else 28)
    got = wait_data(t.wait_conns(1)[0], len(want) + 7)
    assert got[:len(want)] == want, "header %s, expected %s" % (got[:len(want)].hex(), want.hex())
    assert got[len(want):] == b"payload"
    # the echo carries the header back too: the client sees exactly the target's bytes
    assert recv_exact(s, len(want) + 7) == want + b"payload"
    s.close()


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_pp2_udp_header_on_every_datagram(berth, l4, family):
    """Every datagram of a UDP flow reaches the target with the PROXY v2 header for UDP in front, and the answers come back without it."""
    if family == "ipv6":
        need_ipv6()
    host, thost = ("::1", "::1") if family == "ipv6" else ("127.0.0.1", "127.0.0.2")
    t = l4.udp(thost, tag=False)
    lb = berth(nlb_config([t.addr], protocol="UDP", host=host,
                          group={"proxy_protocol_v2": True}))
    c = udp_client(host)
    want = expected_header(c.getsockname()[:2], listener_addr(lb, host), socket.SOCK_DGRAM)
    assert len(want) == (52 if family == "ipv6" else 28)
    for i in range(3):
        data, src = udp_ask(c, listener_addr(lb, host), b"dgram%d" % i)
        assert data == want + b"dgram%d" % i, data  # the target echoes what it got
        assert src == listener_addr(lb, host)
    got = [d for d, _ in t.datagrams()]
    assert got == [want + b"dgram%d" % i for i in range(3)], [d.hex() for d in got]
    c.close()


def test_no_header_when_off(berth, l4):
    """Without proxy_protocol_v2 the target's first bytes are the client's own."""
    t = l4.tcp("127.0.0.2")
    lb = berth(nlb_config([t.addr]))
    s = tcp_client(("127.0.0.1", lb.port))
    recv_line(s)
    s.sendall(b"plain")
    assert recv_exact(s, 5) == b"plain"
    assert bytes(t.wait_conns(1)[0].data) == b"plain"
    s.close()


def test_pp2_tcp_header_per_connection(berth, l4):
    """Each of several connections carries its own client port in its header."""
    t = l4.tcp("127.0.0.2", banner=False)
    lb = berth(nlb_config([t.addr], group={"proxy_protocol_v2": True}))
    socks = [tcp_client(("127.0.0.1", lb.port), src=("127.0.1.%d" % (i + 1), 0))
             for i in range(5)]
    wants = {}
    for s in socks:
        s.sendall(b"!")
        wants[s.getsockname()[:2]] = expected_header(s.getsockname()[:2],
                                                     ("127.0.0.1", lb.port), socket.SOCK_STREAM)
    for s in socks:
        recv_exact(s, 29)
    conns = t.wait_conns(5)
    headers = {bytes(c.data[:28]) for c in conns}
    assert headers == set(wants.values())
    for s in socks:
        s.close()


@pytest.mark.parametrize("proto", ["TCP", "UDP"])
def test_pp2_wildcard_listener_names_dialled_address(berth, l4, proto):
    """On a 0.0.0.0 listener the header's destination is the address and port the client dialled, not 0.0.0.0."""
    port = free_port("127.0.0.1")
    if proto == "TCP":
        t = l4.tcp("127.0.0.2", banner=False)
    else:
        t = l4.udp("127.0.0.2", tag=False)
    cfg = nlb_config([t.addr], protocol=proto, group={"proxy_protocol_v2": True})
    cfg["listeners"][0]["bind"] = "0.0.0.0:%d" % port
    berth(cfg)
    dialled = ("127.0.0.9", port)
    if proto == "TCP":
        s = tcp_client(dialled)
        s.sendall(b"x")
        want = expected_header(s.getsockname()[:2], dialled, socket.SOCK_STREAM)
        got = wait_data(t.wait_conns(1)[0], 29)[:28]
    else:
        s = udp_client()
        want = expected_header(s.getsockname()[:2], dialled, socket.SOCK_DGRAM)
        s.sendto(b"x", dialled)
        deadline = time.monotonic() + 2
        while not t.datagrams() and time.monotonic() < deadline:
            time.sleep(0.01)
        got = t.datagrams()[0][0][:28] if t.datagrams() else b""
    s.close()
    assert got == want, "header destination %s:%d, the client dialled %s:%d (header %s)" % (
        socket.inet_ntoa(got[20:24]) if len(got) == 28 else "?",
        struct.unpack(">H", got[26:28])[0] if len(got) == 28 else 0, dialled[0], dialled[1],
        got.hex())
