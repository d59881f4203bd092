# SPDX-License-Identifier: MIT
"""HTTP/2 and gRPC to targets: groups with protocol_version GRPC or HTTP2 reach their
targets over pooled, multiplexed HTTP/2 connections (h2c, or h2 over TLS). Real gRPC
servers and clients (python3-grpcio, a .proto compiled at test time by grpcenv), and
nghttpd (nghttp2-server) as a plain HTTP/2 target."""

import os
import shutil
import socket
import subprocess
import threading
import time

import grpc
import pytest

import h2wire
from conftest import free_port, make_http_config, metric
from grpcenv import MuteH2Server, Msg, Server, channel, pb_grpc, wait_until
from test_tls import make_cert


def grpc_config(targets, version="GRPC", protocol="HTTP", **listener):
    cfg = make_http_config(targets, h2c=True, **listener)
    g = cfg["target_groups"][0]
    g["protocol"] = protocol
    g["protocol_version"] = version
    return cfg


@pytest.fixture
def grpc_server():
    started = []
    counter = [20]

    def make(name, host=None, **kw):
        if host is None:
            host = "127.0.0.%d" % counter[0]
            counter[0] += 1
        s = Server(name, host=host, **kw)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


def stub_for(lb, listener="web"):
    ch = channel(lb.ports[listener])
    return ch, pb_grpc.EchoStub(ch)


