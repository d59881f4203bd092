#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Control API registration benchmark: how long berth takes to register and deregister
# targets through the Unix control socket, with a state_file (written on every change).
#
# Starts berth (workers: 1, access log off) with one HTTP listener on 127.0.0.1 and a target
# group "bench" (health checks off, no targets), control socket and state file in a temp
# dir, then bench/register.py measures:
#   a) one register call with 1,000 targets (127.1.x.y:8080),
#   b) 1,000 sequential single-target register calls on one keep-alive connection,
#   c) 1,000 sequential single-target deregister calls on one keep-alive connection,
#   d) one register call with SCALE more targets (127.3.x.y:8080), then 20 single register
#      calls on top of that group (each rebuilds and publishes the whole snapshot and writes
#      the state file), and berth's RSS before and after.
# The targets are never connected to: no traffic is sent. For each phase it prints the wall
# time, per-call latency percentiles and berth's CPU time.
#
# Usage: bench/register.sh
# Environment:
#   BERTH_BIN=PATH   berth binary (default: <repo>/build/berth)
#   LIMIT=1.0        seconds allowed per phase (a to c)
#   SCALE=10000      targets added in phase d (0: skip it)
#   TMPDIR=DIR       where the temp dir (socket, state file) goes; the state file is
#                    fsync'ed on every change, so the file system matters
# Exit status: 0 every phase under LIMIT; 1 a phase took LIMIT or more, a call failed or
# berth died; 2 setup failure (no binary, berth did not start).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BERTH_BIN=${BERTH_BIN:-$ROOT/build/berth}
LIMIT=${LIMIT:-1.0}
SCALE=${SCALE:-10000}
PYTHON=/usr/bin/python3

die() { echo "error: $*" >&2; exit 2; }

[[ -x $BERTH_BIN ]] || die "berth binary not found at $BERTH_BIN (set BERTH_BIN or build it)"
[[ -x $PYTHON ]] || die "$PYTHON not found"
[[ $LIMIT =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "LIMIT must be a number of seconds, got '$LIMIT'"

D=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-register.XXXXXX")
BERTH_PID=

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    trap - EXIT INT TERM
    if [[ -n $BERTH_PID ]]; then
        kill -TERM "$BERTH_PID" 2>/dev/null || true
        for _ in {1..50}; do
            kill -0 "$BERTH_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$BERTH_PID" 2>/dev/null || true
        wait "$BERTH_PID" 2>/dev/null || true
    fi
    rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cat >"$D/berth.yaml" <<EOF
workers: 1
access_log: "off"
control: {socket: $D/berth.sock}
state_file: $D/state.json
listeners:
  - name: web
    protocol: HTTP
    bind: 127.0.0.1:$PORT
    default_action: {forward: {target_groups: [{name: bench}]}}
target_groups:
  - name: bench
    protocol: HTTP
    health_check: {enabled: false}
EOF

"$BERTH_BIN" -c "$D/berth.yaml" >"$D/berth.log" 2>&1 &
BERTH_PID=$!

cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
echo "# berth control API registration benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# host: $(uname -sr), $(nproc) CPUs${cpu_model:+, $cpu_model}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# berth: $BERTH_BIN ($("$BERTH_BIN" --version 2>&1 | head -n1 || true))"
echo "# state file on: $(df -PT "$D" | awk 'NR == 2 {print $2 " (" $1 ")"}'); limit ${LIMIT}s per phase"

rc=0
"$PYTHON" "$ROOT/bench/register.py" --socket "$D/berth.sock" --pid "$BERTH_PID" --scale "$SCALE" \
    --state-file "$D/state.json" --limit "$LIMIT" || rc=$?

if ! kill -0 "$BERTH_PID" 2>/dev/null; then
    echo "error: berth (pid $BERTH_PID) died; its log:" >&2
    tail -n 20 "$D/berth.log" >&2 || true
    exit 1
fi
if ((rc == 2)); then
    echo "berth's log:" >&2
    tail -n 20 "$D/berth.log" >&2 || true
fi
exit "$rc"
