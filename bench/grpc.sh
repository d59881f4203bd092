#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# gRPC and HTTP/2-to-HTTP/2 proxy benchmark on loopback: berth side by side with HAProxy
# and nginx, one worker/thread each, all three in front of the same HTTP/2 target.
#
# The target is nghttpd (Debian nghttp2-server, single-threaded, h2c on 127.0.0.1:TARGET_PORT):
# it answers POST /berthtest.Echo/Unary with one gRPC message (the file the script writes) and
# the trailer "grpc-status: 0", which a real gRPC client accepts as a successful unary call
# (tests/integration/test_grpc.py checks that with grpcio), and GET /hello with 19 bytes.
# A static answer keeps the target cheap, so the proxies' own cost is what varies; a Python
# grpcio server would cap all three at its own rate.
#
# Proxies (h2c with prior knowledge to clients, HTTP/2 to the target, connections reused):
#   haproxy  PORT_BASE     `bind ... proto h2`, `server ... proto h2`, http-reuse always
#   nginx    PORT_BASE+1   `listen ... http2`, `grpc_pass grpc://upstream` (keepalive 64); nginx
#                          has no other HTTP/2 upstream, so the h2 run goes through grpc_pass too
#   berth    PORT_BASE+2   `h2c: true`; /berthtest.* to a GRPC group, the rest to an HTTP2 group
#
# Measurements, each ROUNDS times per proxy, in turn:
#   grpc  h2load -t1 -c CONN -m STREAMS -D DUR with a 9-byte gRPC request body (POST,
#         content-type application/grpc, te: trailers): unary calls
#   h2    the same with GET /hello: HTTP/2 to HTTP/2 without gRPC
# and per run: calls (or requests)/s, proxy CPU time per call (utime+stime from
# /proc/PID/stat, nginx's worker), failed calls; then medians and berth's ratios.
#
# Usage: bench/grpc.sh [--markdown]
# Environment:
#   BERTH_BIN=PATH   berth binary (default: <repo>/build/berth)
#   MODES="grpc h2"  what to measure
#   CONN=8 STREAMS=16 DUR=8 ROUNDS=5 WARMUP=1
#   TARGET_PORT=9201 PORT_BASE=8091
# Exit status: 0 ok; 1 berth had failed calls or died; 2 setup failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
BERTH_BIN=${BERTH_BIN:-$ROOT/build/berth}
MODES=${MODES:-grpc h2}
CONN=${CONN:-8}
STREAMS=${STREAMS:-16}
DUR=${DUR:-8}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-1}
TARGET_PORT=${TARGET_PORT:-9201}
PORT_BASE=${PORT_BASE:-8091}
MARKDOWN=0
[[ ${1:-} == --markdown ]] && MARKDOWN=1
[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }

declare -A PORT=([haproxy]=$PORT_BASE [nginx]=$((PORT_BASE + 1)) [berth]=$((PORT_BASE + 2)))
declare -A PID=()
declare -A LOG=()
STARTED=()
PROXIES=(haproxy nginx berth)
HZ=$(getconf CLK_TCK)

for t in h2load nghttpd nginx haproxy curl; do
    command -v "$t" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
    command -v "$t" >/dev/null 2>&1 ||
        die "missing $t (Debian: apt-get install nghttp2-client nghttp2-server nginx haproxy curl)"
done
[[ -x $BERTH_BIN ]] || die "berth binary not found at $BERTH_BIN"
for p in "$TARGET_PORT" "${PORT[@]}"; do
    tcp_port_busy "$p" && die "port $p is busy (set TARGET_PORT / PORT_BASE)"
done

bench_tmpdir grpc
[[ ${KEEP:-0} == 1 ]] && trap "echo kept \$D" EXIT

# ---- the target ----
mkdir -p "$D/www/berthtest.Echo"
# Msg{text: "hello"}: field 1, length 5; framed as an uncompressed gRPC message
printf '\x00\x00\x00\x00\x07\x0a\x05hello' >"$D/www/berthtest.Echo/Unary"
printf 'hello from backend\n' >"$D/www/hello"
printf '\x00\x00\x00\x00\x04\x0a\x02hi' >"$D/req.bin"
nghttpd --no-tls --address=127.0.0.1 -d "$D/www" --trailer "grpc-status: 0" "$TARGET_PORT" \
    >"$D/nghttpd.log" 2>&1 &
