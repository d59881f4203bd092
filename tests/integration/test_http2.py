# SPDX-License-Identifier: MIT
"""HTTP/2 to clients: negotiation (ALPN h2, h2c prior knowledge), streams routed and
forwarded as HTTP/1.1 requests, bodies both ways with checksums, many streams on one
connection, flow control and slow readers, resets, GOAWAY, limits, and the known attacks
(rapid reset, CONTINUATION floods, HPACK bombs, control-frame floods, zero windows,
protocol errors). Clients: curl (--http2, --http2-prior-knowledge) and Python's h2."""

import hashlib
import re
import os
import signal
import socket
import subprocess
import threading
import time

import hpack
import pytest

import h2wire
from conftest import make_http_config, metric
from httpwire import pattern_bytes
from test_tls import make_cert


def h2c_config(targets, **listener):
    return make_http_config(targets, h2c=True, **listener)


def curl(*args, timeout=20):
    p = subprocess.run(["curl", "-sS", "-m", str(timeout), *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout + 10)
    return p


def curl_info(url, *args):
    """(status, http_version, body) of one curl request."""
    p = curl("-w", "\n%{http_code} %{http_version}", *args, url)
    assert p.returncode == 0, p.stderr
    body, _, tail = p.stdout.rpartition(b"\n")
    code, version = tail.decode().split()
    return int(code), version, body


def goaways(lb, code, listener="web"):
    return metric(lb, "berth_http2_goaways_total", listener=listener, code=code) or 0


# ---- negotiation ----

def test_h2c_prior_knowledge_routes_by_host_and_path(berth, backend):
    a, b = backend(), backend()
    cfg = h2c_config([a.addr])
    cfg["target_groups"].append({"name": "api", "protocol": "HTTP",
                                 "health_check": {"enabled": False}, "targets": [b.addr]})
    cfg["listeners"][0]["rules"] = [
        {"priority": 1, "conditions": {"host": ["api.example.com"], "path": ["/v1/*"]},
         "action": {"forward": {"target_groups": [{"name": "api"}]}}}]
    lb = berth(cfg)
    base = "http://127.0.0.1:%d" % lb.ports["web"]
    code, ver, body = curl_info(base + "/v1/users?x=1", "--http2-prior-knowledge",
                                "-H", "Host: api.example.com")
    assert (code, ver) == (200, "2")
    assert b"/v1/users?x=1" in body and b.addr.encode() in body
    code, ver, body = curl_info(base + "/v1/users", "--http2-prior-knowledge",
                                "-H", "Host: www.example.com")
    assert (code, ver) == (200, "2") and a.addr.encode() in body
    # what the target saw: an HTTP/1.1 request with berth's headers
    seen = [r for r in b.requests if r.target == "/v1/users?x=1"][0]
    assert seen.version == "HTTP/1.1"
    assert seen.header("Host") == "api.example.com"
    assert seen.header("X-Forwarded-For") == "127.0.0.1"
    assert seen.header("X-Forwarded-Proto") == "http"
    assert seen.header("X-Forwarded-Port") == str(lb.ports["web"])
    assert len(seen.header("X-Request-Id")) == 32
    # HTTP/1.1 still works on the same listener
    code, ver, _ = curl_info(base + "/plain", "--http1.1")
    assert (code, ver) == (200, "1.1")
    log = lb.access_log(expect=3)
    h2_lines = [e for e in log if e["request"].endswith(" HTTP/2.0")]
    assert len(h2_lines) == 2, log
    assert h2_lines[0]["request"] == "GET http://api.example.com:%d/v1/users?x=1 HTTP/2.0" \
        % lb.ports["web"]
    assert metric(lb, "berth_http2_connections_total", listener="web") == 2
    assert metric(lb, "berth_http2_streams_total", listener="web") == 2


def test_h2c_is_off_by_default(berth, backend):
    a = backend()
    lb = berth(make_http_config([a.addr]))
    p = curl("--http2-prior-knowledge", "http://127.0.0.1:%d/" % lb.ports["web"])
    assert p.returncode != 0  # the preface is not an HTTP/1.1 request: 400 and close
    assert not a.requests


def test_upgrade_h2c_is_not_offered(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr]))
    code, ver, _ = curl_info("http://127.0.0.1:%d/up" % lb.ports["web"], "--http2")
    assert (code, ver) == (200, "1.1")  # curl asked for Upgrade: h2c; berth stays on 1.1
    seen = a.requests[-1]
    assert not seen.has("HTTP2-Settings") and not seen.has("Upgrade")


