# SPDX-License-Identifier: MIT
"""TLS: HTTPS listeners (SNI selection, ALPN, policies, session resumption,
X-Forwarded-Proto), NLB TLS listeners to plain TCP targets, HTTPS target groups with and
without verification, and errors for bad certificate files."""

import re
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import berth_bin, free_port
from httpwire import Reader, read_response, build_request, pattern_bytes
from l4servers import l4_fixture  # noqa: F401 (the l4 fixture)
from l4servers import nlb_config, recv_line


# ---- certificates ----
def make_cert(tmp_path, tag, cn, sans):
    """Makes a self-signed RSA certificate; returns (cert path, key path)."""
    cert = str(tmp_path / ("%s.crt" % tag))
    key = str(tmp_path / ("%s.key" % tag))
    san = ",".join("DNS:%s" % s for s in sans)
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=%s" % cn,
                        "-addext", "subjectAltName=%s" % san],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return cert, key


def der_of(cert_path):
    with open(cert_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


@pytest.fixture
def certs(tmp_path):
    """Three certificates: default (first), exact name, wildcard."""
    return {
        "default": make_cert(tmp_path, "default", "default.example.com",
                             ["default.example.com"]),
        "exact": make_cert(tmp_path, "exact", "exact.example.com", ["exact.example.com"]),
        "wild": make_cert(tmp_path, "wild", "wild.example.com", ["*.wild.example.com"]),
    }


def https_config(certs_list, targets, **listener):
    lst = {"name": "web", "protocol": "HTTPS", "bind": "127.0.0.1:%d" % free_port(),
           "idle_timeout": "60s", "header_timeout": "10s",
           "certificates": [{"cert": c, "key": k} for c, k in certs_list],
           "default_action": {"forward": {"target_groups": [{"name": "app"}]}}}
    lst.update(listener)
    return {"workers": 1, "listeners": [lst],
            "target_groups": [{"name": "app", "protocol": "HTTP",
                               "health_check": {"enabled": False},
                               "targets": list(targets)}]}


def client_ctx(alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(port, sni=None, ctx=None, session=None, timeout=10.0):
    ctx = ctx or client_ctx()
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=sni, session=session)


def https_get(s, path="/", host="example.com", close=True):
    hdrs = [("Connection", "close")] if close else []
    s.sendall(build_request("GET", path, host, headers=hdrs))
    return read_response(Reader(s), "GET")


# ---- HTTPS listener: SNI ----
def test_sni_exact_name_picks_its_certificate(berth, backend, certs):
    """A ClientHello naming a certificate's exact SAN gets that certificate."""
    b = backend()
    lb = berth(https_config([certs["default"], certs["exact"], certs["wild"]], [b.addr]))
    with tls_connect(lb.port, sni="exact.example.com") as s:
        assert s.getpeercert(binary_form=True) == der_of(certs["exact"][0])
        assert https_get(s).status == 200


def test_sni_wildcard_matches_one_label(berth, backend, certs):
    """`*.wild.example.com` serves x.wild.example.com but not a.b.wild.example.com."""
    b = backend()
    lb = berth(https_config([certs["default"], certs["exact"], certs["wild"]], [b.addr]))
    with tls_connect(lb.port, sni="x.wild.example.com") as s:
        assert s.getpeercert(binary_form=True) == der_of(certs["wild"][0])
    with tls_connect(lb.port, sni="a.b.wild.example.com") as s:
        assert s.getpeercert(binary_form=True) == der_of(certs["default"][0])


def test_no_sni_gets_first_certificate(berth, backend, certs):
    """Without SNI (and with an unknown name) the first certificate is served."""
    b = backend()
    lb = berth(https_config([certs["default"], certs["exact"], certs["wild"]], [b.addr]))
    with tls_connect(lb.port, sni=None) as s:
        assert s.getpeercert(binary_form=True) == der_of(certs["default"][0])
        assert https_get(s).status == 200
    with tls_connect(lb.port, sni="unknown.example.org") as s:
        assert s.getpeercert(binary_form=True) == der_of(certs["default"][0])


# ---- ALPN ----
def test_alpn_prefers_h2_then_http11(berth, backend, certs):
    """berth picks h2 whatever the client's order, http/1.1 when the client offers only
    that, and with http2: false it picks http/1.1 from a list that has both."""
    b = backend()
    lb = berth(https_config([certs["default"]], [b.addr]))
    with tls_connect(lb.port, ctx=client_ctx(["http/1.1", "h2"])) as s:
        assert s.selected_alpn_protocol() == "h2"
    with tls_connect(lb.port, ctx=client_ctx(["http/1.1"])) as s:
        assert s.selected_alpn_protocol() == "http/1.1"
        assert https_get(s).status == 200
    lb.stop()
    lb = berth(https_config([certs["default"]], [b.addr], http2=False))
    with tls_connect(lb.port, ctx=client_ctx(["h2", "http/1.1"])) as s:
        assert s.selected_alpn_protocol() == "http/1.1"
        assert https_get(s).status == 200


def test_alpn_only_h2_gets_no_alpn_when_http2_is_off(berth, backend, certs):
    """With http2: false, offering only h2 completes the handshake without ALPN and
    HTTP/1.1 still works."""
    b = backend()
    lb = berth(https_config([certs["default"]], [b.addr], http2=False))
    with tls_connect(lb.port, ctx=client_ctx(["h2"])) as s:
        assert s.selected_alpn_protocol() is None
        assert https_get(s).status == 200


# ---- policies ----
def s_client(port, flag, extra=()):
    return subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, flag,
                           "-servername", "default.example.com"] + list(extra),
                          input=b"", stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_old_tls_refused_by_default_policy(berth, backend, certs, flag):
    """TLS 1.0 and 1.1 handshakes fail against the default (modern) policy."""
    b = backend()
    lb = berth(https_config([certs["default"]], [b.addr]))
    p = s_client(lb.port, flag, ["-cipher", "DEFAULT:@SECLEVEL=0"])
    out = (p.stdout + p.stderr).decode(errors="replace")
    if "no protocols available" in out:
        pytest.skip("local OpenSSL will not offer %s" % flag)
    assert p.returncode != 0, out
    assert "Cipher is (NONE)" in out or "alert" in out, out
    # The listener still serves TLS 1.2 afterwards.
    p = s_client(lb.port, "-tls1_2")
    assert p.returncode == 0, (p.stdout + p.stderr).decode(errors="replace")


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_old_tls_allowed_by_intermediate_policy(berth, backend, certs, flag):
    """The intermediate policy accepts TLS 1.0 and 1.1 (skipped if local OpenSSL cannot)."""
    b = backend()
    lb = berth(https_config([certs["default"]], [b.addr], ssl_policy="intermediate"))
    p = s_client(lb.port, flag, ["-cipher", "DEFAULT:@SECLEVEL=0"])
    out = (p.stdout + p.stderr).decode(errors="replace")
    if p.returncode != 0 and ("no protocols available" in out or "unsupported protocol" in out):
        pytest.skip("local OpenSSL will not offer %s: %s" % (flag, out[-300:]))
    assert p.returncode == 0, out
    want = {"-tls1": "TLSv1", "-tls1_1": "TLSv1.1"}[flag]
    assert re.search(r"(?m)^\s*Protocol\s*:\s*%s\s*$" % re.escape(want), out), out


