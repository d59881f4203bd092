# SPDX-License-Identifier: MIT
"""The request target and Host as an HTTP listener checks them before routing.

- HTTP/1.1 needs exactly one Host (HTTP/1.0 may omit it); two Host fields, or a value that
  is not uri-host [":" port] (RFC 9110 section 7.2, RFC 3986 section 3.2.2), get 400 and
  the target sees nothing. A valid Host, even an empty one, reaches the target unchanged.
- An absolute-form target ("GET http://a.example/x HTTP/1.1") overrides Host (RFC 9112
  section 3.2.2): rules match its authority, and the target gets the origin-form path with
  exactly one Host carrying that authority. HTTP/1.1 still needs a Host field beside it
  (RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1 request without one).
- HTTP/1.0 with Transfer-Encoding gets 400 and close (RFC 9112 section 6.1: its framing is
  faulty).
- Listener path_normalization (on, the default | off | merge_slashes): dot segments are
  removed and escaped unreserved bytes decoded before rules match, and the target gets that
  normalised path, so "/api/../admin" cannot slip past an /admin* rule. A path that climbs
  above "/" or has a bad escape gets 400. The query is never touched.

Every request goes on a fresh client connection as raw bytes. A refused request must not
reach the target: no request and not even a TCP connection (health checks are off, so a
fresh berth makes none).
"""

import re
import subprocess

import pytest

from cfgbuild import fwd, group
from conftest import berth_bin
from httpwire import Client

CLOSE_TIMEOUT = 2.0


# ---- helpers ----

def saw(targets):
    """What each target saw, for failure messages: {addr: (connections, requests)}."""
    return {t.addr: (t.connections, t.requests) for t in targets}


def assert_refused(port, raw, targets, status=400, close=False):
    """<raw> on a fresh connection gets <status> from berth (and the connection closed when
    <close>), and no target saw a request or a connection; returns the response."""
    with Client(port, timeout=5) as c:
        c.send(raw)
        r = c.response()
        assert r.status == status, "want %d from berth, got %r; targets saw %r" % (
            status, r, saw(targets))
        if close:
            assert c.wait_closed(CLOSE_TIMEOUT) is not None, \
                "connection kept open after the %d" % status
    for t in targets:
        assert t.requests == [], "target %s saw a refused request: %r" % (t.addr, t.requests)
        assert t.connections == 0, "berth opened %d connection(s) to %s" % (t.connections,
                                                                             t.addr)
    return r


def assert_forwarded(port, raw, target, method="GET"):
    """<raw> is answered by <target> (200), which saw exactly one request; returns it."""
    with Client(port, timeout=5) as c:
        c.send(raw)
        r = c.response(method)
    assert r.status == 200, "want the target's 200, got %r; target saw %r" % (r, target.requests)
    assert r.header("X-Backend") == target.addr, r
    assert len(target.requests) == 1, target.requests
    return target.requests[0]


def get(target, host=None, version="1.1", extra=b""):
    """A GET head for <target> with one Host field (none when <host> is None)."""
    head = b"GET %s HTTP/%s\r\n" % (target.encode("latin-1"), version.encode())
    if host is not None:
        head += b"Host:" + (b" " + host.encode("latin-1") if host else b"") + b"\r\n"
    return head + extra + b"\r\n"


def fixed(status):
    return {"fixed_response": {"status": status, "content_type": "text/plain",
                               "body": "fixed %d\n" % status}}


def listener_config(groups, rules, default, **listener):
    lst = {"name": "web", "protocol": "HTTP", "idle_timeout": "60s", "header_timeout": "10s",
           "rules": list(rules), "default_action": default}
    lst.update(listener)
    return {"workers": 1, "listeners": [lst], "target_groups": list(groups)}


# ---- Host ----

def test_http11_without_host_is_400(berth, backend, http_config):
    """An HTTP/1.1 request without Host gets 400 and close, and the target sees nothing."""
    t = backend()
    lb = berth(http_config([t.addr]))
    assert_refused(lb.port, get("/h", None, extra=b"Accept: */*\r\n"), [t], close=True)


