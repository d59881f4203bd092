# SPDX-License-Identifier: MIT
"""Control API registration: socket permissions, many targets per call, idempotency, and
calls that fail validation (bad targets, unknown group, malformed bodies) changing nothing."""

import collections
import json
import os
import stat
import time

from httpwire import fetch


def tid(d):
    """"ip:port" (IPv6 bracketed) of one TargetHealthDescriptions entry."""
    ip, port = d["Target"]["Id"], d["Target"]["Port"]
    return "[%s]:%d" % (ip, port) if ":" in ip else "%s:%d" % (ip, port)


def health(lb, group="app"):
    """{"ip:port": description} from GET /v1/target-groups/GROUP/health."""
    status, body = lb.ctl("GET", "/v1/target-groups/%s/health" % group)
    assert status == 200, (status, body)
    return {tid(d): d for d in body["TargetHealthDescriptions"]}


def groups(lb):
    status, body = lb.ctl("GET", "/v1/target-groups")
    assert status == 200, (status, body)
    return {g["TargetGroupName"]: g for g in body["TargetGroups"]}


def call(lb, verb, targets, group="app", **extra):
    body = {"Targets": targets}
    body.update(extra)
    return lb.ctl("POST", "/v1/target-groups/%s/%s" % (group, verb), body)


def tgt(addr):
    """{"Id","Port"} for "ip:port"."""
    ip, port = addr.rsplit(":", 1)
    return {"Id": ip, "Port": int(port)}


def error_code(body):
    return body.get("Error", {}).get("Code") if isinstance(body, dict) else None