# ---- resumption ----
def _resume(port, version):
    ctx = client_ctx()
    ctx.maximum_version = version
    ctx.minimum_version = version
    s1 = tls_connect(port, ctx=ctx)
    # TLS 1.3 tickets arrive after the handshake: exchange data before taking the session.
    assert https_get(s1, close=False).status == 200
    sess = s1.session
    s1.close()
    assert sess is not None
    s2 = tls_connect(port, ctx=ctx, session=sess)
    try:
        assert https_get(s2).status == 200
        return s2.session_reused
    finally:
        s2.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_session_resumes(berth, backend, certs, version):
    """A second connection offering the first one's session resumes it."""
    b = backend()
    lb = berth(https_config([certs["default"]], [b.addr]))
    assert _resume(lb.port, version)


def test_session_resumes_across_workers(berth, backend, certs):
    """With several workers, tickets from one worker resume on any (shared ticket keys)."""
    b = backend()
    cfg = https_config([certs["default"]], [b.addr])
    cfg["workers"] = 4
    lb = berth(cfg)
    ctx = client_ctx()
    s1 = tls_connect(lb.port, ctx=ctx)
    assert https_get(s1, close=False).status == 200
    sess = s1.session
    s1.close()
    reused = 0
    for _ in range(12):
        s = tls_connect(lb.port, ctx=ctx, session=sess)
        assert https_get(s).status == 200
        reused += bool(s.session_reused)
        s.close()
    assert reused == 12