def test_http10_without_host_is_forwarded(berth, backend, http_config):
    """An HTTP/1.0 request without Host is forwarded and answered by the target."""
    t = backend()
    lb = berth(http_config([t.addr]))
    req = assert_forwarded(lb.port, get("/h?v=1", None, version="1.0"), t)
    assert (req.method, req.target) == ("GET", "/h?v=1"), req


@pytest.mark.parametrize("fields", [
    b"Host: a\r\nHost: a\r\n",
    b"Host: a\r\nHost: b\r\n",
    b"Host: a\r\nAccept: */*\r\nHost: b\r\n",
], ids=["equal", "different", "apart"])
def test_two_host_fields_are_400(berth, backend, http_config, fields):
    """Two Host fields, equal or not, get 400 and close, and the target sees nothing."""
    t = backend()
    lb = berth(http_config([t.addr]))
    assert_refused(lb.port, b"GET /h HTTP/1.1\r\n" + fields + b"\r\n", [t], close=True)


@pytest.mark.parametrize("host", [
    "a, b",            # a list: two Hosts in one field
    "exa mple.com",    # whitespace
    "a/b",             # a path
    "a@b",             # userinfo
    "host:port",       # a port that is not digits
    "host:80:81",      # two ports
    "[::1",            # unclosed IP literal
    'a"b',             # not a reg-name character
    "host:123456",     # port of more than five digits
    "good.example,evil.example",  # a comma: a list to some targets
])
def test_invalid_host_is_400(berth, backend, http_config, host):
    """A Host value that is not uri-host [":" port] gets 400 and the target sees nothing."""
    t = backend()
    lb = berth(http_config([t.addr]))
    assert_refused(lb.port, get("/h", host), [t])


@pytest.mark.parametrize("host", [
    "example.com",
    "example.com:8080",
    "[::1]:80",
    "127.0.0.1",
    "xn--bcher-kva.example",
    "EXAMPLE.com",     # case kept
    "",                # "Host:" with an empty value (RFC 9112 section 3.2)
], ids=lambda h: h or "empty")
def test_valid_host_forwarded_unchanged(berth, backend, http_config, host):
    """A valid Host value, even an empty one, reaches the target exactly as sent, once."""
    t = backend()
    lb = berth(http_config([t.addr]))
    req = assert_forwarded(lb.port, get("/h", host), t)
    assert req.target == "/h", req
    assert req.header_all("Host") == [host], req.headers


# ---- absolute-form ----

# (request, origin-form target and Host the target must get)
ABSOLUTE = [
    (b"GET http://a.example/x?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n", "/x?q=1", "a.example"),
    (b"GET http://a.example:8080/x HTTP/1.1\r\nHost: b.example\r\n\r\n", "/x",
     "a.example:8080"),
    (b"GET http://a.example/x HTTP/1.0\r\n\r\n", "/x", "a.example"),
]
ABSOLUTE_IDS = ["host-differs", "with-port", "http10-no-host-field"]


def absolute_lb(berth, backend, rule_host):
    """Rule host <rule_host> -> fixed 403, default forward to one target."""
    t = backend()
    lb = berth(listener_config(
        [group("app", [t.addr])],
        [{"priority": 1, "conditions": {"host": [rule_host]}, "action": fixed(403)}],
        fwd("app")))
    return lb, t


@pytest.mark.parametrize("raw,_target,_host", ABSOLUTE, ids=ABSOLUTE_IDS)
def test_absolute_form_authority_takes_host_rule(berth, backend, raw, _target, _host):
    """An absolute-form request matches the host rule of its URL's authority, not of its Host field."""
    lb, t = absolute_lb(berth, backend, "a.example")
    r = assert_refused(lb.port, raw, [t], status=403)
    assert r.body == b"fixed 403\n", r


