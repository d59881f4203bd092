#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Health check scale benchmark: the main thread's CPU while berth health-checks 2,000
# targets every 5s with no data traffic.
#
# Starts ONE backend process (bench/health_scale.py backend: a selectors loop listening on
# 2,000 loopback addresses 127.0.2.1-250 .. 127.0.9.1-250, port PORT, answering
# "HTTP/1.1 200 OK", Content-Length: 0, and closing), then berth (workers: 1, access log off)
# with one HTTP listener on 127.0.0.1 and an empty target group "scale" with
# health_check {interval: 5s, timeout: 2s, path: /}. bench/health_scale.py run registers the
# 2,000 targets in one control API call, waits until the health view shows all of them
# healthy, waits one more second, then samples berth's main thread
# (/proc/PID/task/PID/stat utime+stime; the main thread's tid is the pid) over MEASURE
# seconds and prints it as a percentage of one core.
#
# Usage: bench/health_scale.sh
# Environment:
#   BERTH_BIN=PATH   berth binary (default: <repo>/build/berth)
#   TARGETS=2000     targets (at most 250 per /24 from 127.0.2.0 up)
#   PORT=8080        the targets' port
#   MEASURE=30       seconds of measurement
#   LIMIT=10         percent of one core allowed for the main thread
# Exit status: 0 main thread under LIMIT; 1 LIMIT or more, a target not healthy, a call
# failed or berth died; 2 setup failure (no binary, too few descriptors, berth or the
# backend did not start).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BERTH_BIN=${BERTH_BIN:-$ROOT/build/berth}
TARGETS=${TARGETS:-2000}
PORT=${PORT:-8080}
MEASURE=${MEASURE:-30}
LIMIT=${LIMIT:-10}
PYTHON=/usr/bin/python3

die() { echo "error: $*" >&2; exit 2; }

[[ -x $BERTH_BIN ]] || die "berth binary not found at $BERTH_BIN (set BERTH_BIN or build it)"
[[ -x $PYTHON ]] || die "$PYTHON not found"
if ! [[ $TARGETS =~ ^[0-9]+$ ]] || ((TARGETS < 1 || TARGETS > 250 * 200)); then
    die "TARGETS must be 1..50000, got '$TARGETS'"
fi
[[ $MEASURE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "MEASURE must be a number of seconds"
[[ $LIMIT =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "LIMIT must be a number (percent)"

# Each side needs a descriptor per target (listeners; berth's concurrent first checks).
need=$((TARGETS + 1024))
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((hard < need)); then
    die "ulimit -Hn is $hard; $need descriptors needed"
fi
ulimit -n "$need" 2>/dev/null || ulimit -n "$hard"

D=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-health.XXXXXX")
BERTH_PID=
BACKEND_PID=

# shellcheck disable=SC2317 # invoked by cleanup, from the EXIT trap
stop_pid() {
    local pid=$1
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in {1..50}; do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    trap - EXIT INT TERM
    stop_pid "$BERTH_PID"
    stop_pid "$BACKEND_PID"
    rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$PYTHON" "$ROOT/bench/health_scale.py" backend --targets "$TARGETS" --port "$PORT" \
    --status-file "$D/backend.status" 2>"$D/backend.log" &
BACKEND_PID=$!
for _ in {1..100}; do
    [[ -s $D/backend.status ]] && break
    kill -0 "$BACKEND_PID" 2>/dev/null || { cat "$D/backend.log" >&2; die "backend did not start"; }
    sleep 0.1
done
[[ -s $D/backend.status ]] || die "backend not listening after 10s"

LPORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$D/berth.yaml" <<EOF
workers: 1
access_log: "off"
control: {socket: $D/berth.sock}
listeners:
  - name: web
    protocol: HTTP
    bind: 127.0.0.1:$LPORT
    default_action: {forward: {target_groups: [{name: scale}]}}
target_groups:
  - name: scale
    protocol: HTTP
    health_check: {enabled: true, protocol: HTTP, path: /, interval: 5s, timeout: 2s, healthy_threshold: 2, unhealthy_threshold: 2, matcher: "200"}
EOF

"$BERTH_BIN" -c "$D/berth.yaml" >"$D/berth.log" 2>&1 &
BERTH_PID=$!
for _ in {1..100}; do
    [[ -S $D/berth.sock ]] && grep -q 'ready$' "$D/berth.log" && break
    kill -0 "$BERTH_PID" 2>/dev/null || { tail -n 20 "$D/berth.log" >&2; die "berth exited"; }
    sleep 0.1
done
[[ -S $D/berth.sock ]] || die "berth not ready after 10s"

cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
echo "# berth health check scale benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# host: $(uname -sr), $(nproc) CPUs${cpu_model:+, $cpu_model}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# berth: $BERTH_BIN ($("$BERTH_BIN" --version 2>&1 | head -n1 || true)), pid $BERTH_PID, workers 1"
echo "# $TARGETS targets on 127.0.2.1.. port $PORT (one backend process), checks every 5s, timeout 2s; ulimit -n $(ulimit -n)"

rc=0
"$PYTHON" "$ROOT/bench/health_scale.py" run --socket "$D/berth.sock" --pid "$BERTH_PID" \
    --group scale --targets "$TARGETS" --port "$PORT" --status-file "$D/backend.status" \
    --interval 5 --measure "$MEASURE" --limit "$LIMIT" || rc=$?

if ! kill -0 "$BERTH_PID" 2>/dev/null; then
    echo "error: berth (pid $BERTH_PID) died; its log:" >&2
    tail -n 20 "$D/berth.log" >&2 || true
    exit 1
fi
if ((rc != 0)); then
    echo "berth's log (last lines):" >&2
    tail -n 20 "$D/berth.log" >&2 || true
fi
exit "$rc"