def test_tls13_resumed_connection_gets_a_fresh_ticket(berth, backend, certs):
    """A resumed TLS 1.3 connection gets a new ticket, so clients that never offer a ticket twice (OpenSSL's, wrk's) resume every connection, not every other one."""
    b = backend()
    lb = berth(https_config([certs["default"]], [b.addr]))
    ctx = client_ctx()
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    s = tls_connect(lb.port, ctx=ctx)
    assert https_get(s, close=False).status == 200
    sess = s.session
    s.close()
    for i in range(4):
        s = tls_connect(lb.port, ctx=ctx, session=sess)
        assert https_get(s, close=False).status == 200  # the ticket arrives before the answer
        assert s.session_reused, "connection %d did not resume" % (i + 2)
        assert s.session.id != sess.id, "resumed connection %d got no new ticket" % (i + 2)
        sess = s.session
        s.close()


def test_session_resumes_after_request_to_target(berth, backend, certs):
    """A session from a connection whose request went through to the target resumes too."""
    b = backend()
    lb = berth(https_config([certs["default"]], [b.addr]))
    ctx = client_ctx()
    s1 = tls_connect(lb.port, ctx=ctx)
    r = https_get(s1, path="/first", close=True)
    assert r.status == 200 and r.header("X-Backend") == b.addr
    sess = s1.session
    s1.close()
    s2 = tls_connect(lb.port, ctx=ctx, session=sess)
    r = https_get(s2, path="/second")
    assert r.status == 200
    assert s2.session_reused
    s2.close()
    assert [q.path for q in b.requests] == ["/first", "/second"]


# ---- X-Forwarded-Proto ----
def test_x_forwarded_proto_https(berth, backend, certs):
    """The target sees X-Forwarded-Proto: https and the HTTPS listener's port."""
    b = backend()
    lb = berth(https_config([certs["default"]], [b.addr]))
    with tls_connect(lb.port) as s:
        assert https_get(s).status == 200
    req = b.requests[-1]
    assert req.header("X-Forwarded-Proto") == "https"
    assert req.header("X-Forwarded-Port") in (None, str(lb.port))


# ---- NLB TLS listener ----
def test_nlb_tls_listener_to_tcp_echo_4mib(berth, l4, certs):
    """A TLS client through a TLS listener reaches a plain TCP echo; 4 MiB come back intact."""
    echo = l4.tcp("127.0.0.2")
    cert, key = certs["default"]
    cfg = nlb_config([echo.addr], protocol="TLS", group_protocol="TCP",
                     listener={"certificates": [{"cert": cert, "key": key}]})
    lb = berth(cfg)
    s = tls_connect(lb.port)
    try:
        assert s.getpeercert(binary_form=True) == der_of(cert)
        assert recv_line(s).decode().strip() == echo.addr
        data = pattern_bytes(4 << 20)
        got = bytearray()
        # One thread, in lockstep chunks: an SSL socket must not be read and written from
        # two threads at once (OpenSSL's SSL object is not thread-safe).
        view = memoryview(data)
        for i in range(0, len(data), 1 << 16):
            s.sendall(view[i:i + (1 << 16)])
            while len(got) < min(i + (1 << 16), len(data)):
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                got.extend(chunk)
        assert len(got) == len(data)
        assert bytes(got) == data
    finally:
        s.close()
    conns = echo.wait_conns(1)
    assert conns[0].total == 4 << 20