def test_socket_mode(berth, http_config):
    """The control socket is a Unix socket with mode 0660."""
    lb = berth(http_config([]))
    st = os.stat(lb.sock_path)
    assert stat.S_ISSOCK(st.st_mode), oct(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(stat.S_IMODE(st.st_mode))


def test_many_targets_per_call(berth, backend, http_config):
    """One register call adds several targets that all take traffic, and one deregister call drains several: as ELB, they stay listed as draining (no traffic) until the deregistration delay ends."""
    bs = [backend() for _ in range(3)]
    lb = berth(http_config([]))
    status, body = call(lb, "register", [tgt(b.addr) for b in bs])
    assert (status, body) == (200, {}), (status, body)
    view = health(lb)
    assert set(view) == {b.addr for b in bs}, view
    for b in bs:
        assert view[b.addr]["TargetHealth"]["State"] == "unavailable", view[b.addr]
        assert view[b.addr]["Source"] == "api", view[b.addr]
    assert groups(lb)["app"]["Targets"] == 3
    seen = collections.Counter(fetch(lb.port, "GET", "/many/%d" % i).header("X-Backend")
                               for i in range(9))
    assert seen == {b.addr: 3 for b in bs}, seen
    status, body = call(lb, "deregister", [tgt(bs[0].addr), tgt(bs[1].addr)])
    assert (status, body) == (200, {}), (status, body)
    view = health(lb)
    assert set(view) == {b.addr for b in bs}, view
    for b in bs[:2]:
        assert view[b.addr]["TargetHealth"]["State"] == "draining", view[b.addr]
    seen = {fetch(lb.port, "GET", "/after/%d" % i).header("X-Backend") for i in range(4)}
    assert seen == {bs[2].addr}, seen


def test_thousand_targets_one_call(berth, http_config):
    """A register call with 1,000 targets lists all of them in the health view and the group count."""
    lb = berth(http_config([]))
    addrs = ["127.1.%d.%d:8080" % (i // 250, i % 250 + 1) for i in range(1000)]
    status, body = call(lb, "register", [tgt(a) for a in addrs])
    assert (status, body) == (200, {}), (status, body)
    assert groups(lb)["app"]["Targets"] == 1000
    assert set(health(lb)) == set(addrs)


def test_register_idempotent_in_view(berth, backend, http_config):
    """Registering a target twice in one call, again in a second call, or registering a config target lists each target once."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    again = [tgt("127.0.0.9:81"), tgt("127.0.0.9:81")]
    for _ in range(2):
        status, body = call(lb, "register", again + [tgt(b1.addr)])
        assert (status, body) == (200, {}), (status, body)
    status, body = lb.ctl("GET", "/v1/target-groups/app/health")
    ids = [tid(d) for d in body["TargetHealthDescriptions"]]
    assert sorted(ids) == sorted([b1.addr, "127.0.0.9:81"]), ids
    assert groups(lb)["app"]["Targets"] == 2
    # The config target keeps its state and is not turned into an API one.
    assert health(lb)[b1.addr]["TargetHealth"]["State"] == "unavailable"


def test_deregister_idempotent(berth, backend, http_config):
    """Deregistering a target twice, or one that was never registered, answers 200 and changes nothing more."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    status, body = call(lb, "register", [tgt("127.0.0.9:81"), tgt("127.0.0.9:82")])
    assert status == 200, body
    status, body = call(lb, "deregister", [tgt("127.0.0.9:81")])
    assert (status, body) == (200, {}), (status, body)
    view = health(lb)
    assert view["127.0.0.9:81"]["TargetHealth"]["State"] == "draining", view
    assert set(view) == {b1.addr, "127.0.0.9:81", "127.0.0.9:82"}, view
    for targets in ([tgt("127.0.0.9:81")], [tgt("127.0.0.9:99")],
                    [tgt("127.0.0.9:81"), tgt("127.0.0.9:81")]):
        status, body = call(lb, "deregister", targets)
        assert (status, body) == (200, {}), (targets, status, body)
        assert health(lb) == view, targets
    assert fetch(lb.port, "GET", "/").status == 200


INVALID_TARGETS = [
    {"Id": "127.0.0.300", "Port": 8080},
    {"Id": "not-an-ip", "Port": 8080},
    {"Id": "example.com", "Port": 8080},
    {"Id": "", "Port": 8080},
    {"Id": "127.0.0.9:80", "Port": 80},
    {"Id": "fd00::zz", "Port": 80},
    {"Id": "127.0.0.9", "Port": 0},
    {"Id": "127.0.0.9", "Port": 65536},
    {"Id": "127.0.0.9", "Port": -1},
]


def test_invalid_target_changes_nothing(berth, backend, http_config):
    """A register or deregister call with one valid and one invalid target gives 400 InvalidTarget and neither target changes."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    status, body = call(lb, "register", [tgt("127.0.0.9:81")])
    assert status == 200, body
    before = health(lb)
    assert before["127.0.0.9:81"]["TargetHealth"]["State"] == "unavailable"
    failures = []
    for bad in INVALID_TARGETS:
        # register: a new valid target next to the bad one must not be added;
        # deregister: the registered target next to the bad one must not start draining.
        for verb, good in (("register", tgt("127.0.0.9:82")),
                           ("deregister", tgt("127.0.0.9:81"))):
            status, body = call(lb, verb, [good, bad])
            after = health(lb)
            if status != 400 or error_code(body) != "InvalidTarget" \
                    or not body["Error"].get("Message") or after != before:
                failures.append("%s %s -> %s %s; view %s" % (
                    verb, json.dumps([good, bad]), status, body,
                    "unchanged" if after == before else "changed: %s" % sorted(after)))
    assert not failures, "\n".join(failures)
    assert groups(lb)["app"]["Targets"] == 2


def test_unknown_group_404(berth, http_config):
    """register, deregister and health on a group that does not exist answer 404 TargetGroupNotFound naming it."""
    lb = berth(http_config(["127.0.0.9:81"]))
    for method, verb, body in (("POST", "register", {"Targets": [tgt("127.0.0.9:82")]}),
                               ("POST", "deregister", {"Targets": [tgt("127.0.0.9:81")]}),
                               ("GET", "health", None)):
        status, resp = lb.ctl(method, "/v1/target-groups/nosuch/%s" % verb, body)
        assert status == 404, (verb, status, resp)
        assert error_code(resp) == "TargetGroupNotFound", (verb, resp)
        assert "nosuch" in resp["Error"].get("Message", ""), (verb, resp)
    assert set(health(lb)) == {"127.0.0.9:81"}
    assert health(lb)["127.0.0.9:81"]["TargetHealth"]["State"] == "unavailable"


MALFORMED = [
    "",
    "not json",
    '{"Targets": [',
    '{"Targets": [{"Id": "127.0.0.9", "Port": 82}]} trailing',
    "{}",
    '{"targets": [{"Id": "127.0.0.9", "Port": 82}]}',
    '{"Targets": []}',
    '{"Targets": null}',
    '{"Targets": {"Id": "127.0.0.9", "Port": 82}}',
    '[{"Id": "127.0.0.9", "Port": 82}]',
    '{"Targets": [{"Id": "127.0.0.9", "Port": 82}, {"Id": "127.0.0.9"}]}',
    '{"Targets": [{"Id": "127.0.0.9", "Port": 82}, {"Port": 82}]}',
    '{"Targets": [{"Id": "127.0.0.9", "Port": 82}, "127.0.0.9:82"]}',
    '{"Targets": [{"Id": 2130706441, "Port": 82}]}',
]


def test_malformed_body_changes_nothing(berth, backend, http_config):
    """Register and deregister bodies that are not JSON or lack a usable Targets array give 400 ValidationError and change nothing."""
    b1 = backend()
    lb = berth(http_config([b1.addr]))
    before = health(lb)
    failures = []
    for verb in ("register", "deregister"):
        for text in MALFORMED:
            # For deregister, the valid-looking entries name the config target.
            body = text.replace('"127.0.0.9", "Port": 82', '"%s", "Port": %d' % (
                b1.host, b1.port)) if verb == "deregister" else text
            status, resp = lb.ctl("POST", "/v1/target-groups/app/%s" % verb, body)
            after = health(lb)
            if status != 400 or error_code(resp) != "ValidationError" or after != before:
                failures.append("%s %r -> %s %s; view %s" % (
                    verb, body, status, resp,
                    "unchanged" if after == before else "changed: %s" % after))
    assert not failures, "\n".join(failures)
    assert fetch(lb.port, "GET", "/").header("X-Backend") == b1.addr