def established_to(addr):
    """Established TCP connections to <addr> (host:port), as ss sees them."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "dst", addr],
                         stdout=subprocess.PIPE, text=True).stdout
    return len([l for l in out.splitlines() if l.strip()])


def post(c, path, body, headers):
    sid = c.request("POST", path, body=body, headers=headers)
    c.wait([sid])
    return c.streams[sid]


# ---- the four call kinds ----

def test_four_call_kinds_with_metadata_and_trailers(berth, grpc_server):
    srv = grpc_server("a")
    lb = berth(grpc_config([srv.addr]))
    ch, stub = stub_for(lb)
    with ch:
        md = (("x-echo", "v1"),)
        r, call = stub.Unary.with_call(Msg(text="hi", n=3), metadata=md, timeout=5)
        assert (r.text, r.n, r.server) == ("hi", 3, "a")
        assert dict(call.initial_metadata())["x-echo"] == "v1"
        assert dict(call.trailing_metadata())["x-trailer"] == "t-v1"
        assert call.code() == grpc.StatusCode.OK

        it = stub.ServerStream(Msg(text="s", n=5), metadata=md, timeout=5)
        assert [m.text for m in it] == ["s-%d" % i for i in range(5)]
        assert dict(it.trailing_metadata())["x-trailer"] == "t-v1"

        r, call = stub.ClientStream.with_call(iter([Msg(text=t) for t in "abcd"]), metadata=md,
                                              timeout=5)
        assert (r.text, r.n) == ("a+b+c+d", 4)
        assert dict(call.trailing_metadata())["x-trailer"] == "t-v1"

        # bidirectional: each reply comes back before the next message is sent
        q = [Msg(text="m%d" % i, n=i) for i in range(5)]
        replies = []
        gate = threading.Event()

        def requests():
            for m in q:
                gate.clear()
                yield m
                assert gate.wait(5), "no reply before the next message"

        for reply in stub.Bidi(requests(), metadata=md, timeout=10):
            replies.append(reply.text)
            gate.set()
        assert replies == ["M%d" % i for i in range(5)]

        # an error status and its message pass as the target sent them
        with pytest.raises(grpc.RpcError) as e:
            stub.Unary(Msg(text="fail"), timeout=5)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert e.value.details() == "no such thing"
    # the target saw HTTP/2 with berth's headers among the metadata
    seen = srv.metadata[0]
    assert seen["x-echo"] == "v1"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert len(seen["x-request-id"]) == 32
    log = lb.access_log(expect=6)
    assert all(e["request"].endswith(" HTTP/2.0") and e["target"] == srv.addr for e in log)
    # each call's grpc-status, in the access log and the group's metrics
    assert [e["grpc_status"] for e in log] == [0, 0, 0, 0, 5], log
    assert metric(lb, "berth_grpc_responses_total", target_group="app", code="OK") == 4
    assert metric(lb, "berth_grpc_responses_total", target_group="app", code="NOT_FOUND") == 1


def test_grpc_over_tls_to_target(berth, grpc_server, tmp_path):
    """An HTTPS group negotiates h2 by ALPN with a TLS gRPC server."""
    cert, key = make_cert(tmp_path, "grpc", "grpc.example.com", ["grpc.example.com"])
    srv = grpc_server("tls", tls=(cert, key))
    lb = berth(grpc_config([srv.addr], protocol="HTTPS"))
    ch, stub = stub_for(lb)
    with ch:
        assert stub.Unary(Msg(text="secure"), timeout=5).server == "tls"
        assert [m.n for m in stub.ServerStream(Msg(text="s", n=3), timeout=5)] == [0, 1, 2]
    assert srv.metadata[0]["x-forwarded-proto"] == "http"


# ---- deadlines, cancellation, timeouts ----

def test_deadline_expires_at_target(berth, grpc_server):
    srv = grpc_server("slow")
    lb = berth(grpc_config([srv.addr]))
    ch, stub = stub_for(lb)
    with ch:
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            stub.Unary(Msg(text="late", sleep=5), timeout=0.5)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 2
    # the target learns the call is over long before its 5 s of work
    assert wait_until(lambda: "late" in srv.cancelled, timeout=3), srv.cancelled


def test_berth_enforces_grpc_timeout_itself(berth):
    """A target that ignores grpc-timeout and a client that never cancels (raw HTTP/2 on
    both sides): berth ends the call with DEADLINE_EXCEEDED at the deadline and cancels the
    target's stream (RST_STREAM CANCEL)."""
    mute = MuteH2Server("127.0.0.30")
    try:
        lb = berth(grpc_config([mute.addr]))
        c = h2wire.Client(lb.ports["web"])
        t0 = time.monotonic()
        st = post(c, "/berthtest.Echo/Unary", b"\0\0\0\0\0",
                  [("content-type", "application/grpc"), ("te", "trailers"),
                   ("grpc-timeout", "400m")])
        took = time.monotonic() - t0
        c.close()
        assert st["headers"][":status"] == "200"
        assert st["headers"]["grpc-status"] == "4", st["headers"]
        assert 0.35 < took < 2.5, took
        assert mute.requests and mute.requests[0]["grpc-timeout"] == "400m"
        assert wait_until(lambda: mute.resets == [8], timeout=3), mute.resets  # CANCEL
        (e,) = lb.access_log(expect=1)
        assert e["grpc_status"] == 4 and e["elb_status_code"] == 504, e
        assert metric(lb, "berth_grpc_responses_total", target_group="app",
                      code="DEADLINE_EXCEEDED") == 1
    finally:
        mute.stop()


def test_oversized_answer_head_from_target_is_502(berth):
    """A target whose answer head is 400 KB: berth resets that stream and answers 502
    without holding the whole head; the connection serves the next request."""
    def huge(conn, sid):
        conn.send_headers(sid, [(":status", "200")] +
                          [("x-big-%d" % i, "v" * 1000) for i in range(400)], end_stream=True)

    bad = MuteH2Server("127.0.0.32", respond=huge)
    try:
        lb = berth(grpc_config([bad.addr], version="HTTP2"))
        for _ in range(2):
            p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                "http://127.0.0.1:%d/" % lb.ports["web"]],
                               stdout=subprocess.PIPE, text=True, timeout=20)
            assert p.stdout == "502", p.stdout
        # cut off while the head arrived (the stream failed), not read whole and refused
        log = lb.access_log(expect=2)
        assert [e["error_reason"] for e in log] == ["target reset the connection"] * 2, log
    finally:
        bad.stop()


