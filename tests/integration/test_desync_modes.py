# SPDX-License-Identifier: MIT
"""desync_mitigation_mode: each tier of ELB's classifier gets what the mode says (forward,
forward then close, or 400 and close) and blocked requests never reach the target."""

import pytest

from httpwire import Client

# One request per tier, shapes from the classifier's case data (tests/data/desync-cases).
# Ambiguous shapes llhttp cannot parse unambiguously (two Content-Length headers, even equal
# ones) are refused with 400 in every mode: berth never forwards what it cannot re-frame.
ACCEPTABLE = b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"   # GetHeadZeroContentLength
AMBIGUOUS = b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx"  # GET with a body
SEVERE = b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\nx"
COMPLIANT = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"

# mode -> tier -> expected outcome: "forward", "forward-close" or "400"
TABLE = {
    "monitor": {"compliant": "forward", "acceptable": "forward", "ambiguous": "forward"},
    "defensive": {"compliant": "forward", "acceptable": "forward",
                  "ambiguous": "forward-close", "severe": "400"},
    "strictest": {"compliant": "forward", "acceptable": "400", "ambiguous": "400",
                  "severe": "400"},
}
REQ = {"compliant": COMPLIANT, "acceptable": ACCEPTABLE, "ambiguous": AMBIGUOUS,
       "severe": SEVERE}


@pytest.mark.parametrize("mode,tier", [(m, t) for m in TABLE for t in TABLE[m]])
def test_desync_mode_outcome(berth, backend, http_config, mode, tier):
    """A request of the given tier is forwarded, forwarded then closed, or refused with 400 as the mode's table says."""
    b = backend()
    lb = berth(http_config([b.addr], desync_mitigation_mode=mode))
    expect = TABLE[mode][tier]
    with Client(lb.port, timeout=5) as c:
        c.send(REQ[tier])
        r = c.response()
        if expect == "400":
            assert r.status == 400, r
            assert c.wait_closed(2.0) is not None, "connection not closed after a 400"
            assert b.requests == [], "the target saw a refused request"
            return
        assert r.status == 200, r
        assert len(b.requests) == 1
        if expect == "forward-close":
            assert (r.header("Connection") or "").lower() == "close", r.headers
            assert c.wait_closed(2.0) is not None, "connection kept after an ambiguous request"
        else:
            r2 = c.request("GET", "/next")
            assert r2.status == 200, "keep-alive lost after a %s request" % tier


def lb_listener(lb):
    return next(iter(lb.ports))


def test_desync_metrics_count_classes(berth, backend, http_config):
    """Blocked and classified requests are counted per class in the metrics."""
    b = backend()
    lb = berth(http_config([b.addr]))
    for raw in (AMBIGUOUS, SEVERE):
        with Client(lb.port, timeout=5) as c:
            c.send(raw)
            c.response()
    text = lb.ctl("GET", "/metrics")[1]
    assert 'class="ambiguous"} 1' in text, text
    assert 'class="severe"} 1' in text, text
    assert 'berth_desync_blocked_total{listener="%s"} 1' % lb_listener(lb) in text, text


