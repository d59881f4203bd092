# SPDX-License-Identifier: MIT
"""Checks of the container files in docker/ without a Docker engine.

The Dockerfile is parsed by hand, compose.yaml with PyYAML when /usr/bin/python3 has it (a
textual check otherwise), the ECS task definition as JSON; the two berth configs go through
`berth -t -c`, and the entrypoint command is run on the host on temporary copies of the
configs (paths moved to a temp dir, ports free). BERTH_BIN: default build/berth of this checkout.
"""

import http.server
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

try:
    import yaml
except ImportError:  # the compose checks fall back to text
    yaml = None

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKER = os.path.join(REPO, "docker")
BERTH_BIN = os.environ.get("BERTH_BIN", os.path.join(REPO, "build", "berth"))
KNOWN = {"FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY",
         "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL",
         "HEALTHCHECK", "SHELL"}
BUILD_PKGS = ["build-essential", "cmake", "pkg-config", "libevent-dev", "libssl-dev",
              "libjemalloc-dev", "node-llhttp", "libyaml-dev", "libjansson-dev", "libcmocka-dev",
              "libnghttp2-dev"]
BASE_IMAGE_PKGS = {"libc6", "libgcc-s1", "libstdc++6"}  # in debian:12-slim already


def berth_bin():
    if not os.access(BERTH_BIN, os.X_OK):
        pytest.fail("berth binary not found at %s (set BERTH_BIN or build it)" % BERTH_BIN)
    return BERTH_BIN


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read(name):
    with open(os.path.join(DOCKER, name), encoding="utf-8") as f:
        return f.read()


def dockerfile():
    """[(INSTRUCTION, args)] with comments, directives and line continuations resolved."""
    out, cur = [], ""
    for line in read("Dockerfile").splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        word, _, rest = cur.partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    assert not cur, "Dockerfile ends inside a continued line"
    return out


def stages():
    """[[(INSTRUCTION, args)] per stage], the ARGs before the first FROM dropped."""
    result = []
    for ins, args in dockerfile():
        if ins == "FROM":
            result.append([])
        if result:
            result[-1].append((ins, args))
    return result


def apt_packages(stage):
    pkgs = []
    for ins, args in stage:
        if ins == "RUN" and "apt-get install" in args:
            for part in args.split("&&"):
                if "apt-get install" in part:
                    pkgs += [w for w in part.split("apt-get install", 1)[1].split()
                             if not w.startswith("-")]
    return pkgs


def exec_form(args):
    return json.loads(args)


