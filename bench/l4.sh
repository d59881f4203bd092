#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# NLB-mode (L4) benchmark on loopback with iperf3: berth side by side with HAProxy (TCP) and
# nginx stream (TCP and UDP), modelled on ../shared/bench/anchors-l4.sh (the steering folder beside the repo).
#
# One iperf3 server (127.0.0.1:IPERF_PORT, TCP control + TCP/UDP data) is the target. In front
# of it: HAProxy on PORT_BASE (mode tcp, nbthread 1), nginx stream on PORT_BASE+1 (1 worker,
# TCP and UDP on the same port) and berth on PORT_BASE+2 (workers: 1, one TCP_UDP listener, a
# TCP_UDP group with health checks off). "direct" runs iperf3 against the server itself.
# Each round runs every path once, the starting one rotating from round to round:
#   TCP: iperf3 -t DUR                          -> received Gbit/s
#   UDP: iperf3 -u -b UDPBW -l 1200 -t DUR      -> sent packets/s, delivered Gbit/s, loss %
# (HAProxy has no UDP). Per run it prints the figures and the proxy's CPU use over the run
# (utime+stime from /proc/PID/stat over wall time; for nginx its worker, for berth the whole
# process). The summary gives medians over the rounds and the ratios berth/HAProxy (TCP
# throughput) and berth/nginx (UDP delivered throughput).
#
# Usage: bench/l4.sh
# Environment:
#   BERTH_BIN=PATH   berth binary (default: <repo>/build/berth)
#   DUR=5 ROUNDS=2   seconds per iperf3 run, rounds
#   UDPBW=2G         iperf3 UDP target rate
#   IPERF_PORT=5301 PORT_BASE=6101   iperf3 server port; HAProxy, nginx and berth listen on
#                    PORT_BASE, +1, +2 (move them when another run holds the defaults)
# Exit status: 0 ok; 1 berth did not come up, a berth run failed or berth died; 2 setup failure
# (missing tool or binary, busy port, HAProxy, nginx or iperf3 that did not come up).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
BERTH_BIN=${BERTH_BIN:-$ROOT/build/berth}
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-2}
UDPBW=${UDPBW:-2G}
IPERF_PORT=${IPERF_PORT:-5301}
PORT_BASE=${PORT_BASE:-6101}
READY_TIMEOUT=10
declare -A PORT=([direct]=$IPERF_PORT [haproxy]=$PORT_BASE [nginx]=$((PORT_BASE + 1))
                 [berth]=$((PORT_BASE + 2)))
declare -A PID=()  # path name -> pid whose CPU time is measured (none for direct)
STARTED=()         # every pid this script started, for cleanup
IPERF_PID=""


for arg in "$@"; do
    case $arg in
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $arg" ;;
    esac
done
for v in DUR ROUNDS IPERF_PORT PORT_BASE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((DUR > 0 && ROUNDS > 0)) || die "DUR and ROUNDS must be positive"
[[ $UDPBW =~ ^[0-9.]+[KMG]?$ ]] || die "UDPBW must look like 2G, 500M or 1000000, got '$UDPBW'"

# ---- tools -------------------------------------------------------------------------------
missing=()
for t in iperf3 haproxy nginx python3 timeout pgrep; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (Debian: apt-get install iperf3 haproxy nginx python3 procps)"
[[ -x $BERTH_BIN ]] || die "berth binary not found at $BERTH_BIN (set BERTH_BIN or build it)"
NGX_STREAM=""
for m in /usr/lib/nginx/modules/ngx_stream_module.so /usr/lib64/nginx/modules/ngx_stream_module.so; do
    [[ -f $m ]] && NGX_STREAM="load_module $m;"
done

# ---- temp dir and cleanup ----------------------------------------------------------------
bench_tmpdir l4

# ---- helpers -----------------------------------------------------------------------------
# port_busy PORT: true when something holds 127.0.0.1:PORT for TCP or UDP.
port_busy() {
    python3 - "$1" <<'EOF'
import socket, sys
for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind)
    if kind == socket.SOCK_STREAM:  # as servers do: TIME_WAIT leftovers do not count
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        sys.exit(0)
    finally:
        s.close()
sys.exit(1)
EOF
}

HZ=$(getconf CLK_TCK)