@pytest.fixture
def cert(tmp_path):
    return make_cert(tmp_path, "h2", "localhost", ["localhost"])


def https_cfg(cert, targets, **listener):
    cfg = make_http_config(targets, protocol="HTTPS",
                           certificates=[{"cert": cert[0], "key": cert[1]}], **listener)
    return cfg


def test_alpn_offers_h2_then_http11(berth, backend, cert):
    a = backend()
    lb = berth(https_cfg(cert, [a.addr]))
    url = "https://localhost:%d/tls" % lb.ports["web"]
    res = ["--resolve", "localhost:%d:127.0.0.1" % lb.ports["web"], "-k"]
    code, ver, body = curl_info(url, "--http2", *res)
    assert (code, ver) == (200, "2") and b"/tls" in body
    assert a.requests[-1].header("X-Forwarded-Proto") == "https"
    code, ver, _ = curl_info(url, "--http1.1", *res)
    assert (code, ver) == (200, "1.1")
    # the h2 library over TLS, too
    c = h2wire.Client(lb.ports["web"], tls=True)
    st = c.get("/lib")
    assert st["headers"][":status"] == "200" and b"/lib" in st["data"]
    c.close()


def test_http2_false_turns_h2_off(berth, backend, cert):
    a = backend()
    lb = berth(https_cfg(cert, [a.addr], http2=False))
    url = "https://localhost:%d/" % lb.ports["web"]
    code, ver, _ = curl_info(url, "--http2", "-k",
                             "--resolve", "localhost:%d:127.0.0.1" % lb.ports["web"])
    assert (code, ver) == (200, "1.1")


# ---- bodies and streams ----

def sha(b):
    return hashlib.sha256(b).hexdigest()


def test_one_mib_up_and_down_with_checksums(berth, backend, tmp_path):
    a = backend()
    lb = berth(h2c_config([a.addr]))
    base = "http://127.0.0.1:%d" % lb.ports["web"]
    n = 1 << 20
    want = pattern_bytes(n)
    for path in ("/big?n=%d" % n, "/chunked?n=%d" % n):
        code, ver, body = curl_info(base + path, "--http2-prior-knowledge")
        assert (code, ver) == (200, "2") and sha(body) == sha(want), path
    up = tmp_path / "up.bin"
    up.write_bytes(os.urandom(n))
    # with a length, and without one (streamed: chunked toward the target)
    code, ver, body = curl_info(base + "/echo", "--http2-prior-knowledge",
                                "--data-binary", "@%s" % up)
    assert (code, ver) == (200, "2") and sha(body) == sha(up.read_bytes())
    c = h2wire.Client(lb.ports["web"])
    data = os.urandom(n)
    sid = c.request("POST", "/echo", body=data)
    c.wait([sid], timeout=20)
    assert sha(bytes(c.streams[sid]["data"])) == sha(data)
    seen = a.requests[-1]
    assert seen.chunked and sha(seen.body) == sha(data)
    c.close()