def test_client_cancellation_reaches_target(berth, grpc_server):
    srv = grpc_server("stream")
    lb = berth(grpc_config([srv.addr]))
    ch, stub = stub_for(lb)
    with ch:
        it = stub.ServerStream(Msg(text="long", n=1000, sleep=0.05), timeout=30)
        assert next(it).text == "long-0"
        it.cancel()
    assert wait_until(lambda: "long" in srv.cancelled, timeout=5), srv.cancelled


def test_long_stream_not_cut_by_idle_timeout(berth, grpc_server):
    """Messages keep flowing for longer than the listener's idle timeout."""
    srv = grpc_server("ticker")
    lb = berth(grpc_config([srv.addr], idle_timeout="1s"))
    ch, stub = stub_for(lb)
    with ch:
        t0 = time.monotonic()
        got = [m.n for m in stub.ServerStream(Msg(text="tick", n=12, sleep=0.25), timeout=20)]
        assert got == list(range(12))
        assert time.monotonic() - t0 > 2.5


def test_target_timeout_is_unavailable(berth, grpc_server):
    srv = grpc_server("mute")
    lb = berth(grpc_config([srv.addr], idle_timeout="1s"))
    ch, stub = stub_for(lb)
    with ch:
        with pytest.raises(grpc.RpcError) as e:
            stub.Unary(Msg(text="mute", sleep=4), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "504" in e.value.details()


# ---- answers berth gives gRPC clients ----

def test_grpc_answers_for_no_target_and_wrong_content_type(berth, grpc_server):
    srv = grpc_server("a")
    cfg = grpc_config([srv.addr])
    cfg["target_groups"].append({"name": "empty", "protocol": "HTTP", "protocol_version": "GRPC",
                                 "health_check": {"enabled": False}, "targets": []})
    cfg["listeners"][0]["rules"] = [
        {"priority": 1, "conditions": {"path": ["/empty.*"]},
         "action": {"forward": {"target_groups": [{"name": "empty"}]}}}]
    lb = berth(cfg)
    port = lb.ports["web"]
    with channel(port) as ch:
        call = ch.unary_unary("/empty.Svc/Call")
        with pytest.raises(grpc.RpcError) as e:
            call(b"", timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "503" in e.value.details()
    # not gRPC: 464 Incompatible Protocol, as ELB, over HTTP/2 and HTTP/1.1
    c = h2wire.Client(port)
    st = post(c, "/berthtest.Echo/Unary", b"{}", [("content-type", "application/json")])
    assert st["headers"][":status"] == "464"
    # a gRPC client reads berth's 464 as a gRPC status
    st = c.get("/berthtest.Echo/Unary", headers=[("content-type", "application/grpc")])
    assert st["headers"][":status"] == "200"
    assert st["headers"]["grpc-status"] == "2"
    assert "464" in st["headers"]["grpc-message"]
    c.close()
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                          "http://127.0.0.1:%d/x" % port], stdout=subprocess.PIPE, text=True)
    assert out.stdout == "464"
    assert srv.calls == 0
    assert metric(lb, "berth_grpc_responses_total", target_group="empty",
                  code="UNAVAILABLE") == 1
    log = lb.access_log(expect=4)
    assert [e["grpc_status"] for e in log] == [14, "-", 2, "-"], log


# ---- many streams, restarts, GOAWAY ----

def test_thousand_concurrent_streams_over_one_connection(berth, grpc_server):
    """1,000 calls in flight at once on one client connection, spread across two targets
    over a few multiplexed target connections."""
    a = grpc_server("a", workers=1000)
    b = grpc_server("b", workers=1000)
    arrived = [0]
    lock = threading.Lock()
    everyone = threading.Event()

    def gate(req):
        with lock:
            arrived[0] += 1
            if arrived[0] == 1000:
                everyone.set()
        everyone.wait(30)

    a.gate = b.gate = gate
    cfg = grpc_config([a.addr, b.addr], http2={"max_concurrent_streams": 1000})
    lb = berth(cfg)
    ch, stub = stub_for(lb)
    with ch:
        futs = [stub.Unary.future(Msg(text="c%d" % i, n=i), timeout=60) for i in range(1000)]
        assert everyone.wait(40), "only %d calls reached the targets at once" % arrived[0]
        results = [f.result() for f in futs]
    assert sorted(r.n for r in results) == list(range(1000))
    assert a.calls + b.calls == 1000
    assert a.calls > 300 and b.calls > 300, (a.calls, b.calls)
    assert metric(lb, "berth_new_connections_total", listener="web") == 1