start_iperf() {
    iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" >>"$D/iperf3.log" 2>&1 &
    IPERF_PID=$!
    STARTED+=("$IPERF_PID")
    local i
    for i in {1..50}; do
        (exec 3<>"/dev/tcp/127.0.0.1/$IPERF_PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    die "iperf3 server did not come up on 127.0.0.1:$IPERF_PORT"
}

# A run that fails can leave the iperf3 server waiting on a dead test: start a fresh one.
restart_iperf() {
    kill -TERM "$IPERF_PID" 2>/dev/null || true
    wait "$IPERF_PID" 2>/dev/null || true
    start_iperf
}

# run_iperf NAME MODE SECONDS OUT: iperf3 client against NAME's port; 0 when it succeeded.
run_iperf() {
    local name=$1 mode=$2 secs=$3 out=$4
    local args=(-c 127.0.0.1 -p "${PORT[$name]}" -t "$secs" -J)
    [[ $mode == udp ]] && args+=(-u -b "$UDPBW" -l 1200)
    timeout $((secs + 20)) iperf3 "${args[@]}" >"$out" 2>>"$D/client.err"
}

# wait_ready NAME: a 1 s TCP run through NAME succeeds (also the warm-up). When it does not,
# the script ends: status 1 for berth (berth failed), 2 for the others (setup failure).
wait_ready() {
    local name=$1 deadline=$((SECONDS + READY_TIMEOUT)) rc=2
    [[ $name == berth ]] && rc=1
    while ((SECONDS < deadline)); do
        if [[ -n ${PID[$name]:-} ]] && ! kill -0 "${PID[$name]}" 2>/dev/null; then
            echo "error: $name exited during start-up; its log:" >&2
            tail -n 20 "$D/$name.log" >&2 || true
            exit $rc
        fi
        run_iperf "$name" tcp 1 "$D/ready.json" && return 0
        restart_iperf
        sleep 0.2
    done
    echo "error: $name did not carry an iperf3 run within ${READY_TIMEOUT}s; its log:" >&2
    tail -n 20 "$D/$name.log" >&2 || true
    exit $rc
}

# ---- configs and start-up ----------------------------------------------------------------
for n in direct haproxy nginx berth; do
    port_busy "${PORT[$n]}" && die "127.0.0.1:${PORT[$n]} is already in use ($n port)"
done
start_iperf

cat >"$D/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
listen l4
  bind 127.0.0.1:${PORT[haproxy]}
  server s1 127.0.0.1:$IPERF_PORT
EOF
cat >"$D/nginx.conf" <<EOF
$NGX_STREAM
worker_processes 1; daemon off; master_process on; pid $D/nginx.pid; error_log $D/nginx.log warn;
events { worker_connections 4096; }
stream {
  server { listen 127.0.0.1:${PORT[nginx]}; proxy_pass 127.0.0.1:$IPERF_PORT; }
  server { listen 127.0.0.1:${PORT[nginx]} udp; proxy_pass 127.0.0.1:$IPERF_PORT; proxy_timeout 10s; }
}
EOF
cat >"$D/berth.yaml" <<EOF
workers: 1
access_log: "off"
control: {socket: $D/berth.sock}
listeners:
  - name: l4
    protocol: TCP_UDP
    bind: 127.0.0.1:${PORT[berth]}
    default_action: {forward: {target_groups: [{name: iperf}]}}
target_groups:
  - name: iperf
    protocol: TCP_UDP
    health_check: {enabled: false}
    targets: ["127.0.0.1:$IPERF_PORT"]
EOF

haproxy -f "$D/haproxy.cfg" >"$D/haproxy.log" 2>&1 &
PID[haproxy]=$!
STARTED+=("${PID[haproxy]}")
nginx -c "$D/nginx.conf" -p "$D" >"$D/nginx.out" 2>&1 &
NGINX_MASTER=$!
STARTED+=("$NGINX_MASTER")
"$BERTH_BIN" -c "$D/berth.yaml" >"$D/berth.log" 2>&1 &
PID[berth]=$!
STARTED+=("${PID[berth]}")

for i in {1..50}; do
    w=$(pgrep -P "$NGINX_MASTER" 2>/dev/null | head -n1 || true)
    [[ -n $w ]] && break
    sleep 0.1
done
[[ -n ${w:-} ]] || { tail -n 20 "$D/nginx.log" >&2 2>/dev/null; die "nginx did not start a worker"; }
PID[nginx]=$w
for i in {1..100}; do
    grep -q 'ready$' "$D/berth.log" 2>/dev/null && break
    kill -0 "${PID[berth]}" 2>/dev/null || break
    sleep 0.1
done
for n in direct haproxy nginx berth; do wait_ready "$n"; done

echo "# berth NLB-mode benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $(uname -r)"
echo "# iperf3 $(iperf3 --version | head -n1 | awk '{print $2}'), $(haproxy -v | head -n1 | awk '{print $1, $3}'), $(nginx -v 2>&1 | sed 's/.*: //'), berth $BERTH_BIN"
echo "# DUR=${DUR}s ROUNDS=$ROUNDS UDPBW=$UDPBW, UDP datagrams of 1200 bytes"

RESULTS=$D/results.tsv
: >"$RESULTS"
BERTH_FAILED=0

# measure ROUND MODE NAME: one iperf3 run through NAME; appends to RESULTS and prints a line.
measure() {
    local r=$1 mode=$2 name=$3 t0 t1 c0=0 c1=0 ok=1 line
    local out=$D/$mode.$name.$r.json pid=${PID[$name]:-}
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
        printf 'r%s %s %-8s FAILED (process gone)\n' "$r" "$mode" "$name"
        printf '%s\t%s\t%s\tfail\n' "$r" "$mode" "$name" >>"$RESULTS"
        [[ $name == berth ]] && BERTH_FAILED=1
        return 0
    fi
    [[ -n $pid ]] && c0=$(cpu_ticks "$pid")
    t0=$(date +%s.%N)
    run_iperf "$name" "$mode" "$DUR" "$out" || ok=0
    t1=$(date +%s.%N)
    [[ -n $pid ]] && c1=$(cpu_ticks "$pid")
    line=$(python3 - "$out" "$mode" "$name" "$r" "$ok" "$c0" "$c1" "$HZ" "$t0" "$t1" "$pid" <<'EOF'
import json, sys
out, mode, name, r, ok, c0, c1, hz, t0, t1, pid = sys.argv[1:]
cpu = "-" if not pid else "%.0f%%" % (100.0 * (int(c1) - int(c0)) / int(hz) / (float(t1) - float(t0)))
try:
    d = json.load(open(out))
    if "error" in d:
        raise ValueError(d["error"])
    e = d["end"]
    if mode == "tcp":
        gbps = e["sum_received"]["bits_per_second"] / 1e9
        if gbps <= 0:
            raise ValueError("nothing received")
        print("r%s tcp %-8s tcp_gbps=%.2f cpu=%s" % (r, name, gbps, cpu))
        print("TSV\t%s\ttcp\t%s\t%.4f\t%s" % (r, name, gbps, cpu))
    else:
        s = e["sum"]
        recv = e.get("sum_received", {}).get("bits_per_second")
        if recv is None:
            recv = s["bits_per_second"] * (100 - s["lost_percent"]) / 100
        if recv <= 0:
            raise ValueError("nothing delivered")
        pps = s["packets"] / s["seconds"]
        print("r%s udp %-8s udp_sent_pps=%.0f recv_gbps=%.2f lost_pct=%.1f cpu=%s"
              % (r, name, pps, recv / 1e9, s["lost_percent"], cpu))
        print("TSV\t%s\tudp\t%s\t%.4f\t%s\t%.0f\t%.1f" % (r, name, recv / 1e9, cpu, pps,
                                                       s["lost_percent"]))
except Exception as ex:  # noqa: BLE001
    print("r%s %s %-8s FAILED (%s%s)" % (r, mode, name, "" if ok == "1" else "iperf3 failed: ", ex))
    print("TSV\t%s\t%s\t%s\tfail" % (r, mode, name))
EOF
)
    grep -v '^TSV' <<<"$line" || true
    grep '^TSV' <<<"$line" | cut -f2- >>"$RESULTS" || true
    if grep -q 'FAILED' <<<"$line"; then
        [[ $name == berth ]] && BERTH_FAILED=1
        restart_iperf
    fi
    return 0
}

# rotate I NAME...: the names starting at index I mod count.
rotate() {
    local i=$1
    shift
    local a=("$@") n=$#
    local k
    for ((k = 0; k < n; k++)); do echo "${a[$(((i + k) % n))]}"; done
}

for ((r = 1; r <= ROUNDS; r++)); do
    for n in $(rotate $((r - 1)) direct haproxy nginx berth); do measure "$r" tcp "$n"; done
done
for ((r = 1; r <= ROUNDS; r++)); do
    for n in $(rotate $((r - 1)) direct nginx berth); do measure "$r" udp "$n"; done
done

kill -0 "${PID[berth]}" 2>/dev/null || { echo "berth died; its log:"; tail -n 20 "$D/berth.log"; BERTH_FAILED=1; }

echo
echo "# summary (median over $ROUNDS rounds)"
python3 - "$RESULTS" <<'EOF' || BERTH_FAILED=1
import statistics, sys
rows = [ln.rstrip("\n").split("\t") for ln in open(sys.argv[1]) if ln.strip()]
def med(mode, name, col=3):
    vals = [float(r[col]) for r in rows if r[1] == mode and r[2] == name and r[3] != "fail"]
    return statistics.median(vals) if vals else None
def cpu(mode, name):
    vals = [float(r[4].rstrip("%")) for r in rows
            if r[1] == mode and r[2] == name and r[3] != "fail" and r[4] != "-"]
    return "%.0f%%" % statistics.median(vals) if vals else "-"
def fails(mode, name):
    return sum(1 for r in rows if r[1] == mode and r[2] == name and r[3] == "fail")
print("%-4s %-8s %10s %8s %6s" % ("mode", "path", "gbps", "cpu", "fails"))
for mode, names in (("tcp", ("direct", "haproxy", "nginx", "berth")),
                    ("udp", ("direct", "nginx", "berth"))):
    for n in names:
        m = med(mode, n)
        print("%-4s %-8s %10s %8s %6d" % (mode, n, "-" if m is None else "%.2f" % m,
                                          cpu(mode, n), fails(mode, n)))
bad = 0
tb, th = med("tcp", "berth"), med("tcp", "haproxy")
ub, un = med("udp", "berth"), med("udp", "nginx")
print("berth/haproxy TCP throughput ratio: %s" % ("%.2f" % (tb / th) if tb and th else "n/a"))
print("berth/nginx UDP delivered ratio:    %s" % ("%.2f" % (ub / un) if ub and un else "n/a"))
if tb is None or ub is None:
    bad = 1
sys.exit(bad)
EOF

if ((BERTH_FAILED)); then
    echo "berth FAILED (see the runs above)"
    exit 1
fi
exit 0