@pytest.mark.parametrize("raw,target,host", ABSOLUTE, ids=ABSOLUTE_IDS)
def test_absolute_form_forwarded_as_origin_form(berth, backend, raw, target, host):
    """An absolute-form request skips the Host field's rule and reaches the target in origin-form with one Host: the URL's authority."""
    lb, t = absolute_lb(berth, backend, "b.example")
    req = assert_forwarded(lb.port, raw, t)
    assert req.target == target, req
    assert req.header_all("Host") == [host], req.headers


def test_absolute_form_http11_without_host_is_400(berth, backend):
    """An HTTP/1.1 absolute-form request with no Host field gets 400: the authority does not stand in for the field (RFC 9112 3.2)."""
    lb, t = absolute_lb(berth, backend, "b.example")
    assert_refused(lb.port, b"GET http://a.example/x HTTP/1.1\r\n\r\n", [t], close=True)


def test_absolute_form_invalid_authority_is_400(berth, backend):
    """An absolute-form target whose authority is not a valid host (userinfo, a space) gets 400."""
    lb, t = absolute_lb(berth, backend, "b.example")
    assert_refused(lb.port, b"GET http://u@a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
                   [t])
    assert_refused(lb.port, b"GET http://a.ex%zzample/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
                   [t])


def test_absolute_form_host_header_rule_sees_the_authority(berth, backend):
    """Header conditions on Host see the absolute-form authority, the same host the target gets: a deny rule on it cannot be dodged with a different Host field."""
    t = backend()
    lb = berth(listener_config(
        [group("app", [t.addr])],
        [{"priority": 1, "conditions": {"headers": {"Host": ["admin.example"]}},
          "action": fixed(403)}],
        fwd("app")))
    assert_refused(lb.port, b"GET http://admin.example/x HTTP/1.1\r\nHost: public.example\r\n\r\n",
                   [t], status=403)
    req = assert_forwarded(
        lb.port, b"GET http://public.example/x HTTP/1.1\r\nHost: admin.example\r\n\r\n", t)
    assert req.header_all("Host") == ["public.example"], req.headers


# ---- framing ----

def test_http10_transfer_encoding_is_400(berth, backend, http_config):
    """An HTTP/1.0 request with Transfer-Encoding: chunked gets 400 and close, and the target sees nothing."""
    t = backend()
    lb = berth(http_config([t.addr]))
    raw = (b"POST /up HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n0\r\n\r\n")
    assert_refused(lb.port, raw, [t], close=True)


# ---- path normalisation ----

def path_lb(berth, backend, mode=None):
    """/admin* -> fixed 403, /api/* -> the target, default fixed 404; <mode> None leaves
    path_normalization at its default."""
    t = backend()
    extra = {} if mode is None else {"path_normalization": mode}
    lb = berth(listener_config(
        [group("app", [t.addr])],
        [{"priority": 1, "conditions": {"path": ["/admin*"]}, "action": fixed(403)},
         {"priority": 2, "conditions": {"path": ["/api/*"]}, "action": fwd("app")}],
        fixed(404), **extra))
    return lb, t


@pytest.mark.parametrize("mode,path,status", [
    (None, "/api/x/../../admin", 403),
    ("on", "/api/x/../../admin", 403),
    (None, "/api/%2e%2e/admin", 403),
    (None, "/api/%2E%2E/admin", 403),
    (None, "/%61dmin", 403),
    ("merge_slashes", "//admin", 403),
    (None, "//admin", 404),            # slashes are not merged by default
], ids=lambda v: "default" if v is None else str(v))
def test_normalised_path_takes_rule(berth, backend, mode, path, status):
    """Rules match the normalised path: dot segments and escapes cannot get around /admin*."""
    lb, t = path_lb(berth, backend, mode)
    r = assert_refused(lb.port, get(path, "x"), [t], status=status)
    assert r.body == b"fixed %d\n" % status, r


