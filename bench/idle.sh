#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Idle keep-alive connection memory: berth side by side with HAProxy and nginx on loopback.
#
# One nginx backend (1 worker, BACKEND_PORT) answers `200 "hello from backend\n"`. In front of
# it, each proxy in turn, freshly started and alone: HAProxy on PORT_BASE (nbthread 1), nginx
# on PORT_BASE+1 (worker_processes 1), berth on PORT_BASE+2 (workers: 1), each with room for
# N+1000 client connections and 300 s idle, keep-alive and request-head timeouts, so nothing
# is closed while it is measured. bench/idle_client.py then measures the proxy's VmRSS
# (/proc/PID/status; for nginx the worker process only, the master is not counted; for
# HAProxy and berth the whole process):
#   baseline   before the first connection (steady for a second)
#   idle       N connections open that sent nothing, all accepted (the proxy's descriptor
#              count), 2 s later and steady: (idle - baseline) / N bytes per connection
#   after_req  one keep-alive "GET /" on each of the SAME N connections (64 in flight at a
#              time, every response read whole), then idle again, 2 s later and steady:
#              (after_req - baseline) / N bytes per connection
#   return     the client closes all N connections; the RSS is sampled once a second for up
#              to RETURN_SECS and the script reports the last sample and whether it came
#              within 10% of the baseline (and after how many seconds)
# then stops the proxy before the next one starts. RSS counts user-space memory only: socket
# buffers and other kernel memory are not in it.
#
# Usage: bench/idle.sh
# Environment:
#   N=10000          idle connections per proxy (at most the open file limit less 200)
#   RETURN_SECS=30   how long to watch the RSS return after the connections close
#   BERTH_ONLY=1     do not start or measure HAProxy and nginx
#   BERTH_BIN=PATH   berth binary (default: <repo>/build/berth); it is copied into the temp
#                    dir first, so a rebuild during the run does not change it
#   SETTLE=2         seconds to wait after each phase before reading the RSS
#   WINDOW=64        requests in flight at a time in the after-request phase
#   BACKEND_PORT=9131 PORT_BASE=8131   backend port; HAProxy, nginx and berth listen on
#                    PORT_BASE, +1, +2
# Exit status: 0 ok; 1 berth died, did not accept the connections or had request errors;
# 2 setup failure (missing tool, busy port, a server that did not come up, an anchor failed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
BERTH_BIN=${BERTH_BIN:-$ROOT/build/berth}
BERTH_ONLY=${BERTH_ONLY:-0}
N=${N:-10000}
RETURN_SECS=${RETURN_SECS:-30}
SETTLE=${SETTLE:-2}
WINDOW=${WINDOW:-64}
BACKEND_PORT=${BACKEND_PORT:-9131}
PORT_BASE=${PORT_BASE:-8131}
READY_TIMEOUT=10
PYTHON=/usr/bin/python3
EXPECT="hello from backend"
TIMEOUT=300 # seconds: idle, keep-alive and request-head timeouts on every proxy

for arg in "$@"; do
    case $arg in
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $arg" ;;
    esac
done
for v in N RETURN_SECS SETTLE WINDOW BACKEND_PORT PORT_BASE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((N > 0 && WINDOW > 0)) || die "N and WINDOW must be positive"
[[ $BERTH_ONLY == 0 || $BERTH_ONLY == 1 ]] || die "BERTH_ONLY must be 0 or 1, got '$BERTH_ONLY'"