def test_hundred_streams_on_one_connection_over_two_targets(berth, backend):
    a, b = backend(), backend()
    lb = berth(h2c_config([a.addr, b.addr]))
    c = h2wire.Client(lb.ports["web"])
    sids = [c.request("GET", "/s/%d" % i) for i in range(100)]
    c.wait(sids, timeout=20)
    backends = set()
    for i, sid in enumerate(sids):
        st = c.streams[sid]
        assert st["headers"][":status"] == "200"
        assert ("/s/%d" % i).encode() in st["data"]
        backends.add(st["headers"]["x-backend"])
    assert backends == {a.addr, b.addr}
    assert metric(lb, "berth_http2_connections_total", listener="web") == 1
    assert metric(lb, "berth_http2_streams_total", listener="web") == 100
    c.close()


def test_trailers_pass_both_ways(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr]))
    c = h2wire.Client(lb.ports["web"])
    sid = c.request("POST", "/echo", body=b"hello", end=False)
    c.conn.send_headers(sid, [("x-checksum", "abc")], end_stream=True)
    c.flush()
    c.wait([sid])
    assert bytes(c.streams[sid]["data"]) == b"hello"
    seen = a.requests[-1]
    assert seen.chunked and seen.body == b"hello"
    c.close()


def test_slow_reader_stalls_only_its_stream_and_memory_stays_bounded(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr]))
    c = h2wire.Client(lb.ports["web"])
    c.auto_ack = "connection"  # opens the connection's window, never the big stream's
    big = c.request("GET", "/big?n=%d" % (64 << 20))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        c.pump(0.1)
    got = len(c.streams[big]["data"])
    assert 0 < got <= 65535
    rss0 = lb.rss_kib()
    # the same connection still serves other streams (small answers fit the window left)
    c.auto_ack = True
    small = c.request("GET", "/other")
    c.wait([small])
    assert c.streams[small]["headers"][":status"] == "200"
    time.sleep(1)
    assert lb.rss_kib() - rss0 < 8 * 1024, "berth buffered the stalled answer"
    c.close()


def test_reset_of_one_stream_leaves_the_others(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr]))
    c = h2wire.Client(lb.ports["web"])
    slow = c.request("GET", "/slow?ms=1500")
    other = c.request("GET", "/slow?ms=500")
    time.sleep(0.2)
    c.conn.reset_stream(slow, error_code=8)  # CANCEL
    c.flush()
    c.wait([other])
    assert c.streams[other]["headers"][":status"] == "200"
    assert c.streams[slow]["headers"] is None
    after = c.request("GET", "/after")
    c.wait([after])
    assert c.streams[after]["headers"][":status"] == "200"
    assert metric(lb, "berth_http2_stream_resets_total", listener="web", by="client") == 1
    c.close()


# ---- berth's own answers ----

def test_own_answers_on_their_stream(berth, backend):
    a = backend()
    cfg = h2c_config([a.addr], max_header_size="1k")
    cfg["listeners"][0]["rules"] = [
        {"priority": 1, "conditions": {"path": ["/fixed"]},
         "action": {"fixed_response": {"status": 403, "content_type": "text/plain",
                                       "body": "no"}}},
        {"priority": 2, "conditions": {"path": ["/old"]},
         "action": {"redirect": {"path": "/new", "status": 301}}}]
    cfg["target_groups"].append({"name": "empty", "protocol": "HTTP",
                                 "health_check": {"enabled": False}, "targets": []})
    cfg["listeners"][0]["rules"].append(
        {"priority": 3, "conditions": {"path": ["/none"]},
         "action": {"forward": {"target_groups": [{"name": "empty"}]}}})
    lb = berth(cfg)
    c = h2wire.Client(lb.ports["web"])
    sids = {
        "fixed": c.request("GET", "/fixed"),
        "old": c.request("GET", "/old"),
        "none": c.request("GET", "/none"),
        "big": c.request("GET", "/ok", headers=[("x-big", "v" * 3000)]),
        "ok": c.request("GET", "/ok"),
    }
    c.wait(list(sids.values()))
    st = {k: c.streams[v] for k, v in sids.items()}
    assert st["fixed"]["headers"][":status"] == "403" and bytes(st["fixed"]["data"]) == b"no"
    assert st["old"]["headers"][":status"] == "301"
    assert st["old"]["headers"]["location"].endswith("/new")
    assert st["none"]["headers"][":status"] == "503"
    assert st["big"]["headers"][":status"] == "431"
    assert st["ok"]["headers"][":status"] == "200"
    for s in st.values():
        assert "connection" not in s["headers"]
    assert not c.goaway
    c.close()