def test_least_outstanding_counts_streams(berth, grpc_server):
    """Least outstanding requests over multiplexed connections counts calls in flight
    (streams), not connections: a target holding calls gets no more while the other is idle."""
    a = grpc_server("held")
    b = grpc_server("quick")
    release = threading.Event()
    a.gate = lambda req: release.wait(20)
    cfg = grpc_config([a.addr, b.addr])
    cfg["target_groups"][0]["algorithm"] = "least_outstanding_requests"
    lb = berth(cfg)
    ch, stub = stub_for(lb)
    with ch:
        held = [stub.Unary.future(Msg(text="h%d" % i), timeout=30) for i in range(3)]
        assert wait_until(lambda: a.calls >= 1 and b.calls + a.calls >= 3)
        quick = [stub.Unary(Msg(text="q%d" % i), timeout=10).server for i in range(20)]
        release.set()
        assert all(f.result().text.startswith("h") for f in held)
    assert quick == ["quick"] * 20, quick


def test_target_restart_mid_stream(berth, grpc_server):
    srv = grpc_server("first")
    host, port = srv.host, srv.port
    lb = berth(grpc_config([srv.addr]))
    ch, stub = stub_for(lb)
    with ch:
        it = stub.ServerStream(Msg(text="r", n=100, sleep=0.1), timeout=30)
        assert next(it).n == 0
        srv.stop(0)
        with pytest.raises(grpc.RpcError) as e:
            for _ in it:
                pass
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
        again = grpc_server("second", host=host, port=port)
        assert stub.Unary(Msg(text="new"), timeout=5).server == "second"
        assert again.calls == 1


def test_failed_connect_goes_to_another_target(berth, grpc_server):
    """A target nobody listens on: its HTTP/2 connection fails before it is up, and the
    calls waiting for it go to the other target, as after a failed HTTP/1.1 connect."""
    from backends import refused_addr
    good = grpc_server("good")
    dead = refused_addr("127.0.0.31")
    lb = berth(grpc_config([dead, good.addr]))
    ch, stub = stub_for(lb)
    with ch:
        futs = [stub.Unary.future(Msg(text="r%d" % i), timeout=10) for i in range(20)]
        assert all(f.result().server == "good" for f in futs)
        for _ in range(4):  # sequential calls too, each landing on the dead one in turn
            assert stub.Unary(Msg(text="s"), timeout=5).server == "good"
    assert metric(lb, "berth_target_connection_errors_total", target_group="app") >= 1


def test_goaway_lets_open_streams_finish(berth, grpc_server):
    """A target that stops gracefully (GOAWAY) finishes the calls in flight; new calls
    go to the other target."""
    a = grpc_server("a")
    b = grpc_server("b")
    lb = berth(grpc_config([a.addr, b.addr]))
    ch, stub = stub_for(lb)
    with ch:
        # warm both connections
        servers = {stub.Unary(Msg(text="w"), timeout=5).server for _ in range(4)}
        assert servers == {"a", "b"}
        slow = [stub.Unary.future(Msg(text="slow", sleep=1.0), timeout=10) for _ in range(4)]
        assert wait_until(lambda: a.calls + b.calls >= 8)
        stopper = threading.Thread(target=a.stop, args=(5,))
        stopper.start()
        assert all(f.result().text == "slow" for f in slow)
        stopper.join()
        after = [stub.Unary(Msg(text="after"), timeout=5).server for _ in range(6)]
        assert after == ["b"] * 6


