# SPDX-License-Identifier: MIT
"""Retries: a request whose target connection failed before any byte was sent goes elsewhere."""

import collections

from backends import refused_addr
from httpwire import fetch


def test_refused_target_retried_on_live_one(berth, backend, http_config):
    """With one refusing and one live target, 20 requests all get 200 from the live target, each sent once."""
    live = backend()
    lb = berth(http_config([refused_addr("127.0.0.9"), live.addr]))
    seen = collections.Counter()
    for i in range(20):
        r = fetch(lb.port, "GET", "/retry/%d" % i)
        assert r.status == 200, "request %d: %r" % (i, r)
        seen[r.header("X-Backend")] += 1
    assert seen == {live.addr: 20}
    assert sorted(q.target for q in live.requests) == sorted("/retry/%d" % i for i in range(20))


def test_retry_keeps_request_body(berth, backend, http_config):
    """A POST retried after a refused connection reaches the live target with its whole body."""
    live = backend()
    lb = berth(http_config([refused_addr("127.0.0.9"), live.addr]))
    for i in range(4):
        body = b"payload-%d-" % i * 1000
        r = fetch(lb.port, "POST", "/echo", body=body)
        assert r.status == 200, r
        assert r.body == body
    assert len(live.requests) == 4
