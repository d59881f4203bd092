# SPDX-License-Identifier: MIT
"""Target group algorithms: smooth weighted round robin, least outstanding requests,
weighted random, and slow start ramping up a newly registered target."""

import collections
import threading
import time


from httpwire import Client


def group_config(targets, algorithm, **group):
    g = {"name": "app", "protocol": "HTTP", "algorithm": algorithm,
         "health_check": {"enabled": False}, "targets": list(targets)}
    g.update(group)
    return {
        "workers": 1,
        "listeners": [{"name": "web", "protocol": "HTTP", "idle_timeout": "60s",
                       "header_timeout": "10s",
                       "default_action": {"forward": {"target_groups": [{"name": "app"}]}}}],
        "target_groups": [g],
    }


def weighted(b, weight):
    return {"id": b.host, "port": b.port, "weight": weight}


def make_slow(b, seconds):
    """Makes backend <b> sleep <seconds> before answering any request."""
    answer = b._answer

    def slow(s, req, close):
        time.sleep(seconds)
        answer(s, req, close)
    b._answer = slow


def picks(port, n, path="/pick"):
    """<n> sequential requests on one keep-alive connection; returns the X-Backend of each."""
    out = []
    with Client(port) as c:
        for i in range(n):
            r = c.request("GET", "%s/%d" % (path, i))
            assert r.status == 200, "request %d: %r" % (i, r)
            out.append(r.header("X-Backend"))
    return out


def longest_run(seq, item):
    best = cur = 0
    for x in seq:
        cur = cur + 1 if x == item else 0
        best = max(best, cur)
    return best


def test_round_robin_weighted_smooth(berth, backend):
    """Round robin over targets weighted 3 and 1 gives 300/100 (+-2) of 400 requests, never more than 3 in a row to one target."""
    heavy, light = backend(), backend()
    lb = berth(group_config([weighted(heavy, 3), weighted(light, 1)], "round_robin"))
    seq = picks(lb.port, 400)
    counts = collections.Counter(seq)
    assert set(counts) == {heavy.addr, light.addr}, counts
    assert abs(counts[heavy.addr] - 300) <= 2 and abs(counts[light.addr] - 100) <= 2, counts
    runs = {a: longest_run(seq, a) for a in (heavy.addr, light.addr)}
    assert max(runs.values()) <= 3, "longest runs %r; first 16 picks: %r" % (runs, seq[:16])


def test_least_outstanding_requests_avoids_slow_target(berth, backend):
    """With least_outstanding_requests, 8 concurrent clients send over 80% of requests to the fast target while the other takes 300 ms per request."""
    slow, fast = backend(), backend()
    make_slow(slow, 0.3)
    lb = berth(group_config([slow.addr, fast.addr], "least_outstanding_requests"))
    counts = collections.Counter()
    failures = []
    lock = threading.Lock()
    deadline = time.monotonic() + 3.0

    def client(k):
        try:
            with Client(lb.port, timeout=10) as c:
                i = 0
                while time.monotonic() < deadline:
                    r = c.request("GET", "/lor/%d/%d" % (k, i))
                    i += 1
                    with lock:
                        if r.status != 200:
                            failures.append(r)
                        counts[r.header("X-Backend")] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                failures.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not failures, failures[:3]
    total = sum(counts.values())
    assert total >= 100, "only %d requests completed in 3 s: %r" % (total, counts)
    share = counts[fast.addr] / float(total)
    assert share > 0.8, "fast target got %.1f%% of %d requests: %r" % (share * 100, total, counts)


def test_weighted_random(berth, backend):
    """weighted_random with weights 1 and 3 sends 75% (+-5%) of 2000 requests to the heavier target, in a random (not cyclic) order."""
    light, heavy = backend(), backend()
    lb = berth(group_config([weighted(light, 1), weighted(heavy, 3)], "weighted_random"))
    seq = picks(lb.port, 2000)
    counts = collections.Counter(seq)
    share = counts[heavy.addr] / 2000.0
    assert 0.70 <= share <= 0.80, "heavy target got %.1f%%: %r" % (share * 100, counts)
    # Random picks make runs of 4+ heavy picks common (~150 expected in 2000 picks); the
    # smooth round robin cycle (H H L H) never has one.
    assert longest_run(seq, heavy.addr) >= 4, "picks look cyclic: %r" % seq[:24]


def test_slow_start_ramps_new_target(berth, backend):
    """With slow_start 30s, a target registered at run time first gets under 15% of requests and a larger share seconds later."""
    old, new = backend(), backend()
    lb = berth(group_config([old.addr], "round_robin", slow_start="30s"))
    assert picks(lb.port, 5, "/warm") == [old.addr] * 5
    status, body = lb.ctl("POST", "/v1/target-groups/app/register",
                          {"Targets": [{"Id": new.host, "Port": new.port}]})
    assert 200 <= status < 300, (status, body)
    t0 = time.monotonic()
    first = picks(lb.port, 200, "/early").count(new.addr)
    early_s = time.monotonic() - t0
    time.sleep(max(0.0, 4.5 - (time.monotonic() - t0)))
    later = picks(lb.port, 200, "/later").count(new.addr)
    late_s = time.monotonic() - t0
    assert first < 30, "new target got %d of 200 requests in its first %.1fs" % (first, early_s)
    assert later > first, "new target's share did not grow: %d of 200 at first, %d of 200 " \
        "after %.1fs" % (first, later, late_s)
    # Linear ramp over 30s: about 13% at 4.5s, far from the even 50% split.
    assert later < 70, "new target got %d of 200 requests %.1fs into a 30s slow start" % (
        later, late_s)