TE_AND_CL = (b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")


@pytest.mark.parametrize("mode", ["monitor", "defensive", "strictest"])
def test_te_with_cl_is_framed_by_te(berth, backend, http_config, mode):
    """Transfer-Encoding with Content-Length (ambiguous): the chunked framing wins and the target gets no Content-Length; defensive closes after the answer, strictest refuses with 400."""
    b = backend()
    lb = berth(http_config([b.addr], desync_mitigation_mode=mode))
    with Client(lb.port, timeout=5) as c:
        c.send(TE_AND_CL)
        r = c.response()
        if mode == "strictest":
            assert r.status == 400, r
            assert c.wait_closed(2.0) is not None
            assert b.requests == []
            return
        assert r.status == 200, r
        req = b.requests[-1]
        assert req.body == b"abc", req.body
        assert req.header("Content-Length") is None, req.headers
        assert req.header("Transfer-Encoding") == "chunked"
        if mode == "defensive":
            assert c.wait_closed(2.0) is not None, "ambiguous request: connection not closed"


# ---- heads llhttp refuses but ELB forwards: mended (src/proto/http_tolerate.c) ----

MENDED = [
    # (raw head, target the target must see, fields it must see, fields it must not)
    (b"PUT /m HTTP/1.1\r\nx-custom : v\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
     "/m", [("x-custom", "v")], []),
    (b"POST /m HTTP/1.1\r\n\x01Odd-Name: v\r\nKeep: k\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
     "/m", [("Keep", "k")], ["\x01Odd-Name", "Odd-Name"]),
    (b"POST /m HTTP/1.1\r\nSome-Header: a\x01b\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
     "/m", [("Some-Header", "a b")], []),
    (b"GET /m HTTP/1.2\r\nHost: x\r\n\r\n", "/m", [], []),
    (b"GET /m?q=a b HTTP/1.1\r\nHost: x\r\n\r\n", "/m?q=a%20b", [], []),
    (b"GET  HTTP/1.1\r\nHost: x\r\n\r\n", "/", [], []),
]


@pytest.mark.parametrize("raw,target,present,absent", MENDED,
                         ids=["space-before-colon", "ctl-in-name", "ctl-in-value", "http-1.2",
                              "space-in-target", "empty-target"])
@pytest.mark.parametrize("mode", ["defensive", "monitor"])
def test_acceptable_head_is_mended_and_forwarded(berth, backend, http_config, mode, raw,
                                                 target, present, absent):
    """A head ELB forwards but llhttp refuses reaches the target as a valid head: an invalid field name dropped, a space before the colon and control bytes gone, the target re-encoded; the connection stays open."""
    b = backend()
    lb = berth(http_config([b.addr], desync_mitigation_mode=mode))
    with Client(lb.port, timeout=5) as c:
        c.send(raw)
        r = c.response()
        assert r.status == 200, r
        assert len(b.requests) == 1, b.requests
        req = b.requests[0]
        assert req.target == target, req
        for name, value in present:
            assert req.header_all(name) == [value], req.headers
        names = [n for n, _ in req.headers]
        for name in absent:
            assert name not in names, req.headers
        r2 = c.request("GET", "/next")
        assert r2.status == 200 and b.requests[-1].target == "/next"


def test_acceptable_head_refused_in_strictest(berth, backend, http_config):
    """strictest still answers 400 to an Acceptable head, mended or not, and the target sees nothing."""
    b = backend()
    lb = berth(http_config([b.addr], desync_mitigation_mode="strictest"))
    with Client(lb.port, timeout=5) as c:
        c.send(MENDED[0][0])
        assert c.response().status == 400
    assert b.requests == [] and b.connections == 0


@pytest.mark.parametrize("te_lines,forwarded", [
    (b"Transfer-Encoding: gzip, chunked\r\n", ["gzip, chunked"]),
    (b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", ["gzip", "chunked"]),
    (b"Transfer-Encoding: chunked;ext=1\r\n", ["chunked"]),
    (b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked;x\r\n", ["gzip, chunked"]),
])
def test_te_list_ending_in_chunked_is_forwarded(berth, backend, http_config, te_lines, forwarded):
    """A Transfer-Encoding list whose final coding is chunked frames the body as chunked: passed on unchanged, or with a bare final chunked when that coding had parameters; never with a Content-Length."""
    b = backend()
    lb = berth(http_config([b.addr]))
    with Client(lb.port, timeout=5) as c:
        c.send(b"POST /te HTTP/1.1\r\nHost: x\r\n" + te_lines + b"\r\n3\r\nabc\r\n0\r\n\r\n")
        r = c.response()
        assert r.status == 200, r
        req = b.requests[0]
        assert req.body == b"abc", req
        assert req.header_all("Transfer-Encoding") == forwarded, req.headers
        assert req.header_all("Content-Length") == [], req.headers
        r2 = c.request("GET", "/next")
        assert r2.status == 200 and b.requests[-1].target == "/next"


def test_te_without_final_chunked_is_501(berth, backend, http_config):
    """A request whose final transfer coding is not chunked gets 501 and the target sees nothing."""
    b = backend()
    lb = berth(http_config([b.addr]))
    with Client(lb.port, timeout=5) as c:
        c.send(b"POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")
        assert c.response().status in (400, 501)
    with Client(lb.port, timeout=5) as c:
        c.send(b"POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")
        assert c.response().status == 501
    assert b.requests == []
