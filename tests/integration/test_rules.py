# SPDX-License-Identifier: MIT
"""Listener rules: conditions on host, path, method, headers, query and source IP, first match
in ascending priority, the default action otherwise.

Each target group has its own backend, so the X-Backend header of an answer names the group
(and so the rule) that took the request.
"""

import socket
import time

import pytest

from cfgbuild import fwd, group
from httpwire import Client, Reader, fetch


def rules_config(groups, rules, default="dflt", **listener):
    """One HTTP listener with <rules>; default action forwards to group <default>."""
    lst = {"name": "web", "protocol": "HTTP", "idle_timeout": "60s", "header_timeout": "10s",
           "rules": list(rules),
           "default_action": {"forward": {"target_groups": [{"name": default}]}}}
    lst.update(listener)
    return {"workers": 1, "listeners": [lst], "target_groups": list(groups)}


class SourceClient(Client):
    """A Client whose socket is bound to <source> before connecting (IPv4 or IPv6)."""

    def __init__(self, port, source, host="127.0.0.1", timeout=10.0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.port = port
        self.host = host
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.reader = Reader(self.sock)
        self.sent = 0


def routed(backends, r):
    """The name of the group whose backend answered <r> (or the status when berth answered)."""
    for name, b in backends.items():
        if r.header("X-Backend") == b.addr:
            return name
    return "berth:%d" % r.status


def start_groups(berth, backend, names, rules, default="dflt", **listener):
    """Starts one backend per group name and berth with <rules>; returns (lb, {name: Backend})."""
    bs = {n: backend() for n in names}
    groups = [group(n, [b.addr]) for n, b in bs.items()]
    lb = berth(rules_config(groups, rules, default, **listener))
    return lb, bs


def test_priority_not_file_order(berth, backend):
    """The matching rule with the lowest priority number wins even when it comes later in the file."""
    lb, bs = start_groups(berth, backend, ["broad", "narrow", "dflt"], [
        {"priority": 20, "conditions": {"path": ["/a/*"]}, "action": fwd("broad")},
        {"priority": 10, "conditions": {"path": ["/a/b*"]}, "action": fwd("narrow")},
        {"priority": 30, "conditions": {"path": ["/a/bc"]}, "action": fwd("dflt")},
    ], default="dflt")
    cases = [("/a/bc", "narrow"), ("/a/b", "narrow"), ("/a/x", "broad"), ("/a/", "broad"),
             ("/z", "dflt"), ("/", "dflt")]
    with Client(lb.port) as c:
        got = [(p, routed(bs, c.request("GET", p))) for p, _ in cases]
    assert got == cases


def test_host_condition(berth, backend):
    """Host patterns match case-insensitively with * and ? wildcards against the Host header without its port."""
    lb, bs = start_groups(berth, backend, ["hit", "dflt"], [
        {"priority": 1,
         "conditions": {"host": ["api.example.com", "*.example.org", "w?b.example.net",
                                 "api*.example.io"]},
         "action": fwd("hit")},
    ])
    cases = [
        ("api.example.com", "hit"),
        ("API.Example.COM", "hit"),             # case-insensitive
        ("api.example.com:8080", "hit"),        # port ignored
        ("Api.Example.Com:%d" % lb.port, "hit"),
        ("a.example.org", "hit"),
        ("a.b.example.org", "hit"),             # * spans dots
        ("example.org", "dflt"),                # the literal "." before example.org is needed
        ("web.example.net", "hit"),
        ("wxb.example.net:80", "hit"),
        ("wb.example.net", "dflt"),             # ? is exactly one character
        ("weeb.example.net", "dflt"),
        ("api.example.io", "hit"),              # * matches an empty run
        ("api-v2.example.io", "hit"),
        ("api.example.com.evil.net", "dflt"),   # whole value must match
        ("xapi.example.com", "dflt"),
    ]
    with Client(lb.port) as c:
        got = [(h, routed(bs, c.request("GET", "/", host=h))) for h, _ in cases]
    assert got == cases


def test_path_condition(berth, backend):
    """Path patterns match case-sensitively with * and ? wildcards against the path without the query."""
    lb, bs = start_groups(berth, backend, ["hit", "dflt"], [
        {"priority": 5, "conditions": {"path": ["/api/*", "/v?/x", "/exact"]},
         "action": fwd("hit")},
    ])
    cases = [
        ("/api/", "hit"),                 # * matches an empty run
        ("/api/users/7", "hit"),
        ("/api/users?id=7", "hit"),
        ("/API/users", "dflt"),           # case-sensitive
        ("/api", "dflt"),
        ("/v1/x", "hit"),
        ("/v10/x", "dflt"),               # ? is exactly one character
        ("/v/x", "dflt"),
        ("/exact", "hit"),
        ("/exact?q=/api/x", "hit"),       # query is not part of the path
        ("/exact/", "dflt"),
        ("/Exact", "dflt"),
        ("/other?p=/api/x", "dflt"),      # a path-like query does not match
    ]
    with Client(lb.port) as c:
        got = [(p, routed(bs, c.request("GET", p))) for p, _ in cases]
    assert got == cases


def test_path_matched_percent_decoded(berth, backend):
    """Path patterns match the percent-decoded path; the target gets the normalised path: escaped unreserved bytes decoded (RFC 3986 6.2.2.2), others kept."""
    lb, bs = start_groups(berth, backend, ["space", "api", "dflt"], [
        {"priority": 1, "conditions": {"path": ["/a b"]}, "action": fwd("space")},
        {"priority": 2, "conditions": {"path": ["/api/*"]}, "action": fwd("api")},
    ])
    cases = [("/a%20b", "space"), ("/a%20b?x=%20", "space"), ("/a+b", "dflt"),
             ("/%61pi/x", "api"), ("/ap%69/y", "api"), ("/a%20c", "dflt"),
             ("/%2561pi/x", "dflt")]  # decoded once: "/%61pi/x" is not "/api/*"
    with Client(lb.port) as c:
        got = [(p, routed(bs, c.request("GET", p))) for p, _ in cases]
    assert got == cases
    assert [q.target for q in bs["space"].requests] == ["/a%20b", "/a%20b?x=%20"]
    assert [q.target for q in bs["api"].requests] == ["/api/x", "/api/y"]
    assert [q.target for q in bs["dflt"].requests] == ["/a+b", "/a%20c", "/%2561pi/x"]


@pytest.mark.parametrize("target", ["/%zz", "/a%2", "/api/%g1", "/%"])
def test_invalid_percent_escape_is_400(berth, backend, target):
    """A request whose path has an invalid percent escape gets 400 and no target sees it."""
    lb, bs = start_groups(berth, backend, ["api", "dflt"], [
        {"priority": 1, "conditions": {"path": ["/api/*"]}, "action": fwd("api")},
    ])
    r = fetch(lb.port, "GET", target)
    assert r.status == 400, "GET %s: %r" % (target, r)
    time.sleep(0.1)
    assert bs["api"].requests == [] and bs["dflt"].requests == []


def test_method_condition(berth, backend):
    """Method conditions match the method exactly: listed methods take the rule, others the default action."""
    lb, bs = start_groups(berth, backend, ["write", "dflt"], [
        {"priority": 1, "conditions": {"method": ["POST", "PUT"]}, "action": fwd("write")},
    ])
    with Client(lb.port) as c:
        got = [(m, routed(bs, c.request(m, "/m", body=b"x" if m in ("POST", "PUT") else None)))
               for m in ("POST", "PUT", "GET", "DELETE", "HEAD", "PATCH")]
    assert got == [("POST", "write"), ("PUT", "write"), ("GET", "dflt"), ("DELETE", "dflt"),
                   ("HEAD", "dflt"), ("PATCH", "dflt")]
    # A lower-case method is not "POST": it may be refused (400) but must not take the rule.
    with Client(lb.port) as c:
        c.send(b"post /m HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
        r = c.response()
    assert routed(bs, r) != "write", r


def test_header_condition(berth, backend):
    """Header conditions match the header name and value case-insensitively, with wildcards in the value."""
    lb, bs = start_groups(berth, backend, ["canary", "dflt"], [
        {"priority": 1, "conditions": {"headers": {"X-Env": ["canary*", "beta"]}},
         "action": fwd("canary")},
    ])
    cases = [
        ([("X-Env", "canary")], "canary"),
        ([("x-env", "Canary-7")], "canary"),
        ([("X-ENV", "BETA")], "canary"),
        ([("X-Env", "prod")], "dflt"),
        ([("X-Env", "betax")], "dflt"),
        ([("X-Env", "my-canary")], "dflt"),
        ([("X-Environment", "canary")], "dflt"),
        ([], "dflt"),
    ]
    with Client(lb.port) as c:
        got = [(h, routed(bs, c.request("GET", "/h", headers=h))) for h, _ in cases]
    assert got == cases


def test_query_condition(berth, backend):
    """Query conditions match percent-decoded keys and values case-insensitively, with wildcards, anywhere in the query."""
    lb, bs = start_groups(berth, backend, ["v2", "xkey", "dflt"], [
        {"priority": 1, "conditions": {"query": {"version": ["2", "v3*"]}}, "action": fwd("v2")},
        {"priority": 2, "conditions": {"query": {"x*": ["yes"]}}, "action": fwd("xkey")},
    ])
    cases = [
        ("/?version=2", "v2"),
        ("/q?a=1&version=2&b=3", "v2"),
        ("/?VERSION=2", "v2"),
        ("/?version=V3beta", "v2"),
        ("/?version=%32", "v2"),          # value percent-decoded
        ("/?ver%73ion=2", "v2"),          # key percent-decoded
        ("/?version=1", "dflt"),
        ("/?version=20", "dflt"),
        ("/?version", "dflt"),
        ("/", "dflt"),
        ("/version=2", "dflt"),           # in the path, not the query
        ("/?xfoo=yes", "xkey"),
        ("/?X=YES", "xkey"),
        ("/?foo=yes", "dflt"),
        ("/?xfoo=no", "dflt"),
    ]
    with Client(lb.port) as c:
        got = [(p, routed(bs, c.request("GET", p))) for p, _ in cases]
    assert got == cases


def test_source_ip_condition(berth, backend):
    """Source IP conditions match the client address by CIDR: a client bound to 127.0.0.50 or 127.0.1.x takes the rule, 127.0.0.1 does not."""
    lb, bs = start_groups(berth, backend, ["one", "net", "dflt"], [
        {"priority": 1, "conditions": {"source_ip": ["127.0.0.50/32", "10.0.0.0/8"]},
         "action": fwd("one")},
        {"priority": 2, "conditions": {"source_ip": ["127.0.1.0/24"]}, "action": fwd("net")},
    ])
    cases = [("127.0.0.50", "one"), ("127.0.0.1", "dflt"), ("127.0.0.51", "dflt"),
             ("127.0.1.77", "net"), ("127.0.1.1", "net"), ("127.0.2.77", "dflt")]
    got = []
    for src, _ in cases:
        with SourceClient(lb.port, src) as c:
            got.append((src, routed(bs, c.request("GET", "/src", host="example.com"))))
    assert got == cases


def ipv6_loopback_port():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        port = s.getsockname()[1]
        s.close()
        return port
    except OSError as e:
        pytest.skip("IPv6 loopback ::1 not available on this machine: %s" % e)


def test_source_ip_condition_ipv6(berth, backend):
    """On a [::1] listener, a client from ::1 matches source_ip ::1/128 but not an IPv4 or other IPv6 CIDR."""
    port = ipv6_loopback_port()
    lb, bs = start_groups(berth, backend, ["ula", "v4", "lo6", "dflt"], [
        {"priority": 1, "conditions": {"source_ip": ["fd00::/8"]}, "action": fwd("ula")},
        {"priority": 2, "conditions": {"source_ip": ["127.0.0.0/8"]}, "action": fwd("v4")},
        {"priority": 3, "conditions": {"source_ip": ["::1/128"]}, "action": fwd("lo6")},
    ], bind="[::1]:%d" % port)
    with SourceClient(port, "::1", host="::1") as c:
        r = c.request("GET", "/v6", host="[::1]:%d" % port)
    assert r.status == 200, r
    assert routed(bs, r) == "lo6", r


def test_conditions_and_values_or(berth, backend):
    """Values of one condition are OR-ed and different conditions AND-ed."""
    lb, bs = start_groups(berth, backend, ["both", "dflt"], [
        {"priority": 1,
         "conditions": {"host": ["a.example.com", "b.example.com"], "path": ["/x/*", "/y"],
                        "method": ["GET"], "headers": {"X-Team": ["blue"]}},
         "action": fwd("both")},
    ])
    blue = [("X-Team", "blue")]
    cases = [
        ("GET", "a.example.com", "/x/1", blue, "both"),
        ("GET", "b.example.com", "/y", blue, "both"),
        ("GET", "c.example.com", "/x/1", blue, "dflt"),      # host fails
        ("GET", "a.example.com", "/z", blue, "dflt"),        # path fails
        ("DELETE", "a.example.com", "/x/1", blue, "dflt"),   # method fails
        ("GET", "a.example.com", "/x/1", [("X-Team", "red")], "dflt"),  # header fails
        ("GET", "a.example.com", "/x/1", [], "dflt"),
    ]
    with Client(lb.port) as c:
        got = [(m, h, p, hd, routed(bs, c.request(m, p, headers=hd, host=h)))
               for m, h, p, hd, _ in cases]
    assert got == cases


def test_absolute_form_routes_by_authority(berth, backend):
    """A request with an absolute-form target routes by the host (and path) of that URL, not by the Host header."""
    lb, bs = start_groups(berth, backend, ["api", "www", "dflt"], [
        {"priority": 1, "conditions": {"host": ["api.example.com"], "path": ["/x"]},
         "action": fwd("api")},
        {"priority": 2, "conditions": {"host": ["www.example.com"]}, "action": fwd("www")},
    ])
    with Client(lb.port) as c:
        c.send(b"GET http://api.example.com/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        r1 = c.response()
        c.send(b"GET http://API.example.com:8080/x?q=1 HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
        r2 = c.response()
        c.send(b"GET http://www.example.com/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        r3 = c.response()
    assert routed(bs, r1) == "api", r1
    assert routed(bs, r2) == "api", r2
    assert routed(bs, r3) == "www", r3
