# SPDX-License-Identifier: MIT
"""Header rewriting in ALB mode: X-Forwarded-*, X-Request-Id, hop-by-hop removal, Host."""

from httpwire import Client, connection_tokens, fetch

HOP_BY_HOP = ("keep-alive", "proxy-connection", "te", "trailer", "upgrade")


def test_forwarded_headers_added(berth, backend, http_config):
    """The target sees X-Forwarded-For = client IP, X-Forwarded-Proto http, X-Forwarded-Port = listener port."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    assert fetch(lb.port, "GET", "/xff").status == 200
    seen = b1.requests[0]
    assert seen.header_all("X-Forwarded-For") == ["127.0.0.1"], seen.headers
    assert seen.header_all("X-Forwarded-Proto") == ["http"], seen.headers
    assert seen.header_all("X-Forwarded-Port") == [str(lb.port)], seen.headers


def test_forwarded_for_appends(berth, backend, http_config):
    """An X-Forwarded-For from the client is kept and the client IP appended: "1.2.3.4, 127.0.0.1"."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    assert fetch(lb.port, "GET", "/xff", headers=[("X-Forwarded-For", "1.2.3.4")]).status == 200
    assert b1.requests[0].header_all("X-Forwarded-For") == ["1.2.3.4, 127.0.0.1"], \
        b1.requests[0].headers


def test_client_forwarded_proto_port_not_trusted(berth, backend, http_config):
    """X-Forwarded-Proto/Port sent by the client are replaced by berth's own values, not passed on."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    r = fetch(lb.port, "GET", "/", headers=[("X-Forwarded-Proto", "https"),
                                             ("X-Forwarded-Port", "443")])
    assert r.status == 200
    seen = b1.requests[0]
    assert seen.header_all("X-Forwarded-Proto") == ["http"], seen.headers
    assert seen.header_all("X-Forwarded-Port") == [str(lb.port)], seen.headers


def test_request_id_generated_and_unique(berth, backend, http_config):
    """Without a client X-Request-Id the target gets a non-empty one, different for every request."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    with Client(lb.port) as c:
        for _ in range(5):
            assert c.request("GET", "/rid").status == 200
    for _ in range(5):
        assert fetch(lb.port, "GET", "/rid").status == 200
    ids = [r.header_all("X-Request-Id") for r in b1.requests]
    assert all(len(v) == 1 and v[0].strip() for v in ids), ids
    flat = [v[0] for v in ids]
    assert len(set(flat)) == 10, flat


def test_request_id_from_client_kept(berth, backend, http_config):
    """A client's own X-Request-Id reaches the target unchanged and is not duplicated."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    assert fetch(lb.port, "GET", "/", headers=[("X-Request-Id", "abc-123")]).status == 200
    assert b1.requests[0].header_all("X-Request-Id") == ["abc-123"]


def test_host_preserved(berth, backend, http_config):
    """The client's Host header reaches the target byte for byte."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    r = fetch(lb.port, "GET", "/", host="App.Example.com:8080")
    assert r.status == 200
    assert b1.requests[0].header_all("Host") == ["App.Example.com:8080"]


def test_hop_by_hop_request_headers_removed(berth, backend, http_config):
    """Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade and headers named in Connection never reach the target."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    with Client(lb.port) as c:
        r = c.request("GET", "/hop-req", headers=[
            ("Connection", "keep-alive, X-Drop-Me"),
            ("X-Drop-Me", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Upgrade", "h2c"),
            ("X-End-To-End", "kept"),
        ])
        assert r.status == 200, r
    seen = b1.requests[0]
    names = {n.lower() for n, _ in seen.headers}
    for h in HOP_BY_HOP + ("x-drop-me",):
        assert h not in names, "target saw %s: %r" % (h, seen.headers)
    assert "x-drop-me" not in connection_tokens(seen.headers), seen.headers
    assert seen.header("X-End-To-End") == "kept"


def test_connection_close_with_named_header(berth, backend, http_config):
    """With "Connection: close, X-Drop-Me" the target never sees X-Drop-Me and berth closes the client connection after the answer."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    with Client(lb.port) as c:
        r = c.request("GET", "/close", headers=[("Connection", "close, X-Drop-Me"),
                                                 ("X-Drop-Me", "1")])
        assert r.status == 200, r
        assert c.wait_closed(2.0) is not None, "berth kept the connection open after Connection: close"
    seen = b1.requests[0]
    assert not seen.has("X-Drop-Me"), seen.headers
    assert "x-drop-me" not in connection_tokens(seen.headers)


def test_hop_by_hop_response_headers_removed(berth, backend, http_config):
    """Hop-by-hop headers in the target's answer (and headers it names in Connection) never reach the client."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    with Client(lb.port) as c:
        r = c.request("GET", "/hop")
        assert r.status == 200, r
        assert r.body == b"hop\n"
        names = {n.lower() for n, _ in r.headers}
        assert "x-secret" not in names, r.headers
        for h in ("proxy-connection", "upgrade", "trailer"):
            assert h not in names, "client saw %s: %r" % (h, r.headers)
        assert "timeout=7, max=77" not in r.header_all("Keep-Alive"), r.headers
        assert set(connection_tokens(r.headers)) <= {"keep-alive", "close"}, r.headers
        assert r.header("X-End-To-End") == "kept"
        # The connection still works: the target's "Connection" did not leak into berth's framing.
        assert c.request("GET", "/after").status == 200