STARTED+=($!)

# ---- the proxies ----
cat >"$D/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend f
  bind 127.0.0.1:${PORT[haproxy]} proto h2
  default_backend b
backend b
  http-reuse always
  server t 127.0.0.1:$TARGET_PORT proto h2
EOF
LOG[haproxy]=$D/haproxy.log
haproxy -f "$D/haproxy.cfg" -db >"${LOG[haproxy]}" 2>&1 &
PID[haproxy]=$!
STARTED+=($!)

cat >"$D/nginx.conf" <<EOF
worker_processes 1;
$(nginx_paths nginx)
events { worker_connections 20000; }
http {
$(nginx_http_paths nginx)
  access_log off;
  keepalive_requests 1000000;  # else nginx ends each client connection after 1000 streams
  upstream target { server 127.0.0.1:$TARGET_PORT; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:${PORT[nginx]} http2;
    http2_max_concurrent_streams 128;
    location / { grpc_pass grpc://target; }
  }
}
EOF
LOG[nginx]=$D/nginx.log
nginx -c "$D/nginx.conf" -g 'daemon off;' >"${LOG[nginx]}" 2>&1 &
NGINX_MASTER=$!
STARTED+=($!)

cat >"$D/berth.yaml" <<EOF
workers: 1
access_log: "off"
log_level: warn
control: {socket: $D/berth.sock}
listeners:
  - name: bench
    protocol: HTTP
    bind: 127.0.0.1:${PORT[berth]}
    h2c: true
    rules:
      - priority: 1
        conditions: {path: ["/berthtest.*"]}
        action: {forward: {target_groups: [{name: grpc}]}}
    default_action: {forward: {target_groups: [{name: h2}]}}
target_groups:
  - name: grpc
    protocol: HTTP
    protocol_version: GRPC
    health_check: {enabled: false}
    targets: [127.0.0.1:$TARGET_PORT]
  - name: h2
    protocol: HTTP
    protocol_version: HTTP2
    health_check: {enabled: false}
    targets: [127.0.0.1:$TARGET_PORT]
EOF
LOG[berth]=$D/berth.log
"$BERTH_BIN" -c "$D/berth.yaml" >"${LOG[berth]}" 2>&1 &
PID[berth]=$!
STARTED+=($!)

READY_TIMEOUT=10
EXPECT="hello from backend"
for n in "${PROXIES[@]}"; do
    pid=${PID[$n]:-$NGINX_MASTER}
    deadline=$((SECONDS + READY_TIMEOUT))
    until [[ $(curl -s --http2-prior-knowledge -m 1 "http://127.0.0.1:${PORT[$n]}/hello" || true) == "$EXPECT" ]]; do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "${LOG[$n]}" >&2; die "$n exited"; }
        ((SECONDS < deadline)) || { tail -n 20 "${LOG[$n]}" >&2; die "$n did not answer"; }
        sleep 0.1
    done
done
PID[nginx]=$(nginx_worker "$NGINX_MASTER")

load() { # load MODE PORT SECONDS OUT
    local args=(-t1 -c"$CONN" -m"$STREAMS" -D"$3")
    if [[ $1 == grpc ]]; then
        h2load "${args[@]}" -d "$D/req.bin" -H 'content-type: application/grpc' \
            -H 'te: trailers' "http://127.0.0.1:$2/berthtest.Echo/Unary" >"$4" 2>&1 || true
    else
        h2load "${args[@]}" "http://127.0.0.1:$2/hello" >"$4" 2>&1 || true
    fi
}