# ---- HTTPS target groups ----
class TlsHttpTarget:
    """A small HTTPS server on host: answers 200 with body "tls-target", recording heads."""

    def __init__(self, host, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.addr = "%s:%d" % (host, self.port)
        self.heads = []
        self.sni = []
        self.handshake_errors = []
        self.stopping = False
        self.ctx.sni_callback = lambda sock, name, ctx: self.sni.append(name)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(10)
        try:
            s = self.ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.handshake_errors.append(e)
            c.close()
            return
        try:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                self.heads.append(head.decode(errors="replace"))
                body = b"tls-target"
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Backend: %s\r\n\r\n"
                          % (len(body), self.addr.encode()) + body)
        except (ssl.SSLError, OSError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.stopping = True
        self.thread.join(2)
        self.lsock.close()


@pytest.fixture
def tls_target():
    made = []

    def make(host, cert, key):
        t = TlsHttpTarget(host, cert, key)
        made.append(t)
        return t

    yield make
    for t in made:
        t.stop()


def http_to_https_group(target, **group):
    g = {"name": "app", "protocol": "HTTPS", "health_check": {"enabled": False},
         "targets": [target.addr]}
    g.update(group)
    return {"workers": 1,
            "listeners": [{"name": "web", "protocol": "HTTP",
                           "bind": "127.0.0.1:%d" % free_port(),
                           "idle_timeout": "5s", "header_timeout": "5s",
                           "default_action": {"forward": {"target_groups": [{"name": "app"}]}}}],
            "target_groups": [g]}


def plain_get(port, path="/"):
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    try:
        s.sendall(build_request("GET", path, "example.com", headers=[("Connection", "close")]))
        return read_response(Reader(s), "GET")
    finally:
        s.close()


def test_https_group_without_verification(berth, tls_target, tmp_path):
    """An HTTPS group with verification off talks to a self-signed target, sending SNI."""
    cert, key = make_cert(tmp_path, "target", "target.internal", ["target.internal"])
    t = tls_target("127.0.0.5", cert, key)
    lb = berth(http_to_https_group(t, tls_verify=False, tls_server_name="target.internal"))
    r = plain_get(lb.port, "/plain")
    assert r.status == 200, r
    assert r.body == b"tls-target"
    assert t.heads and t.heads[-1].startswith("GET /plain ")
    assert "target.internal" in t.sni


def test_https_group_openssl_s_server(berth, tmp_path):
    """An HTTPS group reaches an `openssl s_server -www` target (HTTP/1.0, close-delimited)."""
    cert, key = make_cert(tmp_path, "srv", "srv.internal", ["srv.internal"])
    port = free_port("127.0.0.6")
    p = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.6:%d" % port, "-cert", cert,
                          "-key", key, "-www", "-naccept", "5"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.6", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "s_server did not start"
                time.sleep(0.05)
        # The probe connection used one of -naccept's slots.

        class T:
            addr = "127.0.0.6:%d" % port
        lb = berth(http_to_https_group(T, tls_verify=False))
        r = plain_get(lb.port)
        assert r.status == 200, r
        assert b"s_server" in r.body or b"Ciphers" in r.body or b"Cipher" in r.body, r.body[:300]
    finally:
        p.kill()
        p.wait()


def test_https_group_verify_with_matching_ca(berth, tls_target, tmp_path):
    """tls_verify with tls_ca_file holding the target's certificate succeeds."""
    cert, key = make_cert(tmp_path, "target", "target.internal", ["target.internal"])
    t = tls_target("127.0.0.7", cert, key)
    lb = berth(http_to_https_group(t, tls_verify=True, tls_ca_file=cert,
                                   tls_server_name="target.internal"))
    r = plain_get(lb.port)
    assert r.status == 200, r
    assert r.body == b"tls-target"


def test_https_group_verify_with_wrong_ca_is_502(berth, tls_target, tmp_path):
    """tls_verify with a CA file of a different certificate fails the request with 502."""
    cert, key = make_cert(tmp_path, "target", "target.internal", ["target.internal"])
    other, _ = make_cert(tmp_path, "other", "target.internal", ["target.internal"])
    t = tls_target("127.0.0.8", cert, key)
    lb = berth(http_to_https_group(t, tls_verify=True, tls_ca_file=other,
                                   tls_server_name="target.internal"))
    r = plain_get(lb.port)
    assert r.status == 502, r
    assert t.heads == []


def test_https_group_verify_wrong_name_is_502(berth, tls_target, tmp_path):
    """tls_verify with the right CA but a tls_server_name the certificate lacks fails (502)."""
    cert, key = make_cert(tmp_path, "target", "target.internal", ["target.internal"])
    t = tls_target("127.0.0.9", cert, key)
    lb = berth(http_to_https_group(t, tls_verify=True, tls_ca_file=cert,
                                   tls_server_name="other.internal"))
    r = plain_get(lb.port)
    assert r.status == 502, r
    assert t.heads == []


# ---- bad certificate files ----
def write_config(tmp_path, cert, key):
    cfg = ("workers: 1\ncontrol: {socket: %s}\naccess_log: off\nlisteners:\n"
           "  - name: web\n    protocol: HTTPS\n    bind: 127.0.0.1:%d\n"
           "    certificates: [{cert: %s, key: %s}]\n"
           "    default_action: {forward: {target_groups: [{name: app}]}}\n"
           "target_groups:\n  - name: app\n    protocol: HTTP\n"
           "    health_check: {enabled: false}\n    targets: [\"127.0.0.2:8080\"]\n"
           % (tmp_path / "b.sock", free_port(), cert, key))
    path = str(tmp_path / "bad.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    return path


def run_berth(args, timeout=10):
    p = subprocess.run([berth_bin()] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


def test_mismatched_key_is_error_naming_key(tmp_path):
    """A key that does not match its certificate fails `berth -t` and start, naming the key."""
    cert, _ = make_cert(tmp_path, "a", "a.example.com", ["a.example.com"])
    _, key_b = make_cert(tmp_path, "b", "b.example.com", ["b.example.com"])
    path = write_config(tmp_path, cert, key_b)
    rc, out = run_berth(["-t", "-c", path])
    assert rc == 1, out
    assert any(key_b in ln for ln in out.splitlines()), out
    rc, out = run_berth(["-c", path])
    assert rc == 1, out
    assert key_b in out, out


def test_missing_cert_is_error_naming_cert(tmp_path):
    """A missing certificate file fails `berth -t` and start, naming the certificate file."""
    _, key = make_cert(tmp_path, "a", "a.example.com", ["a.example.com"])
    missing = str(tmp_path / "nope.crt")
    path = write_config(tmp_path, missing, key)
    rc, out = run_berth(["-t", "-c", path])
    assert rc == 1, out
    assert any(missing in ln for ln in out.splitlines()), out
    rc, out = run_berth(["-c", path])
    assert rc == 1, out
    assert missing in out, out


def test_certificate_change_on_reload(berth, backend, certs):
    """A reload that points the listener at another certificate serves it to new connections while an established TLS connection keeps working."""
    b = backend()
    lb = berth(https_config([certs["default"]], [b.addr]))
    old = tls_connect(lb.port)
    assert old.getpeercert(binary_form=True) == der_of(certs["default"][0])
    c_old, k_old = certs["default"]
    c_new, k_new = certs["exact"]
    text = open(lb.config_path).read().replace(c_old, c_new).replace(k_old, k_new)
    with open(lb.config_path, "w") as f:
        f.write(text)
    st, body = lb.ctl("POST", "/v1/reload")
    assert st == 200, body
    new = tls_connect(lb.port)
    assert new.getpeercert(binary_form=True) == der_of(c_new)
    old.sendall(b"GET /still HTTP/1.1\r\nHost: x\r\n\r\n")
    assert old.recv(64).startswith(b"HTTP/1.1 200")
    old.close()
    new.close()
