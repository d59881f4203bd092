# SPDX-License-Identifier: MIT
"""Access log: one JSON object per request with the fields of ALB access logs."""

import re

from httpwire import Client, build_request, fetch

ALB_FIELDS = ("type", "time", "client", "target", "request_processing_time",
              "target_processing_time", "response_processing_time", "elb_status_code",
              "target_status_code", "received_bytes", "sent_bytes", "request", "user_agent",
              "target_group", "request_id", "matched_rule", "error_reason")


def is_empty(v):
    return v in (None, "", "-")


def test_access_log_fields(berth, backend, http_config):
    """A proxied request writes one JSON line naming client, target, statuses, bytes, request line, user agent, request id and group."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    with Client(lb.port) as c:
        raw = build_request("GET", "/logme?x=1", "127.0.0.1:%d" % lb.port,
                            [("User-Agent", "itest-agent/2.0")])
        c.send(raw)
        r = c.response()
        assert r.status == 200, r
        client_addr = c.local_addr
    lines = lb.access_log(expect=1)
    assert len(lines) == 1, lines
    e = lines[0]
    missing = [f for f in ALB_FIELDS if f not in e]
    assert not missing, "missing fields %s in %r" % (missing, e)
    assert e["type"] == "http"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", str(e["time"])), e["time"]
    assert e["client"] == client_addr
    assert e["target"] == b1.addr
    assert str(e["elb_status_code"]) == "200"
    assert str(e["target_status_code"]) == "200"
    assert int(e["received_bytes"]) == len(raw), e
    assert int(e["sent_bytes"]) == r.raw_len, e
    assert e["request"] == "GET http://127.0.0.1:%d/logme?x=1 HTTP/1.1" % lb.port
    assert e["user_agent"] == "itest-agent/2.0"
    assert e["target_group"] == "app"
    assert e["request_id"] == b1.requests[0].header("X-Request-Id")
    assert is_empty(e["error_reason"]), e
    for f in ("request_processing_time", "target_processing_time", "response_processing_time"):
        assert float(e[f]) >= 0, e


def test_access_log_one_line_per_request(berth, backend, http_config):
    """Five requests on one keep-alive connection write five lines, in order, with the same client."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    with Client(lb.port) as c:
        for i in range(5):
            assert c.request("GET", "/n/%d" % i).status == 200
        client_addr = c.local_addr
    lines = lb.access_log(expect=5)
    assert len(lines) == 5, lines
    assert [e["request"].split(" ")[1].rsplit("/", 1)[1] for e in lines] == \
        [str(i) for i in range(5)]
    assert {e["client"] for e in lines} == {client_addr}
    assert len({e["request_id"] for e in lines}) == 5


def test_access_log_target_processing_time(berth, backend, http_config):
    """A target that takes 300ms shows a target_processing_time of at least 0.3s."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    assert fetch(lb.port, "GET", "/slow?ms=300").status == 200
    e = lb.access_log(expect=1)[0]
    assert 0.29 <= float(e["target_processing_time"]) < 5, e


def test_access_log_error_reason(berth, http_config):
    """A berth-generated 503 is logged with elb_status_code 503, no target status and an error reason."""
    lb = berth(http_config([]))
    assert fetch(lb.port, "GET", "/none", headers=[("User-Agent", "ua")]).status == 503
    lines = lb.access_log(expect=1)
    assert len(lines) == 1, lines
    e = lines[0]
    assert str(e["elb_status_code"]) == "503"
    assert is_empty(e["target_status_code"]), e
    assert is_empty(e["target"]), e
    assert not is_empty(e["error_reason"]), e
    assert e["target_group"] in ("app", None, "", "-")


def test_access_log_504_error_reason(berth, backend, http_config):
    """A 504 from a silent target is logged with the target address and an error reason."""
    b1 = backend("silent")
    lb = berth(http_config([b1.addr], idle_timeout="1s"))
    assert fetch(lb.port, "GET", "/silent", timeout=10).status == 504
    e = lb.access_log(expect=1)[0]
    assert str(e["elb_status_code"]) == "504"
    assert e["target"] == b1.addr
    assert is_empty(e["target_status_code"]), e
    assert not is_empty(e["error_reason"]), e