RESULTS=$D/results.tsv
: >"$RESULTS"
echo "# $(h2load --version 2>&1 | head -n1); $(haproxy -v | head -n1 | cut -d' ' -f1-3); $(nginx -v 2>&1 | cut -d' ' -f3); berth $("$BERTH_BIN" --version 2>/dev/null | head -n1)"
echo "# h2load -t1 -c$CONN -m$STREAMS -D$DUR, rounds $ROUNDS, $(nproc) CPUs"
printf '%-8s %-5s %5s %10s %12s %7s\n' proxy mode round calls/s cpu_us/call failed
for mode in $MODES; do
    for n in "${PROXIES[@]}"; do
        ((WARMUP == 0)) || load "$mode" "${PORT[$n]}" "$WARMUP" "$D/warm"
    done
    for round in $(seq 1 "$ROUNDS"); do
        for n in "${PROXIES[@]}"; do
            out=$D/load.$mode.$n.$round
            c0=$(cpu_ticks "${PID[$n]}")
            load "$mode" "${PORT[$n]}" "$DUR" "$out"
            c1=$(cpu_ticks "${PID[$n]}")
            kill -0 "${PID[$n]}" 2>/dev/null || { tail -n 20 "${LOG[$n]}" >&2; echo "error: $n died" >&2; exit 1; }
            awk -v n="$n" -v mode="$mode" -v r="$round" -v c0="$c0" -v c1="$c1" -v hz="$HZ" '
                /^finished in /   { rps = $4 }
                /^requests: /     { gsub(/,/, ""); done = $8; failed = $10 + $12 }
                /^status codes: / { gsub(/,/, ""); failed += $5 + $7 + $9 }
                END {
                    cpu = done > 0 ? (c1 - c0) / hz * 1e6 / done : -1
                    printf "%s\t%s\t%d\t%.0f\t%.2f\t%d\n", n, mode, r, rps, cpu, failed
                }' "$out" | tee -a "$RESULTS" | awk -F'\t' '{printf "%-8s %-5s %5d %10d %12.2f %7d\n", $1, $2, $3, $4, $5, $6}'
        done
    done
done

# medians and ratios
median() { sort -n | awk '{v[NR] = $1} END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
if ((MARKDOWN)); then
    echo "| mode | proxy | calls/s (median) | CPU µs/call (median) | failed |"
    echo "|---|---|---:|---:|---:|"
fi
declare -A MED_RPS=() MED_CPU=()
status=0
for mode in $MODES; do
    for n in "${PROXIES[@]}"; do
        MED_RPS[$mode.$n]=$(awk -F'\t' -v n="$n" -v m="$mode" '$1 == n && $2 == m {print $4}' "$RESULTS" | median)
        MED_CPU[$mode.$n]=$(awk -F'\t' -v n="$n" -v m="$mode" '$1 == n && $2 == m {print $5}' "$RESULTS" | median)
        failed=$(awk -F'\t' -v n="$n" -v m="$mode" '$1 == n && $2 == m {s += $6} END {print s + 0}' "$RESULTS")
        [[ $n == berth && $failed != 0 ]] && status=1
        if ((MARKDOWN)); then
            printf '| %s | %s | %.0f | %.2f | %d |\n' "$mode" "$n" "${MED_RPS[$mode.$n]}" "${MED_CPU[$mode.$n]}" "$failed"
        else
            printf 'median %-8s %-5s %10.0f calls/s %8.2f us/call  failed %d\n' "$n" "$mode" "${MED_RPS[$mode.$n]}" "${MED_CPU[$mode.$n]}" "$failed"
        fi
    done
done
echo
for mode in $MODES; do
    awk -v m="$mode" -v bc="${MED_CPU[$mode.berth]}" -v hc="${MED_CPU[$mode.haproxy]}" -v nc="${MED_CPU[$mode.nginx]}" \
        -v br="${MED_RPS[$mode.berth]}" -v hr="${MED_RPS[$mode.haproxy]}" -v nr="${MED_RPS[$mode.nginx]}" 'BEGIN {
        printf "%s: berth CPU per call %.2fx HAProxy, %.2fx nginx; calls/s %.2fx HAProxy, %.2fx nginx\n",
            m, bc / hc, bc / nc, br / hr, br / nr }'
done
exit $status
