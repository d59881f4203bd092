# SPDX-License-Identifier: MIT
"""Several berth instances with the same config and stickiness key act as one load
balancer: an lb_cookie issued by one is honoured by another, and flow_hash sends the same
5-tuple to the same target from each."""

import collections
import os
import socket
import struct
import time

from cfgbuild import group
from httpwire import fetch
from l4servers import l4_fixture  # noqa: F401 (the l4 fixture)
from l4servers import metric, nlb_config, recv_line

from test_stickiness import cookie_value, get

LB_COOKIE = {"type": "lb_cookie", "duration": "1h"}


def sticky_config(targets, key_file):
    lst = {"name": "web", "protocol": "HTTP",
           "default_action": {"forward": {"target_groups": [{"name": "app"}]}}}
    return {"workers": 1, "cookie_key_file": key_file, "listeners": [lst],
            "target_groups": [group("app", targets, stickiness=LB_COOKIE)]}


def write_key(path, key):
    with open(path, "w") as f:
        f.write(key.hex() + "\n")
    os.chmod(path, 0o600)
    return str(path)


def test_cookie_from_one_instance_is_honoured_by_another(berth, backend, tmp_path):
    """With the same cookie_key_file, a BERTH-app cookie from instance A pins requests to the same target on instance B; with another key B ignores it."""
    bs = [backend() for _ in range(4)]
    key = write_key(tmp_path / "key", os.urandom(32))
    targets = [b.addr for b in bs]
    a = berth(sticky_config(targets, key))
    cfg_b = sticky_config(list(reversed(targets)), key)  # the order does not matter
    cfg_b["control"] = {"socket": str(tmp_path / "b.sock")}
    b = berth(cfg_b)
    cfg_o = sticky_config(targets, write_key(tmp_path / "other", os.urandom(32)))
    cfg_o["control"] = {"socket": str(tmp_path / "o.sock")}
    other = berth(cfg_o)
    pinned = collections.Counter()
    for i in range(8):
        r = get(a.port, "/a/%d" % i)
        first, value = r.header("X-Backend"), cookie_value(r, "BERTH-app")
        cookie = "BERTH-app=%s" % value
        for j in range(3):
            assert get(b.port, "/b/%d/%d" % (i, j), cookie).header("X-Backend") == first
        pinned[first] += 1
    assert len(pinned) > 1, "every first request went to one target: %r" % pinned
    # A foreign key: the cookie is ignored (requests spread) and replaced.
    r = get(a.port, "/x")
    cookie = "BERTH-app=%s" % cookie_value(r, "BERTH-app")
    seen = {get(other.port, "/o/%d" % i, cookie).header("X-Backend") for i in range(8)}
    assert len(seen) > 1, "a cookie under another key still pinned %s" % seen


def flow_targets(port, src_ports):
    """{client source port: target tag} for one TCP connection from each source port."""
    out = {}
    for sp in src_ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(5)
        s.bind(("127.0.0.1", sp))
        s.connect(("127.0.0.1", port))
        s.sendall(b"hello\n")
        out[sp] = recv_line(s).strip().decode()  # the target greets with its address
        # Reset rather than FIN: no TIME_WAIT, so the same 4-tuple can be used again.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    return out


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def new_connections(lb):
    return metric(lb, "berth_new_connections_total", {"listener": "l4"}) or 0


def test_flow_hash_agrees_across_instances(berth, l4, tmp_path):
    """Two berth processes sharing one address (SO_REUSEPORT, as behind ECMP), with the same targets in another order, send each 5-tuple to the target one instance alone chose."""
    ts = [l4.tcp("127.0.0.%d" % i) for i in (2, 3, 4, 5)]
    addrs = [t.addr for t in ts]
    cfg = nlb_config(addrs, protocol="TCP")
    cfg["listeners"][0]["reuse_port"] = True  # shared on purpose
    a = berth(cfg)
    src = free_ports(60)
    alone = flow_targets(a.port, src)
    assert len(set(alone.values())) == 4, "60 flows did not reach all 4 targets: %r" % alone
    cfg2 = nlb_config(list(reversed(addrs)), protocol="TCP")
    cfg2["listeners"][0]["bind"] = cfg["listeners"][0]["bind"]  # the same address
    cfg2["listeners"][0]["reuse_port"] = True
    cfg2["control"] = {"socket": str(tmp_path / "b.sock")}
    b = berth(cfg2)
    a0, b0 = new_connections(a), new_connections(b)
    both = flow_targets(a.port, src)
    deadline = time.monotonic() + 3  # the counters are summed from the workers when read
    while True:
        took_a, took_b = new_connections(a) - a0, new_connections(b) - b0
        if took_a + took_b == len(src) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert took_a + took_b == len(src), (took_a, took_b)
    assert took_a > 0 and took_b > 0, "the kernel gave every flow to one instance: %d / %d" % (
        took_a, took_b)
    moved = {sp: (alone[sp], both[sp]) for sp in src if alone[sp] != both[sp]}
    assert not moved, "flows went to other targets with two instances: %r" % moved
