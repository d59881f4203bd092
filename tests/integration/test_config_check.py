# SPDX-License-Identifier: MIT
"""`berth -t -c FILE`: config checking with FILE:LINE:COL errors, and every example in conf/."""

import glob
import os
import re
import subprocess

import pytest

from conftest import berth_bin

CONF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "conf")
EXAMPLES = sorted(glob.glob(os.path.join(CONF_DIR, "*.yaml")))

VALID = """\
workers: 1
control: {socket: /tmp/berth-check.sock}
access_log: off
listeners:
  - name: web
    protocol: HTTP
    bind: 127.0.0.1:18080
    idle_timeout: 60s
    header_timeout: 10s
    default_action: {forward: {target_groups: [{name: app}]}}
target_groups:
  - name: app
    protocol: HTTP
    health_check: {enabled: false}
    targets: ["127.0.0.2:8080", "127.0.0.3:8080"]
"""


def check(path):
    p = subprocess.run([berth_bin(), "-t", "-c", path], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


def write(tmp_path, text):
    path = str(tmp_path / "check.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def error_lines(path, out):
    return [ln for ln in out.splitlines() if ln.startswith(path + ":")]


def test_valid_config_passes(tmp_path):
    """A valid file makes `berth -t -c` exit 0 without starting to serve."""
    rc, out = check(write(tmp_path, VALID))
    assert rc == 0, out


def test_unknown_key_reported_with_position(tmp_path):
    """An unknown key makes `berth -t -c` exit 1 with FILE:LINE:COL pointing at that key."""
    text = VALID.replace("    idle_timeout: 60s\n", "    idle_timeout: 60s\n    idle_timout: 5s\n")
    path = write(tmp_path, text)
    line = text.splitlines().index("    idle_timout: 5s") + 1
    rc, out = check(path)
    assert rc == 1, out
    errs = error_lines(path, out)
    assert errs, "no FILE:LINE:COL line in:\n" + out
    assert any(e.startswith("%s:%d:5: " % (path, line)) for e in errs), \
        "expected %s:%d:5: ... in:\n%s" % (path, line, out)
    assert "idle_timout" in out


def test_missing_target_group_reported(tmp_path):
    """A rule forwarding to an undefined target group makes `berth -t -c` exit 1 with the reference's line."""
    text = VALID.replace("[{name: app}]", "[{name: nosuch}]")
    path = write(tmp_path, text)
    line = next(i + 1 for i, ln in enumerate(text.splitlines()) if "nosuch" in ln)
    rc, out = check(path)
    assert rc == 1, out
    errs = error_lines(path, out)
    assert any(re.match(r"^%s:%d:\d+: .*nosuch" % (re.escape(path), line), e) for e in errs), \
        "expected %s:%d:COL: ...nosuch... in:\n%s" % (path, line, out)


@pytest.mark.parametrize("bad,needle", [
    ("    idle_timeout: 60s\n", "    idle_timeout: sixty\n"),
    ("bind: 127.0.0.1:18080", "bind: 127.0.0.1:99999"),
    ("health_check: {enabled: false}", "health_check: {enabled: false, interval: 1s}"),
    ("workers: 1\n", "workers: [1, 2]\n"),
    ("    idle_timeout: 60s\n", "    idle_timeout: 60s\n    http2: {max_frame_size: 1k}\n"),
    ("    idle_timeout: 60s\n", "    idle_timeout: 60s\n    http2: {streams: 4}\n"),
    ("    idle_timeout: 60s\n", "    idle_timeout: 60s\n    http2: maybe\n"),
], ids=["bad-duration", "port-out-of-range", "interval-out-of-range", "list-for-scalar",
        "h2-frame-size", "h2-unknown-key", "h2-not-bool"])
def test_bad_values_reported(tmp_path, bad, needle):
    """A wrong type or out-of-range value makes `berth -t -c` exit 1 with a FILE:LINE:COL line."""
    text = VALID.replace(bad, needle, 1)
    assert text != VALID
    path = write(tmp_path, text)
    old = VALID.splitlines()
    line = next(i + 1 for i, ln in enumerate(text.splitlines()) if ln not in old)
    rc, out = check(path)
    assert rc == 1, out
    assert any(e.startswith("%s:%d:" % (path, line)) for e in error_lines(path, out)), \
        "expected %s:%d:COL: ... in:\n%s" % (path, line, out)


UDP_GROUP = """\
workers: 1
control: {socket: /tmp/berth-check.sock}
access_log: off
listeners:
  - name: dns
    protocol: UDP
    bind: 127.0.0.1:15353
    default_action: {forward: {target_groups: [{name: dns}]}}
target_groups:
  - name: dns
    protocol: UDP
    targets: ["127.0.0.2:53"]
%s"""


def test_udp_group_checked_over_tcp_traffic_port_warns(tmp_path, berth):
    """Issue 15, item 6: a UDP group whose health check would connect over TCP to the traffic port passes `berth -t` with a FILE:LINE:COL warning, which berth logs at start too; a check port silences it."""
    path = write(tmp_path, UDP_GROUP % "")
    rc, out = check(path)
    want = ("%s:10:5: warning: target group dns is UDP; its health check probes TCP port "
            "traffic-port, which a UDP-only target does not answer" % path)
    assert rc == 0, out
    assert want in out, out
    assert "ok" in out
    lb = berth(UDP_GROUP.replace("127.0.0.1:15353", "127.0.0.1:@PORT@")
               .replace("/tmp/berth-check.sock", "@TMP@/berth.sock") % "")
    assert " warn: " + want.replace(path, lb.config_path) in lb.stderr, lb.stderr
    path = write(tmp_path, UDP_GROUP % "    health_check: {port: 8053}\n")
    rc, out = check(path)
    assert rc == 0 and "warning" not in out, out


@pytest.mark.parametrize("example", EXAMPLES, ids=[os.path.basename(e) for e in EXAMPLES])
def test_example_config_is_valid(example):
    """Every example config shipped in conf/ passes `berth -t -c`."""
    rc, out = check(example)
    assert rc == 0, "%s:\n%s" % (example, out)


# ---- start-time checks: `-t` sees what the start would ----

def start_fails_too(path):
    """The start on the same file exits 1 within 2 s (and never serves)."""
    p = subprocess.run([berth_bin(), "-c", path], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=2)
    assert p.returncode == 1, p.stderr.decode(errors="replace")
    return p.stderr.decode(errors="replace")


def with_keys(tmp_path, extra, control=None):
    text = VALID.replace("control: {socket: /tmp/berth-check.sock}",
                         "control: {socket: %s}" % (control or tmp_path / "c.sock"))
    return write(tmp_path, extra + text)


def start_time_cases(tmp_path):
    """(top-level keys, control block or None, text the error names)."""
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    os.chmod(token, 0o644)                        # world-readable
    empty = tmp_path / "empty-token"
    empty.write_text("")
    os.chmod(empty, 0o600)
    bad_state = tmp_path / "state.json"
    bad_state.write_text('{"version": 1, "target_gr')
    ctl = "{socket: %s, listen: 127.0.0.1:19901, token_file: %s}"
    return [
        ("", ctl % (tmp_path / "c.sock", tmp_path / "missing-token"),
         "control.token_file %s: No such file" % (tmp_path / "missing-token")),
        ("", ctl % (tmp_path / "c.sock", token), "world-readable"),
        ("", ctl % (tmp_path / "c.sock", empty), "is empty"),
        ("state_file: %s/no-dir/state.json\n" % tmp_path, None,
         "state_file %s/no-dir/state.json: directory" % tmp_path),
        ("state_file: %s\n" % bad_state, None, "%s:1:25: state file is not valid JSON"
         % bad_state),
        ("user: no-such-user-berth\n", None, "user no-such-user-berth: no such user"),
        ("group: no-such-group-berth\n", None, "group no-such-group-berth: no such group"),
        ("pid_file: %s/no-dir/berth.pid\n" % tmp_path, None, "pid_file %s/no-dir/berth.pid"
         % tmp_path),
        ("cookie_key_file: %s/no-key\n" % tmp_path, None, "cookie_key_file %s/no-key"
         % tmp_path),
        ("", "{socket: %s/no-dir/c.sock}" % tmp_path, "control.socket"),
    ]


def test_start_time_problems_fail_check_and_start(tmp_path):
    """Each start-time problem (token file missing, world-readable or empty; state-file directory missing; corrupt state file; unknown user or group; pid-file directory missing; unreadable cookie key; control socket directory missing) fails `berth -t` with a line naming it, and the start fails the same way."""
    for extra, control, needle in start_time_cases(tmp_path):
        path = with_keys(tmp_path, extra)
        if control is not None:
            text = open(path).read().replace("control: {socket: %s}" % (tmp_path / "c.sock"),
                                             "control: " + control)
            path = write(tmp_path, text)
        rc, out = check(path)
        assert rc == 1, (extra, control, out)
        assert needle in out, (needle, out)
        assert not out.rstrip().endswith(": ok"), out
        err = start_fails_too(path)
        assert needle.split(":")[0] in err, (needle, err)


def test_check_passes_when_start_time_files_are_right(tmp_path):
    """With every named file present and right (token 0600, writable state directory, a state file saved by berth's format, existing user), `berth -t` passes."""
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    os.chmod(token, 0o600)
    state = tmp_path / "state.json"
    state.write_text('{"version":1,"target_groups":{"app":[{"Id":"127.0.0.9","Port":80}]}}\n')
    path = with_keys(tmp_path, "state_file: %s\npid_file: %s/berth.pid\nuser: root\n"
                     % (state, tmp_path))
    text = open(path).read().replace(
        "control: {socket: %s}" % (tmp_path / "c.sock"),
        "control: {socket: %s, listen: 127.0.0.1:19901, token_file: %s}"
        % (tmp_path / "c.sock", token))
    rc, out = check(write(tmp_path, text))
    assert rc == 0, out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to name another user")
def test_state_directory_must_be_writable_by_configured_user(tmp_path):
    """berth saves the state file after dropping to `user`: a state directory only root may write fails `-t` and the start, naming the user."""
    d = tmp_path / "lib"
    d.mkdir()
    os.chmod(d, 0o755)
    path = with_keys(tmp_path, "state_file: %s/state.json\nuser: nobody\n" % d)
    rc, out = check(path)
    assert rc == 1 and "directory %s is not writable by user nobody" % d in out, out
    start_fails_too(path)
    os.chown(d, 65534, -1)  # nobody
    rc, out = check(path)
    assert rc == 0, out