def test_target_timeout_is_504_on_its_stream(berth, backend):
    slow = backend("silent")
    lb = berth(h2c_config([slow.addr], idle_timeout="1s"))
    c = h2wire.Client(lb.ports["web"])
    sid = c.request("GET", "/hang")
    c.wait([sid], timeout=5)
    assert c.streams[sid]["headers"][":status"] == "504"
    c.close()


# ---- GOAWAY ----

def test_goaway_on_shutdown_lets_open_streams_finish(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr]))
    r = h2wire.Raw(lb.ports["web"])
    r.send(h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS | h2wire.END_STREAM, 1,
                        h2wire.request_block(r.enc, "/slow?ms=800")))
    time.sleep(0.2)
    lb.proc.send_signal(signal.SIGTERM)
    frames = r.frames(timeout=5, until=lambda t, f, s, p: t == h2wire.DATA and f & 1)
    kinds = [t for t, _, _, _ in frames]
    assert h2wire.GOAWAY in kinds and h2wire.HEADERS in kinds
    assert kinds.index(h2wire.GOAWAY) < kinds.index(h2wire.HEADERS)  # the notice came first
    ga = [p for t, _, _, p in frames if t == h2wire.GOAWAY][0]
    assert int.from_bytes(ga[:4], "big") == 1 and int.from_bytes(ga[4:8], "big") == 0
    head = [p for t, _, s, p in frames if t == h2wire.HEADERS and s == 1][0]
    assert dict(hpack.Decoder().decode(head))[":status"] == "200"
    body = b"".join(p for t, _, s, p in frames if t == h2wire.DATA and s == 1)
    assert b"/slow?ms=800" in body
    assert r.closed(timeout=3)


def test_idle_connection_gets_goaway_then_close(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr], idle_timeout="1s"))
    r = h2wire.Raw(lb.ports["web"])
    t0 = time.monotonic()
    assert r.goaway(timeout=4) == "NO_ERROR"
    assert 0.8 < time.monotonic() - t0 < 3
    assert r.closed(timeout=3)


# ---- defences ----

def served_meanwhile(port):
    """A well-behaved client on its own connection, during an attack."""
    c = h2wire.Client(port)
    st = c.get("/meanwhile")
    c.close()
    return st["headers"][":status"] == "200"


def test_rapid_reset_flood_is_cut_off(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr]))
    r = h2wire.Raw(lb.ports["web"])
    sid = 1
    burst = b""
    for _ in range(1000):
        burst += h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS | h2wire.END_STREAM, sid,
                              h2wire.request_block(r.enc, "/reset"))
        burst += h2wire.frame(h2wire.RST_STREAM, 0, sid, (8).to_bytes(4, "big"))
        sid += 2
    r.send(burst)
    assert r.goaway() == "ENHANCE_YOUR_CALM"
    assert r.closed()
    assert served_meanwhile(lb.ports["web"])
    assert goaways(lb, "ENHANCE_YOUR_CALM") == 1


def test_continuation_flood_is_cut_off(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr]))
    r = h2wire.Raw(lb.ports["web"])
    block = h2wire.request_block(r.enc, "/c")
    r.send(h2wire.frame(h2wire.HEADERS, 0, 1, block))
    cont = h2wire.frame(h2wire.CONTINUATION, 0, 1, r.enc.encode([("x-a", "b" * 100)]))
    for _ in range(200):
        if not r.send(cont * 10):
            break
    assert r.goaway() in ("ENHANCE_YOUR_CALM", "PROTOCOL_ERROR")
    assert served_meanwhile(lb.ports["web"])
    assert [q.target for q in a.requests] == ["/meanwhile"]