need=(curl nginx pgrep awk)
[[ $BERTH_ONLY == 1 ]] || need+=(haproxy)
missing=()
for t in "${need[@]}"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
[[ -x $PYTHON ]] || missing+=("$PYTHON")
if ((${#missing[@]})); then
    die "missing tools: ${missing[*]} (Debian: apt-get install curl nginx haproxy procps python3)"
fi
NGINX=$(command -v nginx)
HAPROXY=$(command -v haproxy || true)
[[ -x $BERTH_BIN ]] || die "berth binary not found at $BERTH_BIN (set BERTH_BIN or build it)"

PROXIES=()
[[ $BERTH_ONLY == 1 ]] || PROXIES+=(haproxy nginx)
PROXIES+=(berth)
declare -A PORT=([haproxy]=$PORT_BASE [nginx]=$((PORT_BASE + 1)) [berth]=$((PORT_BASE + 2)))
declare -A PID=() LOG=() RES=()
STARTED=()

# ---- temp dir, cleanup, descriptor limit -------------------------------------------------
bench_tmpdir idle
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # lib.sh asks for 65536, which the hard limit may refuse
NOFILE=$(ulimit -n)
((N + 200 <= NOFILE)) || die "N=$N needs an open file limit of at least $((N + 200)); it is $NOFILE (hard $(ulimit -Hn))"
MAXCONN=$((N + 1000))

# A private copy of berth: the tree's binary may be rebuilt while this runs.
for i in {1..60}; do
    if cp "$BERTH_BIN" "$D/berth" 2>/dev/null && "$D/berth" --version >/dev/null 2>&1; then break; fi
    ((i < 60)) || die "could not copy a working berth from $BERTH_BIN (a build in progress?)"
    echo "berth binary not usable yet (being rebuilt?), retrying in 5 s" >&2
    sleep 5
done

# ---- helpers -----------------------------------------------------------------------------
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# forget PID: drop a finished process from STARTED, so cleanup never signals a reused pid.
forget() {
    local i keep=()
    for i in "${STARTED[@]}"; do [[ $i == "$1" ]] || keep+=("$i"); done
    STARTED=("${keep[@]}")
}

# stop PID: TERM, up to 5 s, then KILL; and forget it.
stop() {
    local i
    kill -TERM "$1" 2>/dev/null || true
    for i in {1..50}; do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget "$1"
}

# ---- configs -----------------------------------------------------------------------------
tcp_port_busy "$BACKEND_PORT" && die "127.0.0.1:$BACKEND_PORT is already in use (backend port)"
for n in "${PROXIES[@]}"; do
    tcp_port_busy "${PORT[$n]}" && die "127.0.0.1:${PORT[$n]} is already in use ($n port)"
done

cat >"$D/backend.conf" <<EOF
worker_processes 1; daemon off; master_process on;
$(nginx_paths backend)
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
  keepalive_timeout ${TIMEOUT}s;
$(nginx_http_paths backend)
  server {
    listen 127.0.0.1:$BACKEND_PORT;
    location / { return 200 "$EXPECT\n"; }
  }
}
EOF

# HAProxy wants an open file limit of about 2 x maxconn (a server connection per client
# connection). The hard limit may be lower (20000 is common), and by default (strict-limits)
# HAProxy then refuses to start; "no strict-limits" makes it log an alert and carry on, which
# is fine here: only about WINDOW server connections are ever open.
cat >"$D/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $MAXCONN
  no strict-limits
defaults
  mode http
  maxconn $MAXCONN
  timeout connect 5s
  timeout client ${TIMEOUT}s
  timeout server 30s
  timeout http-request ${TIMEOUT}s
  timeout http-keep-alive ${TIMEOUT}s
  http-reuse always
frontend fe
  bind 127.0.0.1:${PORT[haproxy]}
  default_backend be
backend be
  server s1 127.0.0.1:$BACKEND_PORT
EOF

cat >"$D/nginx.conf" <<EOF
worker_processes 1; daemon off; master_process on;
worker_rlimit_nofile $NOFILE;
$(nginx_paths nginx)
events { worker_connections $MAXCONN; }
http {
  access_log off;
  keepalive_requests 100000;
  keepalive_timeout ${TIMEOUT}s;
  client_header_timeout ${TIMEOUT}s;
$(nginx_http_paths nginx)
  upstream be {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive 128;
    keepalive_requests 100000;
  }
  server {
    listen 127.0.0.1:${PORT[nginx]} backlog=4096;
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF

cat >"$D/berth.yaml" <<EOF
workers: 1
access_log: "off"
control: {socket: $D/berth.sock}
listeners:
  - name: bench
    protocol: HTTP
    bind: 127.0.0.1:${PORT[berth]}
    idle_timeout: ${TIMEOUT}s
    header_timeout: ${TIMEOUT}s
    default_action: {forward: {target_groups: [{name: be}]}}
target_groups:
  - name: be
    protocol: HTTP
    health_check: {enabled: false}
    targets: ["127.0.0.1:$BACKEND_PORT"]
EOF

# ---- header ------------------------------------------------------------------------------
cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
echo "# berth idle-connection memory benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# host: $(uname -sr), $(nproc) CPUs${cpu_model:+, $cpu_model}; $(awk '/^MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# N=$N connections per proxy from 127.0.0.1, ${SETTLE}s settle, requests $WINDOW in flight, return watched up to ${RETURN_SECS}s; open file limit $NOFILE"
echo "# RSS = VmRSS of the proxy process (nginx: the worker only, not the master)"
echo "# $("$NGINX" -v 2>&1)"
[[ $BERTH_ONLY == 1 ]] || echo "# $("$HAPROXY" -v | head -n1)"
echo "# berth: $BERTH_BIN ($("$D/berth" --version 2>&1 | head -n1 || true))"

# ---- backend -----------------------------------------------------------------------------
LOG[backend]=$D/backend.log
# shellcheck disable=SC2094 # nginx: -e and stderr share the log on purpose
"$NGINX" -e "$D/backend.log" -p "$D" -c "$D/backend.conf" >>"$D/backend.log" 2>&1 &
STARTED+=($!)
wait_ready backend "$BACKEND_PORT" "$!"

# ---- measure -----------------------------------------------------------------------------
FAIL=0
for n in "${PROXIES[@]}"; do
    LOG[$n]=$D/$n.log
    # shellcheck disable=SC2094
    case $n in
    haproxy) "$HAPROXY" -f "$D/haproxy.cfg" >>"$D/haproxy.log" 2>&1 & ;;
    nginx) "$NGINX" -e "$D/nginx.log" -p "$D" -c "$D/nginx.conf" >>"$D/nginx.log" 2>&1 & ;;
    berth) "$D/berth" -c "$D/berth.yaml" >>"$D/berth.log" 2>&1 & ;;
    esac
    top=$!
    STARTED+=("$top")
    wait_ready "$n" "${PORT[$n]}" "$top"
    PID[$n]=$top
    if [[ $n == nginx ]]; then PID[$n]=$(nginx_worker "$top"); fi
    echo
    extra=""
    if [[ $n == nginx ]]; then extra=" (worker; master $top has $(rss_kib "$top") KiB, not counted)"; fi
    echo "== $n, pid ${PID[$n]}$extra, port ${PORT[$n]}"
    # In the background and waited for, so that a signal to this script stops it at once.
    "$PYTHON" "$ROOT/bench/idle_client.py" --pid "${PID[$n]}" --port "${PORT[$n]}" --n "$N" \
        --settle "$SETTLE" --return-secs "$RETURN_SECS" --window "$WINDOW" >"$D/client.$n.out" &
    client=$!
    STARTED+=("$client")
    wait "$client" && rc=0 || rc=$?
    forget "$client"
    RES[$n]=$(grep '^RESULT ' "$D/client.$n.out" | tail -n1 || true)
    if ((rc != 0)) || [[ -z ${RES[$n]} ]]; then
        echo "error: the client failed against $n (exit $rc); last lines of its log:" >&2
        tail -n 20 "${LOG[$n]}" >&2 || true
        if [[ $n == berth ]]; then exit 1; fi
        exit 2
    fi
    echo "${RES[$n]#RESULT }"
    if ! kill -0 "${PID[$n]}" 2>/dev/null; then
        echo "error: $n died; last lines of its log:" >&2
        tail -n 20 "${LOG[$n]}" >&2 || true
        [[ $n == berth ]] && exit 1
        exit 2
    fi
    if [[ $n == haproxy ]] && grep -q 'WARNING\|ALERT' "$D/haproxy.log"; then
        sed 's/^/  [haproxy] /' "$D/haproxy.log" | grep -E 'WARNING|ALERT' | head -n 3
    fi
    stop "$top"
done

# ---- summary -----------------------------------------------------------------------------
field() { # RESULT-LINE KEY
    local kv
    for kv in $1; do [[ $kv == "$2="* ]] && { echo "${kv#*=}"; return; }; done
    echo 0
}
declare -A IDLE_B=() REQ_B=()
echo
printf "%-9s %13s %12s %17s %16s %20s %7s\n" proxy baseline_kib idle_B/conn after_req_B/conn \
    after_close_kib returned_within_10% errors
for n in "${PROXIES[@]}"; do
    r=${RES[$n]}
    base=$(field "$r" baseline)
    IDLE_B[$n]=$(((($(field "$r" idle) - base) * 1024) / N))
    REQ_B[$n]=$(((($(field "$r" request) - base) * 1024) / N))
    ret=$(field "$r" returned)
    if ((ret >= 0)); then ret="yes (${ret}s)"; else ret="no (${RETURN_SECS}s)"; fi
    errs=$(($(field "$r" errors) + $(field "$r" closed_early)))
    printf "%-9s %13s %12s %17s %16s %20s %7s\n" "$n" "$base" "${IDLE_B[$n]}" "${REQ_B[$n]}" \
        "$(field "$r" close)" "$ret" "$errs"
    if [[ $n == berth ]] && ((errs > 0)); then FAIL=1; fi
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
if [[ $BERTH_ONLY != 1 ]]; then
    for a in haproxy nginx; do
        echo "berth/$a idle ratio: $(ratio "${IDLE_B[berth]}" "${IDLE_B[$a]}")   after-request ratio: $(ratio "${REQ_B[berth]}" "${REQ_B[$a]}")"
    done
fi
echo "(errors: failed requests plus connections the proxy closed before the client did)"

if [[ $FAIL != 0 ]]; then
    echo "FAIL: berth had request errors or closed idle connections" >&2
    exit 1
fi
exit 0
