# SPDX-License-Identifier: MIT
"""DNS service discovery against a real DNS server (dnsmasq, started by the test on a
loopback port with records from files the test rewrites): targets appear from A and SRV
records, SRV gives the port, a target that leaves the answer drains, and a resolver outage
keeps the last good set (and says so in the health view, the metrics and the log)."""

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from backends import Backend
from conftest import free_port, metric
from httpwire import fetch
from l4servers import free_port as free_tcp_udp_port

DNSMASQ = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq")
                                      else None)
pytestmark = pytest.mark.skipif(DNSMASQ is None,
                                reason="dnsmasq not installed (Debian: apt-get install dnsmasq-base)")


class Dns:
    """dnsmasq on 127.0.0.1:<port>, authoritative for the test's names only. A records live
    in a hosts directory dnsmasq watches (rewritten files are picked up at once); SRV
    records are command-line options, so changing them restarts dnsmasq."""

    def __init__(self, tmpdir):
        self.dir = os.path.join(str(tmpdir), "dns")
        self.hosts = os.path.join(self.dir, "hosts")
        os.makedirs(self.hosts)
        self.port = free_tcp_udp_port()  # dnsmasq binds both
        self.srv = []  # (name, target, port, weight)
        self.host_records = {}  # name -> ip, for SRV targets
        self.proc = None

    @property
    def resolver(self):
        return "127.0.0.1:%d" % self.port

    def set_a(self, name, ips):
        """Makes <name> resolve to <ips> (an empty list removes the name)."""
        path = os.path.join(self.hosts, name)
        tmp = os.path.join(self.dir, "." + name)
        with open(tmp, "w") as f:
            for ip in ips:
                f.write("%s %s\n" % (ip, name))
        os.rename(tmp, path)

    def start(self):
        args = [DNSMASQ, "--keep-in-foreground", "--no-daemon", "--port=%d" % self.port,
                "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
                "--local=/svc.test/",
                "--hostsdir=" + self.hosts, "--local-ttl=1", "--pid-file=",
                "--log-facility=" + os.path.join(self.dir, "dnsmasq.log")]
        for name, target, port, weight in self.srv:
            args.append("--srv-host=%s,%s,%d,0,%d" % (name, target, port, weight))
        for name, ip in self.host_records.items():
            args.append("--host-record=%s,%s" % (name, ip))
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dnsmasq exited: %s" % self.proc.stderr.read().decode())
            if self._answers():
                return
            time.sleep(0.05)
        raise RuntimeError("dnsmasq did not answer on port %d" % self.port)

    def _answers(self):
        """True once the server answers a query (any answer)."""
        q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04test\x00\x00\x01\x00\x01"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        try:
            s.sendto(q, ("127.0.0.1", self.port))
            return len(s.recv(512)) > 0
        except OSError:
            return False
        finally:
            s.close()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(5)
        self.proc = None

    def restart(self):
        self.stop()
        self.start()


@pytest.fixture
def dns(tmp_path):
    d = Dns(tmp_path)
    yield d
    d.stop()


def backends_on(port, hosts):
    return [Backend(h, "http", port) for h in hosts]


def dns_config(http_config, discovery, delay="1s"):
    cfg = http_config([])
    g = cfg["target_groups"][0]
    g.pop("targets", None)
    g["deregistration_delay"] = delay
    g["health_check"] = {"enabled": False}
    g["discovery"] = discovery
    return cfg


def health(lb, group="app"):
    status, body = lb.ctl("GET", "/v1/target-groups/%s/health" % group)
    assert status == 200, (status, body)
    return body


def targets(lb, group="app"):
    """{"ip:port": (state, source)} of the group."""
    out = {}
    for d in health(lb, group)["TargetHealthDescriptions"]:
        key = "%s:%d" % (d["Target"]["Id"], d["Target"]["Port"])
        out[key] = (d["TargetHealth"]["State"], d["Source"])
    return out


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.1)



def served_by(lb, n=30):
    seen = set()
    for _ in range(n):
        r = fetch(lb.port, path="/")
        assert r.status == 200, r
        seen.add(r.header("X-Backend"))
    return seen


def test_a_records_become_targets_and_serve(berth, http_config, dns):
    """The addresses of an A record become the group's targets (Source "dns") and take traffic."""
    port = free_port("127.0.0.2")
    bs = backends_on(port, ["127.0.0.2", "127.0.0.3"])
    try:
        dns.set_a("web.svc.test", ["127.0.0.2", "127.0.0.3"])
        dns.start()
        lb = berth(dns_config(http_config, {"dns": "web.svc.test", "type": "A", "port": port,
                                            "interval": "1s", "resolvers": [dns.resolver]}))
        want = {b.addr for b in bs}
        wait_for(lambda: set(targets(lb)) == want, what="both targets")
        assert all(src == "dns" for _, src in targets(lb).values())
        assert served_by(lb) == want
        d = health(lb)["Discovery"]
        assert d["Name"] == "web.svc.test" and d["Type"] == "A" and d["State"] == "ok", d
        assert d["Targets"] == 2
        assert metric(lb, "berth_discovery_targets", target_group="app") == 2
    finally:
        for b in bs:
            b.stop()