def test_hpack_bomb_is_cut_off(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr]))
    r = h2wire.Raw(lb.ports["web"])
    # one 4000-byte header into the dynamic table, then 1-byte references to it
    first = r.enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                          (":path", "/"), ("x-bomb", "b" * 4000)])
    ref = r.enc.encode([("x-bomb", "b" * 4000)])
    assert len(ref) == 1
    block = first + ref * 12000  # 16 KiB: one frame, 48 MB of header list
    r.send(h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS | h2wire.END_STREAM, 1, block))
    assert r.goaway() == "ENHANCE_YOUR_CALM"
    assert served_meanwhile(lb.ports["web"])
    assert [q.target for q in a.requests] == ["/meanwhile"]


def test_oversized_dynamic_table_update_is_a_compression_error(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr]))
    r = h2wire.Raw(lb.ports["web"])
    # dynamic table size update to 1 MiB (we allow 4096): 0x3f then the varint
    update = bytes([0x3f]) + bytes([0xe1, 0xff, 0x3f])
    r.send(h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS | h2wire.END_STREAM, 1,
                        update + h2wire.request_block(r.enc)))
    assert r.goaway() == "COMPRESSION_ERROR"
    assert goaways(lb, "COMPRESSION_ERROR") == 1


@pytest.mark.parametrize("kind", ["settings", "ping", "empty_data", "window_update"])
def test_control_frame_floods_are_cut_off(berth, backend, kind):
    a = backend()
    lb = berth(h2c_config([a.addr]))
    r = h2wire.Raw(lb.ports["web"])
    if kind == "settings":
        one = h2wire.settings_frame([(4, 65535)])
    elif kind == "ping":
        one = h2wire.frame(h2wire.PING, 0, 0, b"12345678")
    elif kind == "empty_data":
        r.send(h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS, 1,
                            h2wire.request_block(r.enc, "/echo", method="POST")))
        one = h2wire.frame(h2wire.DATA, 0, 1)
    else:
        one = h2wire.frame(h2wire.WINDOW_UPDATE, 0, 0, (1).to_bytes(4, "big"))
    for _ in range(50):
        if not r.send(one * 100):
            break
    assert r.goaway() == "ENHANCE_YOUR_CALM"
    assert r.closed()
    assert served_meanwhile(lb.ports["web"])
    assert goaways(lb, "ENHANCE_YOUR_CALM") == 1


def test_zero_window_stall_ends_at_the_idle_timeout(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr], idle_timeout="2s"))
    r = h2wire.Raw(lb.ports["web"])
    r.send(h2wire.settings_frame([(4, 0)]))  # SETTINGS_INITIAL_WINDOW_SIZE = 0
    r.send(h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS | h2wire.END_STREAM, 1,
                        h2wire.request_block(r.enc, "/big?n=10000000")))
    frames = r.frames(timeout=6, until=lambda t, f, s, p: t == h2wire.RST_STREAM and s == 1)
    kinds = [(t, s) for t, _, s, _ in frames]
    assert (h2wire.HEADERS, 1) in kinds
    assert not any(t == h2wire.DATA for t, _ in kinds)
    assert (h2wire.RST_STREAM, 1) in kinds
    assert served_meanwhile(lb.ports["web"])


def test_stream_id_reuse_is_a_protocol_error(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr]))
    r = h2wire.Raw(lb.ports["web"])
    hd = h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS | h2wire.END_STREAM, 3,
                      h2wire.request_block(r.enc, "/first"))
    r.send(hd)
    r.frames(timeout=2, until=lambda t, f, s, p: t == h2wire.DATA and f & 1)
    r.send(h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS | h2wire.END_STREAM, 1,
                        h2wire.request_block(r.enc, "/lower")))
    code = r.goaway()
    assert code in ("PROTOCOL_ERROR", "STREAM_CLOSED")
    assert goaways(lb, "PROTOCOL_ERROR") + goaways(lb, "OTHER") == 1
    assert served_meanwhile(lb.ports["web"])