# ---- HTTP2 groups, and HTTP1 behind HTTP/2 clients ----

def port_open(host, port):
    try:
        socket.create_connection((host, port), 1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def nghttpd(tmp_path):
    """nghttpd (Debian nghttp2-server) serving tmp_path/www over h2c on 127.0.0.40."""
    if shutil.which("nghttpd") is None:
        pytest.skip("nghttpd not installed (nghttp2-server)")
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello.txt").write_bytes(b"hello over h2\n")
    (www / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    # a gRPC answer as a file: one message (Msg{text: "static"}); nghttpd adds the trailer
    (www / "berthtest.Echo").mkdir()
    reply = Msg(text="static").SerializeToString()
    (www / "berthtest.Echo" / "Unary").write_bytes(b"\0" + len(reply).to_bytes(4, "big") + reply)
    port = free_port("127.0.0.40")
    p = subprocess.Popen(["nghttpd", "--no-tls", "--address=127.0.0.40", "-d", str(www),
                          "--trailer", "grpc-status: 0", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_until(lambda: port_open("127.0.0.40", port), timeout=5)
    yield "127.0.0.40:%d" % port, www
    p.terminate()
    p.wait(5)


def curl(*args):
    return subprocess.run(["curl", "-sS", "-m", "20", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)


def test_http2_group_speaks_h2c_to_target(berth, nghttpd):
    addr, www = nghttpd
    lb = berth(grpc_config([addr], version="HTTP2"))
    base = "http://127.0.0.1:%d" % lb.ports["web"]
    # an HTTP/1.1 client and an HTTP/2 client, both to an HTTP/2-only target
    p = curl("--http1.1", base + "/hello.txt")
    assert p.stdout == b"hello over h2\n", p.stderr
    p = curl("--http2-prior-knowledge", base + "/hello.txt")
    assert p.stdout == b"hello over h2\n", p.stderr
    p = curl("--http2-prior-knowledge", base + "/big.bin")
    assert p.stdout == (www / "big.bin").read_bytes()
    p = curl("--http1.1", "-w", "%{http_code}", "-o", "/dev/null", base + "/missing")
    assert p.stdout == b"404"
    log = lb.access_log(expect=4)
    assert [e["target_status_code"] for e in log] == [200, 200, 200, 404]


def test_grpc_trailers_after_a_length_delimited_answer(berth, nghttpd):
    """nghttpd answers with content-length and then trailers (grpc-status): the trailers
    still reach the gRPC client."""
    addr, _ = nghttpd
    lb = berth(grpc_config([addr]))
    ch, stub = stub_for(lb)
    with ch:
        r, call = stub.Unary.with_call(Msg(text="x"), timeout=5)
        assert r.text == "static" and call.code() == grpc.StatusCode.OK
    (e,) = lb.access_log(expect=1)
    assert e["grpc_status"] == 0, e


def test_http2_group_many_streams_share_a_connection(berth, nghttpd):
    """h2load sends 40 streams at once on one connection; berth carries them to the target
    on one multiplexed connection (curl's --parallel over h2c is broken in Debian 12's
    7.88, even straight to nghttpd)."""
    if shutil.which("h2load") is None:
        pytest.skip("h2load not installed (nghttp2-client)")
    addr, _ = nghttpd
    lb = berth(grpc_config([addr], version="HTTP2"))
    p = subprocess.run(["h2load", "-n", "400", "-c", "1", "-m", "40",
                        "http://127.0.0.1:%d/hello.txt" % lb.ports["web"]],
                       stdout=subprocess.PIPE, text=True, timeout=60)
    assert "400 succeeded, 0 failed" in p.stdout, p.stdout
    assert "status codes: 400 2xx" in p.stdout, p.stdout
    assert established_to(addr) == 1


def test_config_refuses_protocol_version_mismatches(berth, tmp_path):
    from conftest import start_fails
    cfg = make_http_config(["127.0.0.2:80"])
    cfg["target_groups"][0]["protocol_version"] = "HTTP3"
    err = start_fails(berth, cfg)
    assert "expected HTTP1, HTTP2 or GRPC" in err, err
    cfg["target_groups"][0]["protocol_version"] = "GRPC"
    cfg["target_groups"][0]["health_check"] = {"matcher": {"http_code": "200"}}
    err = start_fails(berth, cfg)
    assert "its protocol_version is GRPC" in err, err
    cfg["target_groups"][0]["health_check"] = {"matcher": {"grpc_code": "100"}}
    err = start_fails(berth, cfg)
    assert "invalid grpc_code matcher" in err, err


# ---- gRPC and HTTP/2 health checks ----

from test_health_active import th, wait_state  # noqa: E402


def checked(cfg, **hc):
    check = {"enabled": True, "interval": "1s", "timeout": "500ms", "healthy_threshold": 2,
             "unhealthy_threshold": 2}
    check.update(hc)
    cfg["target_groups"][0]["health_check"] = check
    return cfg


def test_grpc_health_check_alb_default(berth, grpc_server):
    """A GRPC group checks /AWS.ALB/healthcheck and expects UNIMPLEMENTED (12), which any
    live gRPC server answers; a stopped server turns unhealthy and comes back."""
    srv = grpc_server("hc")
    host, port = srv.host, srv.port
    lb = berth(checked(grpc_config([srv.addr])))
    wait_state(lb, srv.addr, "healthy", 6)
    srv.stop(0)
    health, _ = wait_state(lb, srv.addr, "unhealthy", 6)
    assert health["Reason"] == "Target.FailedHealthChecks", health
    again = grpc_server("hc2", host=host, port=port)
    wait_state(lb, again.addr, "healthy", 6)
    ch, stub = stub_for(lb)
    with ch:
        assert stub.Unary(Msg(text="x"), timeout=5).server == "hc2"
    # a matcher the server does not answer with
    lb.stop()
    lb = berth(checked(grpc_config([again.addr]), matcher={"grpc_code": "0"}))
    health, _ = wait_state(lb, again.addr, "unhealthy", 6)
    assert health["Reason"] == "Target.ResponseCodeMismatch"
    assert "gRPC codes: [12]" in health["Description"], health


def test_grpc_health_check_standard_protocol(berth, grpc_server):
    srv = grpc_server("std")
    lb = berth(checked(grpc_config([srv.addr]), path="/grpc.health.v1.Health/Check"))
    wait_state(lb, srv.addr, "healthy", 6)
    assert srv.health_checks >= 1
    from grpcenv import health_pb
    srv.serving = health_pb.HealthCheckResponse.NOT_SERVING
    health, _ = wait_state(lb, srv.addr, "unhealthy", 6)
    assert health["Reason"] == "Target.ResponseCodeMismatch", health
    assert "NOT_SERVING" in health["Description"], health
    srv.serving = health_pb.HealthCheckResponse.SERVING
    wait_state(lb, srv.addr, "healthy", 6)


def test_grpc_health_check_over_tls(berth, grpc_server, tmp_path):
    cert, key = make_cert(tmp_path, "hc", "hc.example.com", ["hc.example.com"])
    srv = grpc_server("tls", tls=(cert, key))
    lb = berth(checked(grpc_config([srv.addr], protocol="HTTPS"), protocol="HTTPS",
                       path="/grpc.health.v1.Health/Check"))
    wait_state(lb, srv.addr, "healthy", 6)


def test_http2_health_check(berth, nghttpd):
    addr, _ = nghttpd
    lb = berth(checked(grpc_config([addr], version="HTTP2"), path="/hello.txt"))
    wait_state(lb, addr, "healthy", 6)
    lb.stop()
    lb = berth(checked(grpc_config([addr], version="HTTP2"), path="/missing"))
    health, _ = wait_state(lb, addr, "unhealthy", 6)
    assert "[404]" in health["Description"], health