def test_target_leaving_the_answer_drains_and_new_one_joins(berth, http_config, dns):
    """A record that leaves the answer drains its target (then it is gone); a new one joins."""
    port = free_port("127.0.0.2")
    bs = backends_on(port, ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    try:
        dns.set_a("web.svc.test", ["127.0.0.2", "127.0.0.3"])
        dns.start()
        lb = berth(dns_config(http_config, {"dns": "web.svc.test", "port": port,
                                            "interval": "1s", "resolvers": [dns.resolver]},
                              delay="3s"))
        wait_for(lambda: len(targets(lb)) == 2, what="two targets")
        dns.set_a("web.svc.test", ["127.0.0.3", "127.0.0.4"])
        gone = "127.0.0.2:%d" % port
        wait_for(lambda: targets(lb).get(gone, ("",))[0] == "draining", what="draining")
        wait_for(lambda: "127.0.0.4:%d" % port in targets(lb), what="the new target")
        assert served_by(lb) == {"127.0.0.3:%d" % port, "127.0.0.4:%d" % port}
        wait_for(lambda: gone not in targets(lb), timeout=10, what="the drain to end")
        with open(lb.stderr_path) as f:
            assert "127.0.0.2:%d left web.svc.test, draining" % port in f.read()
    finally:
        for b in bs:
            b.stop()


def test_srv_records_give_port_and_a_port_change_moves_the_target(berth, http_config, dns):
    """SRV records give each target its port; when a record's port changes, the old target drains and the new one serves."""
    p1, p2, p3 = free_port("127.0.0.2"), free_port("127.0.0.3"), free_port("127.0.0.3")
    b1, b2, b3 = Backend("127.0.0.2", "http", p1), Backend("127.0.0.3", "http", p2), \
        Backend("127.0.0.3", "http", p3)
    try:
        dns.host_records = {"a.svc.test": "127.0.0.2", "b.svc.test": "127.0.0.3"}
        dns.srv = [("_web._tcp.svc.test", "a.svc.test", p1, 10),
                   ("_web._tcp.svc.test", "b.svc.test", p2, 20)]
        dns.start()
        lb = berth(dns_config(http_config, {"dns": "_web._tcp.svc.test", "type": "SRV",
                                            "interval": "1s", "resolvers": [dns.resolver]},
                              delay="1s"))
        wait_for(lambda: set(targets(lb)) == {b1.addr, b2.addr}, what="the SRV targets")
        assert served_by(lb) == {b1.addr, b2.addr}
        dns.srv = [("_web._tcp.svc.test", "a.svc.test", p1, 10),
                   ("_web._tcp.svc.test", "b.svc.test", p3, 20)]
        dns.restart()
        wait_for(lambda: b3.addr in targets(lb), what="the new port")
        wait_for(lambda: b2.addr not in targets(lb), what="the old port to drain away")
        assert served_by(lb) == {b1.addr, b3.addr}
    finally:
        for b in (b1, b2, b3):
            b.stop()


def test_resolver_outage_keeps_the_last_good_set(berth, http_config, dns):
    """With the resolver down, the targets stay and serve; the health view, metric and log say the lookups fail; when it is back, updates resume."""
    port = free_port("127.0.0.2")
    bs = backends_on(port, ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    try:
        dns.set_a("web.svc.test", ["127.0.0.2", "127.0.0.3"])
        dns.start()
        lb = berth(dns_config(http_config, {"dns": "web.svc.test", "port": port,
                                            "interval": "1s", "resolvers": [dns.resolver]}))
        want = {bs[0].addr, bs[1].addr}
        wait_for(lambda: set(targets(lb)) == want, what="both targets")
        dns.stop()
        wait_for(lambda: health(lb)["Discovery"]["State"] == "failing", timeout=15,
                 what="the failing state")
        d = health(lb)["Discovery"]
        assert d["Failures"] >= 1 and d["LastError"], d
        assert set(targets(lb)) == want, "targets dropped during the outage"
        assert served_by(lb) == want
        assert metric(lb, "berth_discovery_failing", target_group="app") == 1
        assert metric(lb, "berth_discovery_failures_total", target_group="app") >= 1
        with open(lb.stderr_path) as f:
            assert "keeping the 2 targets of the last good answer" in f.read()
        dns.set_a("web.svc.test", ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
        dns.start()
        wait_for(lambda: len(targets(lb)) == 3, timeout=15, what="updates to resume")
        assert health(lb)["Discovery"]["State"] == "ok"
        assert metric(lb, "berth_discovery_failing", target_group="app") == 0
    finally:
        for b in bs:
            b.stop()


def test_empty_answer_keeps_targets(berth, http_config, dns):
    """A name that stops resolving (NXDOMAIN) does not empty the group."""
    port = free_port("127.0.0.2")
    bs = backends_on(port, ["127.0.0.2"])
    try:
        dns.set_a("web.svc.test", ["127.0.0.2"])
        dns.start()
        lb = berth(dns_config(http_config, {"dns": "web.svc.test", "port": port,
                                            "interval": "1s", "resolvers": [dns.resolver]}))
        wait_for(lambda: len(targets(lb)) == 1, what="the target")
        dns.set_a("web.svc.test", [])
        wait_for(lambda: health(lb)["Discovery"]["State"] == "failing", what="failing")
        assert health(lb)["Discovery"]["LastError"] == "NXDOMAIN for web.svc.test", health(lb)
        assert list(targets(lb)) == [bs[0].addr]
        assert served_by(lb, 5) == {bs[0].addr}
    finally:
        for b in bs:
            b.stop()


def test_discovered_targets_survive_reload_and_stay_out_of_the_state_file(berth, http_config,
                                                                          dns, tmp_path):
    """A reload keeps discovered targets; the state file holds API registrations only, not DNS ones."""
    port = free_port("127.0.0.2")
    bs = backends_on(port, ["127.0.0.2"])
    try:
        dns.set_a("web.svc.test", ["127.0.0.2"])
        dns.start()
        cfg = dns_config(http_config, {"dns": "web.svc.test", "port": port, "interval": "1s",
                                       "resolvers": [dns.resolver]})
        state = str(tmp_path / "state.json")
        cfg["state_file"] = state
        lb = berth(cfg)
        wait_for(lambda: len(targets(lb)) == 1, what="the target")
        status, _ = lb.ctl("POST", "/v1/target-groups/app/register",
                           {"Targets": [{"Id": "127.0.0.9", "Port": 9}]})
        assert status == 200
        status, body = lb.ctl("POST", "/v1/reload")
        assert status == 200, body
        assert set(targets(lb)) == {bs[0].addr, "127.0.0.9:9"}
        with open(state) as f:
            text = f.read()
        assert "127.0.0.9" in text and "127.0.0.2" not in text, text
    finally:
        for b in bs:
            b.stop()


def test_aaaa_records_become_targets(berth, http_config, dns):
    """AAAA records work too: an IPv6 address becomes a target and serves."""
    port = free_port("127.0.0.2")
    b = Backend("::1", "http", port)
    try:
        dns.set_a("web6.svc.test", ["::1"])
        dns.start()
        lb = berth(dns_config(http_config, {"dns": "web6.svc.test", "type": "AAAA", "port": port,
                                            "interval": "1s", "resolvers": [dns.resolver]}))
        wait_for(lambda: list(targets(lb)) == ["::1:%d" % port], what="the IPv6 target")
        assert served_by(lb, 5) == {b.addr}
        assert health(lb)["Discovery"]["Type"] == "AAAA"
    finally:
        b.stop()


def test_issue15_unusable_answers_left_out(berth, http_config, dns):
    """Addresses in a DNS answer that cannot be targets (0.0.0.0, multicast, broadcast) are left out while the usable ones serve; an answer with only such addresses counts as empty and keeps the last good set."""
    port = free_port("127.0.0.2")
    bs = backends_on(port, ["127.0.0.2"])
    try:
        dns.set_a("web.svc.test", ["127.0.0.2", "0.0.0.0", "224.0.0.1", "255.255.255.255"])
        dns.start()
        lb = berth(dns_config(http_config, {"dns": "web.svc.test", "type": "A", "port": port,
                                            "interval": "1s", "resolvers": [dns.resolver]}))
        wait_for(lambda: targets(lb), what="a target")
        time.sleep(1.5)  # a second answer changes nothing
        assert list(targets(lb)) == [bs[0].addr], targets(lb)
        assert served_by(lb, 5) == {bs[0].addr}
        dns.set_a("web.svc.test", ["0.0.0.0"])
        wait_for(lambda: health(lb)["Discovery"]["State"] == "failing", what="failing")
        assert health(lb)["Discovery"]["LastError"] == "empty answer", health(lb)
        assert list(targets(lb)) == [bs[0].addr]
    finally:
        for b in bs:
            b.stop()