def test_dockerfile_parses():
    """The Dockerfile has only known instructions, two debian:12-slim stages, a non-root USER, the berth ctl healthz HEALTHCHECK, and COPY sources that exist."""
    ins = dockerfile()
    for word, _ in ins:
        assert word in KNOWN, "unknown instruction %s" % word
    args = dict(re.match(r"(\w+)=(\S+)", a).groups() for w, a in ins if w == "ARG" and "=" in a)
    froms = [a for w, a in ins if w == "FROM"]
    assert len(froms) == 2
    for a in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], a.split()[0])
        assert image == "debian:12-slim"
    assert re.search(r"\bAS build\b", froms[0], re.I)
    final = stages()[-1]
    users = [a for w, a in final if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    hc = [a for w, a in final if w == "HEALTHCHECK"]
    assert len(hc) == 1
    cmd = exec_form(hc[0].split(" CMD ", 1)[1])
    assert cmd == ["/usr/local/bin/berth", "ctl", "-s", "/run/berth/control.sock", "healthz"]
    assert exec_form([a for w, a in final if w == "ENTRYPOINT"][-1]) == ["/usr/local/bin/berth"]
    assert exec_form([a for w, a in final if w == "CMD"][-1]) == ["-c", "/etc/berth/berth.yaml"]
    assert "8080" in [a for w, a in final if w == "EXPOSE"][0].split()
    copies = [a for w, a in ins if w in ("COPY", "ADD")]
    assert any("/etc/berth/berth.yaml" in a for a in copies)
    for a in copies:
        words = shlex.split(a)
        if any(w.startswith("--from") for w in words):
            continue
        srcs = [w for w in words if not w.startswith("--")][:-1]
        for src in srcs:
            assert os.path.exists(os.path.join(REPO, src)), "COPY source %s missing" % src


def test_dockerfile_packages():
    """The build stage installs scripts/setup.sh's build packages and the runtime stage installs no -dev package but every library the binary links."""
    build, runtime = stages()
    assert set(BUILD_PKGS) <= set(apt_packages(build))
    run = [a for w, a in build if w == "RUN"]
    assert any("cmake -S . -B build -DBERTH_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Release" in a
               and "cmake --build build -j" in a for a in run)
    rt = set(apt_packages(runtime))
    assert not [p for p in rt if p.endswith("-dev") or p in BUILD_PKGS]
    for p in ("libssl3", "libjemalloc2", "libyaml-0-2", "libjansson4", "libevent-core-2.1-7",
              "libnghttp2-14"):
        assert p in rt
    if not (shutil.which("ldd") and shutil.which("dpkg")):
        return
    libs = re.findall(r"=> (/\S+)", subprocess.run(["ldd", berth_bin()], capture_output=True,
                                                    text=True).stdout)
    # A sanitizer build (CI runs the suite on one) links ASan/UBSan runtimes that the
    # release image never has: only release-build libraries are checked.
    libs = [l for l in libs if not re.search(r"/lib(asan|ubsan|lsan|tsan)\.so", l)]
    for lib in libs:
        owner = None
        for path in (lib, "/usr" + lib, os.path.realpath(lib)):
            r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
            if r.returncode == 0:
                owner = r.stdout.split(":")[0]
                break
        if owner is not None:
            assert owner in rt | BASE_IMAGE_PKGS, "%s (%s) not installed at run time" % (owner, lib)


def test_compose_parses():
    """compose.yaml is YAML with berth built from the repository and three targets whose bind mounts exist and that wait for berth to be healthy."""
    text = read("compose.yaml")
    subprocess.run(["sh", "-n", os.path.join(DOCKER, "target.sh")], check=True)
    if yaml is None:
        assert re.search(r"^services:", text, re.M) and "dockerfile: docker/Dockerfile" in text
        assert os.path.isfile(os.path.join(DOCKER, "target.sh"))
        return
    doc = yaml.safe_load(text)
    services = doc["services"]
    assert "berth" in services
    build = services["berth"]["build"]
    context = os.path.normpath(os.path.join(DOCKER, build["context"]))
    assert os.path.isdir(context)
    assert os.path.isfile(os.path.join(context, build["dockerfile"]))
    targets = [n for n in services if n != "berth"]
    assert len(targets) >= 3
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            if isinstance(v, dict) and v.get("type") == "bind":
                assert os.path.exists(os.path.join(DOCKER, v["source"])), (name, v)
            elif isinstance(v, str) and v.startswith((".", "/")):
                assert os.path.exists(os.path.join(DOCKER, v.split(":")[0])), (name, v)
        for s in svc.get("secrets", []):
            assert (s if isinstance(s, str) else s["source"]) in doc["secrets"]
    for name in targets:
        svc = services[name]
        assert svc["depends_on"]["berth"]["condition"] == "service_healthy"
        assert "berth_token" in svc["secrets"]
        assert svc["environment"]["BERTH_URL"] == "http://berth:9901"
    assert doc["secrets"]["berth_token"]["file"].startswith("./secrets/")


def test_ecs_task_definition():
    """The ECS task definition is awsvpc JSON with an essential berth sidecar on 8080 (healthz check, awslogs, dependsOn app) and an essential app."""
    td = json.loads(read("ecs-task-definition.json"))
    assert td["networkMode"] == "awsvpc"
    by = {c["name"]: c for c in td["containerDefinitions"]}
    berth, app = by["berth"], by["app"]
    assert berth["essential"] is True and app["essential"] is True
    assert [p["containerPort"] for p in berth["portMappings"]] == [8080]
    assert all(p["hostPort"] == p["containerPort"] for p in berth["portMappings"])
    assert berth["healthCheck"]["command"] == [
        "CMD", "/usr/local/bin/berth", "ctl", "-s", "/run/berth/control.sock", "healthz"]
    assert "exec /usr/local/bin/berth -c" in " ".join(berth["entryPoint"] + berth["command"])
    assert {"containerName": "app", "condition": "HEALTHY"} in berth["dependsOn"]
    for c in td["containerDefinitions"]:
        assert c["logConfiguration"]["logDriver"] == "awslogs"
        assert {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= set(
            c["logConfiguration"]["options"])
    env = {e["name"]: e["value"] for e in berth["environment"]}
    assert env["BERTH_CONFIG"] == read("sidecar.yaml").rstrip("\n")


@pytest.mark.parametrize("name", ["berth.yaml", "sidecar.yaml"])
def test_config_checks(name, tmp_path):
    """docker/berth.yaml and docker/sidecar.yaml pass `berth -t -c` once the paths they name exist (in a temp dir here, as the image and its volumes provide them)."""
    token = tmp_path / "berth_token"
    token.write_text("s3cret-token\n")
    os.chmod(token, 0o600)
    (tmp_path / "run").mkdir()
    (tmp_path / "lib").mkdir()
    text = (read(name).replace("/run/secrets/berth_token", str(token))
            .replace("/run/berth/", str(tmp_path / "run") + "/")
            .replace("/var/lib/berth/", str(tmp_path / "lib") + "/"))
    conf = tmp_path / name
    conf.write_text(text)
    r = subprocess.run([berth_bin(), "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr


def test_config_check_sees_missing_secret(tmp_path):
    """`berth -t` on docker/berth.yaml where its token secret is not mounted fails naming the token file, as the start would."""
    if os.path.exists("/run/secrets/berth_token"):
        pytest.skip("this machine has the secret")
    r = subprocess.run([berth_bin(), "-t", "-c", os.path.join(DOCKER, "berth.yaml")],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "control.token_file /run/secrets/berth_token" in r.stderr, r.stderr


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok from app\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def app_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def start_berth(tmp_path, name, replace):
    text = read(name)
    for old, new in replace.items():
        assert old in text, "%s has no %s" % (name, old)
        text = text.replace(old, new)
    conf = tmp_path / name
    conf.write_text(text)
    err = open(tmp_path / "berth.err", "w+")
    proc = subprocess.Popen([berth_bin(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=err, cwd=str(tmp_path))
    return proc, err


def stop_berth(proc, err):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    err.seek(0)
    log = err.read()
    err.close()
    assert proc.returncode == 0, log
    return log


def wait_healthz(proc, sock, err):
    deadline = time.time() + 10
    while True:
        r = subprocess.run([berth_bin(), "ctl", "-s", sock, "healthz"], capture_output=True,
                           text=True, timeout=5)
        if r.returncode == 0:
            return r
        if proc.poll() is not None or time.time() > deadline:
            err.seek(0)
            pytest.fail("berth ctl healthz failed: %s%s\nberth log:\n%s" % (r.stdout, r.stderr, err.read()))
        time.sleep(0.1)


def get(url, timeout=10.0):
    """GET until a 200 arrives (targets start in health state initial); returns the body."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                if r.status == 200:
                    return r.read()
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(0.2)
    pytest.fail("no 200 from %s: %r" % (url, last))


def test_entrypoint_works_on_host(tmp_path, app_server):
    """The image's entrypoint, `berth -c` on a copy of docker/sidecar.yaml (paths and ports moved), starts, answers `berth ctl healthz` and forwards to its static target."""
    sock = str(tmp_path / "control.sock")
    port = free_port()
    proc, err = start_berth(tmp_path, "sidecar.yaml", {
        "/run/berth/control.sock": sock,
        "0.0.0.0:8080": "127.0.0.1:%d" % port,
        "127.0.0.1:8000": "127.0.0.1:%d" % app_server,
    })
    try:
        r = wait_healthz(proc, sock, err)
        assert r.stdout.strip() == "ok"
        assert get("http://127.0.0.1:%d/" % port) == b"ok from app\n"
    finally:
        stop_berth(proc, err)


def control_call(port, token, verb, body):
    req = urllib.request.Request(
        "http://127.0.0.1:%d/v1/target-groups/web/%s" % (port, verb),
        data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"} | (
            {"Authorization": "Bearer " + token} if token else {}))
    try:
        with urllib.request.urlopen(req, timeout=40) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_compose_registration_flow_on_host(tmp_path, app_server):
    """With docker/berth.yaml (paths and ports moved), a target registers and deregisters with Wait over the TCP control API with the bearer token, as docker/target.sh does."""
    sock = str(tmp_path / "control.sock")
    token_file = tmp_path / "berth_token"
    token_file.write_text("s3cret-token\n")
    os.chmod(token_file, 0o600)
    port, ctl_port = free_port(), free_port()
    proc, err = start_berth(tmp_path, "berth.yaml", {
        "/run/berth/control.sock": sock,
        "0.0.0.0:8080": "127.0.0.1:%d" % port,
        "0.0.0.0:9901": "127.0.0.1:%d" % ctl_port,
        "/run/secrets/berth_token": str(token_file),
        "/var/lib/berth/state.json": str(tmp_path / "state.json"),
    })
    try:
        wait_healthz(proc, sock, err)
        target = {"Targets": [{"Id": "127.0.0.1", "Port": app_server}]}
        status, body = control_call(ctl_port, None, "register", target)
        assert status == 401 and body["Error"]["Code"] == "Unauthorized"
        status, _ = control_call(ctl_port, "s3cret-token", "register", target)
        assert status == 200
        assert get("http://127.0.0.1:%d/" % port) == b"ok from app\n"
        assert "127.0.0.1" in (tmp_path / "state.json").read_text()
        started = time.time()
        status, _ = control_call(ctl_port, "s3cret-token", "deregister", dict(target, Wait=True))
        assert status == 200
        assert time.time() - started < 30  # an idle target drains at once, not after the delay
    finally:
        stop_berth(proc, err)
