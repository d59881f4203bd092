# SPDX-License-Identifier: MIT
"""One berth per control socket and per address: a second berth on the same control socket or
the same listener address refuses to start and leaves the first untouched; a stale socket file
is replaced; berth never removes a socket file it did not create; sharing an address takes
reuse_port on purpose."""

import os
import socket

from conftest import start_fails
from httpwire import fetch


def test_second_berth_on_same_control_socket_exits(berth, backend, http_config, tmp_path):
    """A second berth given the running one's control socket exits 1 with a clear error; the first keeps its socket file (same inode) and keeps answering, and its port is not shared."""
    b = backend()
    first = berth(http_config([b.addr]))
    inode = os.stat(first.sock_path).st_ino
    cfg = http_config([b.addr])
    cfg["control"] = {"socket": first.sock_path}
    err = start_fails(berth, cfg)
    assert "another berth runs on it" in err, err
    assert os.stat(first.sock_path).st_ino == inode
    assert first.ctl("GET", "/healthz")[0] == 200
    assert first.ctl("GET", "/v1/target-groups")[0] == 200
    assert fetch(first.port, "GET", "/").status == 200
    assert first.stop() == 0
    assert not os.path.exists(first.sock_path)


def test_stale_control_socket_is_replaced(berth, backend, http_config, tmp_path):
    """A socket file nothing answers on (left by a crash) is replaced at start."""
    b = backend()
    path = str(tmp_path / "berth.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # the file stays, nothing listens
    lb = berth(http_config([b.addr]))
    assert lb.sock_path == path
    assert lb.ctl("GET", "/healthz")[0] == 200


def test_control_path_that_is_not_a_socket_refused(berth, backend, http_config, tmp_path):
    """A regular file at the control socket path is never deleted: berth refuses to start."""
    b = backend()
    path = tmp_path / "berth.sock"
    path.write_text("precious\n")
    err = start_fails(berth, http_config([b.addr]))
    assert "is not a socket" in err, err
    assert path.read_text() == "precious\n"


def test_socket_replaced_by_another_process_is_not_removed(berth, backend, http_config,
                                                           tmp_path):
    """When the socket file was replaced while berth ran, berth's exit leaves the new one alone."""
    b = backend()
    lb = berth(http_config([b.addr]))
    os.unlink(lb.sock_path)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(lb.sock_path)
    other.listen(1)
    inode = os.stat(lb.sock_path).st_ino
    try:
        assert lb.stop() == 0
        assert os.path.exists(lb.sock_path) and os.stat(lb.sock_path).st_ino == inode
    finally:
        other.close()


def test_second_berth_on_same_port_exits_unless_shared(berth, backend, http_config, tmp_path):
    """Without reuse_port a second berth on the same listener address exits 1 (the kernel would otherwise split connections between them); with reuse_port: true on both, both run."""
    b = backend()
    cfg = http_config([b.addr])
    first = berth(cfg)
    cfg2 = http_config([b.addr])
    cfg2["listeners"][0]["bind"] = "127.0.0.1:%d" % first.port
    cfg2["control"] = {"socket": str(tmp_path / "second.sock")}
    err = start_fails(berth, cfg2)
    assert "another process listens there" in err and "reuse_port" in err, err
    assert fetch(first.port, "GET", "/").status == 200
    assert first.stop() == 0
    cfg["listeners"][0]["bind"] = cfg2["listeners"][0]["bind"]
    cfg["listeners"][0]["reuse_port"] = True
    cfg2["listeners"][0]["reuse_port"] = True
    a = berth(cfg)
    b2 = berth(cfg2)
    assert a.alive() and b2.alive()
    assert fetch(a.port, "GET", "/").status == 200


def test_udp_listener_not_shared_by_default(berth, tmp_path):
    """The same rule holds for a UDP listener."""
    from conftest import free_port
    port = free_port()
    text = """workers: 1
listeners:
  - {name: dns, protocol: UDP, bind: "127.0.0.1:%d", default_action: {forward: {target_groups: [{name: u}]}}}
target_groups:
  - {name: u, protocol: UDP, health_check: {enabled: false}, targets: []}
""" % port
    berth(text)
    second = text.replace("workers: 1", "control: {socket: %s}\nworkers: 1"
                          % (tmp_path / "second.sock"))
    lb = berth(second, wait_ready=False)
    rc = lb.proc.wait(timeout=2)
    assert rc == 1 and "another process listens there" in lb.stderr, lb.stderr