def test_garbage_after_preface_is_a_protocol_error(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr]))
    r = h2wire.Raw(lb.ports["web"])
    r.send(b"\x00\x00\x04\x63\x00\x00\x00\x00\x00" + b"\xff" * 4 +
           h2wire.frame(h2wire.DATA, 0, 0, b"x"))  # unknown type (ignored), DATA on stream 0
    assert r.goaway() == "PROTOCOL_ERROR"


def test_removed_listener_sends_goaway_and_lets_streams_finish(berth, backend):
    a = backend()
    cfg = h2c_config([a.addr])
    cfg["listeners"].append(dict(cfg["listeners"][0], name="other"))
    lb = berth(cfg)
    r = h2wire.Raw(lb.ports["web"])
    r.send(h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS | h2wire.END_STREAM, 1,
                        h2wire.request_block(r.enc, "/slow?ms=1500")))
    time.sleep(0.2)
    text = open(lb.config_path).read()
    i = text.index("  - name: web")
    j = text.index("  - name: other")
    with open(lb.config_path, "w") as f:
        f.write(text[:i] + text[j:])
    st, body = lb.ctl("POST", "/v1/reload")
    assert st == 200, body
    frames = r.frames(timeout=6, until=lambda t, f, s, p: t == h2wire.DATA and f & 1)
    kinds = [t for t, _, _, _ in frames]
    assert h2wire.GOAWAY in kinds and h2wire.DATA in kinds
    head = [p for t, _, s, p in frames if t == h2wire.HEADERS and s == 1][0]
    assert dict(hpack.Decoder().decode(head))[":status"] == "200"
    assert r.closed(timeout=3)


def test_max_concurrent_streams_refuses_the_excess(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr], http2={"max_concurrent_streams": 4}))
    r = h2wire.Raw(lb.ports["web"])
    # Before the client acknowledges the limit the excess is refused stream by stream
    # (REFUSED_STREAM: safe to retry); nghttp2 treats excess after the acknowledgement as
    # a connection error (GOAWAY PROTOCOL_ERROR), which no well-behaved client sees.
    burst = b"".join(h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS | h2wire.END_STREAM, sid,
                                  h2wire.request_block(r.enc, "/slow?ms=500"))
                     for sid in range(1, 13, 2))
    r.send(burst)
    frames = r.frames(timeout=4)
    refused = {s for t, _, s, p in frames if t == h2wire.RST_STREAM and
               int.from_bytes(p[:4], "big") == 7}  # REFUSED_STREAM
    answered = {s for t, _, s, _ in frames if t == h2wire.HEADERS}
    assert answered == {1, 3, 5, 7}
    assert refused == {9, 11}


def test_header_list_over_the_http2_limit_is_431(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr], http2={"max_header_list_size": "2k"}))
    c = h2wire.Client(lb.ports["web"])
    big = c.request("GET", "/big", headers=[("x-big", "v" * 3000)])
    ok = c.request("GET", "/ok")
    c.wait([big, ok])
    assert c.streams[big]["headers"][":status"] == "431"
    assert c.streams[ok]["headers"][":status"] == "200"
    assert [q.target for q in a.requests] == ["/ok"]
    assert not c.goaway
    c.close()


def test_ping_liveness_closes_a_silent_connection(berth, backend):
    a = backend()
    lb = berth(h2c_config([a.addr], http2={"ping_interval": "1s"}))
    r = h2wire.Raw(lb.ports["web"])  # never answers anything
    t0 = time.monotonic()
    frames = r.frames(timeout=4, until=lambda t, f, s, p: t == h2wire.PING and not f & 1)
    assert frames and frames[-1][0] == h2wire.PING
    assert r.closed(timeout=4)
    assert time.monotonic() - t0 < 6
    # a client that answers stays
    c = h2wire.Client(lb.ports["web"])
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        assert c.pump(0.2)
    assert c.get("/still")["headers"][":status"] == "200"
    c.close()