@pytest.mark.parametrize("mode,path,want", [
    (None, "/api/./x/../y?z=1", "/api/y?z=1"),
    ("on", "/api/./x/../y?z=1", "/api/y?z=1"),
    (None, "/api/%7Euser", "/api/~user"),            # escaped unreserved byte decoded
    (None, "/api/a%2Fb", "/api/a%2Fb"),              # escaped reserved byte kept
    (None, "/api/a%2fb", ("/api/a%2fb", "/api/a%2Fb")),
    (None, "/api//x", "/api//x"),
    (None, "/api/y?a=../b&c=%2e", "/api/y?a=../b&c=%2e"),  # the query is never touched
    ("merge_slashes", "/api//x", "/api/x"),
    ("off", "/api/x/../y", "/api/x/../y"),
    (None, "/api/x#/../../admin", "/api/x"),         # a fragment is not forwarded
    (None, "/api/x?q=1#frag", "/api/x?q=1"),
], ids=lambda v: "default" if v is None else (str(v) if not isinstance(v, tuple) else "either"))
def test_normalised_path_forwarded(berth, backend, mode, path, want):
    """The target gets the normalised path (as sent under off) and the query exactly as sent."""
    lb, t = path_lb(berth, backend, mode)
    req = assert_forwarded(lb.port, get(path, "x"), t)
    wants = want if isinstance(want, tuple) else (want,)
    assert req.target in wants, "sent %s, target saw %s, want %s" % (path, req.target,
                                                                      " or ".join(wants))
    assert req.header_all("Host") == ["x"], req.headers


@pytest.mark.parametrize("path", [
    "/../x",           # above the root
    "/api/../../x",    # above the root, through a rule's prefix
    "/api/%zz",        # bad escape
    "/api/x/..%2F..%2Fadmin",    # escaped slashes that make dot segments once decoded
    "/api/a%2F..%2F..%2Fadmin",
    "/api/a%2F.%2Fb",
])
def test_bad_path_is_400(berth, backend, path):
    """A path that climbs above "/", has a bad percent escape, or whose escaped slashes decode into dot segments (a target that decodes them would act on another path than the rules saw) gets 400 and the target sees nothing."""
    lb, t = path_lb(berth, backend)
    assert_refused(lb.port, get(path, "x"), [t])


# ---- path_normalization in the config ----

CHECK_CONFIG = """\
workers: 1
control: {socket: %(tmp)s/berth.sock}
access_log: off
listeners:
  - name: web
    protocol: HTTP
    bind: 127.0.0.1:18080
    idle_timeout: 60s
    header_timeout: 10s
    path_normalization: %(mode)s
    default_action: {forward: {target_groups: [{name: app}]}}
target_groups:
  - name: app
    protocol: HTTP
    health_check: {enabled: false}
    targets: ["127.0.0.2:8080"]
"""
MODE_LINE = 10  # the line of path_normalization in CHECK_CONFIG


def write_config(tmp_path, mode):
    path = str(tmp_path / "check.yaml")
    with open(path, "w") as f:
        f.write(CHECK_CONFIG % {"tmp": tmp_path, "mode": mode})
    return path


def run_berth(args, timeout=10):
    p = subprocess.run([berth_bin()] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


@pytest.mark.parametrize("mode", ["on", "off", "merge_slashes"])
def test_path_normalization_values_accepted(tmp_path, mode):
    """path_normalization on, off and merge_slashes pass `berth -t`."""
    rc, out = run_berth(["-t", "-c", write_config(tmp_path, mode)])
    assert rc == 0, out


@pytest.mark.parametrize("args", [["-t"], []], ids=["check", "start"])
def test_path_normalization_bogus_refused(tmp_path, args):
    """path_normalization: bogus is refused by `berth -t` and at start with a FILE:LINE:COL error naming the value."""
    path = write_config(tmp_path, "bogus")
    rc, out = run_berth(args + ["-c", path])
    assert rc != 0, out
    want = re.compile(r"%s:%d:\d+: .*bogus" % (re.escape(path), MODE_LINE))
    assert any(want.search(ln) for ln in out.splitlines()), \
        "expected %s:%d:COL: ...bogus... in:\n%s" % (path, MODE_LINE, out)