class TrailerTarget:
    """A target that answers every request chunked, with trailers after the last chunk."""

    def __init__(self, host="127.0.0.60"):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, 0))
        self.lsock.listen(16)
        self.addr = "%s:%d" % (host, self.lsock.getsockname()[1])
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        buf = b""
        with c:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                buf = buf.split(b"\r\n\r\n", 1)[1]
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                          b"Transfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
                          b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc123\r\n"
                          b"X-Count: 2\r\n\r\n")

    def close(self):
        self.lsock.close()


def test_chunked_answer_trailers_reach_the_client(berth):
    t = TrailerTarget()
    lb = berth(h2c_config([t.addr]))
    c = h2wire.Client(lb.ports["web"])
    st = c.get("/t")
    assert st["headers"][":status"] == "200"
    assert bytes(st["data"]) == b"hello world"
    assert st["trailers"] == {"x-checksum": "abc123", "x-count": "2"}
    assert "transfer-encoding" not in st["headers"]
    p = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
             "http://127.0.0.1:%d/t" % lb.ports["web"])
    assert p.returncode == 0 and p.stdout == b"200", p.stderr
    c.close()
    t.close()


def test_trailers_crossing_an_early_answer_are_ignored(berth, backend):
    """berth answers before the body ends (a fixed response), resets the stream with
    NO_ERROR; the client's trailers already on their way are ignored (RFC 9113 5.1), not
    taken for a reused stream id, and the connection goes on."""
    a = backend()
    cfg = h2c_config([a.addr])
    cfg["listeners"][0]["rules"] = [
        {"priority": 1, "conditions": {"path": ["/fixed"]},
         "action": {"fixed_response": {"status": 200, "content_type": "text/plain",
                                       "body": "fixed"}}}]
    lb = berth(cfg)
    r = h2wire.Raw(lb.ports["web"])
    r.send(h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS, 1,
                        h2wire.request_block(r.enc, "/fixed", method="POST")))
    r.send(h2wire.frame(h2wire.DATA, 0, 1, b"x" * 100))
    r.frames(timeout=3, until=lambda t, f, s, p: t == h2wire.RST_STREAM and s == 1)
    r.send(h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS | h2wire.END_STREAM, 1,
                        r.enc.encode([("x-checksum", "abc")])))
    r.send(h2wire.frame(h2wire.HEADERS, h2wire.END_HEADERS | h2wire.END_STREAM, 3,
                        h2wire.request_block(r.enc, "/after")))
    frames = r.frames(timeout=3, until=lambda t, f, s, p: t == h2wire.DATA and s == 3 and f & 1)
    assert not [f for f in frames if f[0] == h2wire.GOAWAY]
    assert b"/after" in b"".join(p for t, _, s, p in frames if t == h2wire.DATA and s == 3)


def test_stickiness_cookie_over_http2(berth, backend):
    """lb_cookie stickiness works on HTTP/2: the answer carries set-cookie BERTH-app, and
    streams sending it back (as one cookie field or split in several, RFC 9113 8.2.3) stay
    on its target."""
    bs = [backend() for _ in range(3)]
    cfg = h2c_config([b.addr for b in bs])
    cfg["target_groups"][0]["stickiness"] = {"type": "lb_cookie", "duration": "1h"}
    lb = berth(cfg)
    c = h2wire.Client(lb.ports["web"])
    first = c.get("/first")
    cookies = [v for n, v in first["header_list"] if n == "set-cookie"]
    assert len(cookies) == 1 and cookies[0].startswith("BERTH-app="), first["header_list"]
    value = cookies[0].split(";", 1)[0]
    target = first["headers"]["x-backend"]
    seen = set()
    for i in range(8):
        hs = [("cookie", value)] if i % 2 else [("cookie", "a=1"), ("cookie", value)]
        seen.add(c.get("/s/%d" % i, headers=hs)["headers"]["x-backend"])
    assert seen == {target}
    c.close()


def test_interim_100_continue_then_final_answer(berth, backend):
    """An interim answer (100 Continue) from the target reaches the client as informational
    HEADERS before the final answer."""
    t = socket.socket()
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("127.0.0.61", 0))
    t.listen(4)

    def serve():
        c, _ = t.accept()
        with c:
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += c.recv(65536)
            c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = buf.split(b"\r\n\r\n", 1)[1]
            while not body.endswith(b"0\r\n\r\n") and len(body) < 5:
                body += c.recv(65536)
            c.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
            time.sleep(0.5)

    threading.Thread(target=serve, daemon=True).start()
    lb = berth(h2c_config(["127.0.0.61:%d" % t.getsockname()[1]]))
    c = h2wire.Client(lb.ports["web"])
    sid = c.request("POST", "/up", headers=[("expect", "100-continue")], body=b"hello")
    c.wait([sid])
    st = c.streams[sid]
    assert [h[":status"] for h in st["informational"]] == ["100"]
    assert st["headers"][":status"] == "201" and bytes(st["data"]) == b"ok"
    c.close()
    t.close()


def test_h2c_on_an_https_listener_is_a_config_error(berth, backend, cert):
    from conftest import start_fails
    a = backend()
    err = start_fails(berth, https_cfg(cert, [a.addr], h2c=True))
    assert re.search(r"berth\.yaml:\d+:\d+: h2c is only for HTTP listeners", err), err


# ---- berth's own answers to gRPC clients (the mapping issue 18 builds on) ----

def grpc_call(port, method, timeout=5):
    """One unary call with Python's grpcio (Debian python3-grpcio) over h2c; returns
    (code name, details) of the error it ends with, or ("OK", reply)."""
    import grpc
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            return "OK", call(b"\x00", timeout=timeout)
        except grpc.RpcError as e:
            return e.code().name, e.details()


def test_own_answers_to_grpc_clients_are_grpc_statuses(berth, backend):
    """A gRPC client gets berth's own answers as gRPC statuses (HTTP 200, trailers-only,
    grpc-status by the gRPC project's HTTP mapping), not HTTP errors it cannot read."""
    pytest.importorskip("grpc")
    a = backend()
    cfg = h2c_config([a.addr])
    cfg["listeners"][0]["rules"] = [
        {"priority": 1, "conditions": {"path": ["/deny.Svc/*"]},
         "action": {"fixed_response": {"status": 403, "content_type": "text/plain",
                                       "body": "no"}}},
        {"priority": 2, "conditions": {"path": ["/gone.Svc/*"]},
         "action": {"fixed_response": {"status": 404}}},
        {"priority": 3, "conditions": {"path": ["/none.Svc/*"]},
         "action": {"forward": {"target_groups": [{"name": "empty"}]}}}]
    cfg["target_groups"].append({"name": "empty", "protocol": "HTTP",
                                 "health_check": {"enabled": False}, "targets": []})
    lb = berth(cfg)
    port = lb.ports["web"]
    code, details = grpc_call(port, "/deny.Svc/Call")
    assert code == "PERMISSION_DENIED" and "403" in details, (code, details)
    assert grpc_call(port, "/gone.Svc/Call")[0] == "UNIMPLEMENTED"
    code, details = grpc_call(port, "/none.Svc/Call")
    assert code == "UNAVAILABLE" and "503" in details, (code, details)
    # what went over the wire: HTTP 200, grpc-status in the one HEADERS frame
    c = h2wire.Client(port)
    st = c.get("/none.Svc/Call", headers=[("content-type", "application/grpc"),
                                          ("te", "trailers")])
    assert st["headers"][":status"] == "200"
    assert st["headers"]["grpc-status"] == "14" and not st["data"]
    # a client that is not gRPC still gets the HTTP answer
    assert c.get("/none.Svc/Call")["headers"][":status"] == "503"
    c.close()
    assert not a.requests
