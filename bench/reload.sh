#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Reload-under-load benchmark on loopback: berth side by side with HAProxy and nginx.
#
# One nginx backend (1 worker, ports 9121-9122) answers `200 "hello from backend\n"`. Each
# proxy in turn (HAProxy on 8091, nginx on 8092, berth on 8093, all one process/worker) gets,
# for DUR seconds and at the same time:
#   ka     wrk -t1 -c32 --latency (keep-alive)
#   close  wrk -t1 -c8 --latency -H "Connection: close" (a new connection per request)
# while the script reloads it RELOADS times, one reload every DUR/RELOADS seconds, with the
# config alternating between two variants:
#   haproxy  a: `http-response set-header X-Variant a`, servers 1,2
#            b: `X-Variant b`, servers 2,1; reload = `haproxy -f CFG -sf OLDPID` (a new process;
#            no master-worker, no -x socket transfer)
#   nginx    a/b: `add_header X-Variant a|b`, upstream order 1,2 / 2,1;
#            reload = `nginx -s reload -c CFG -p DIR`
#   berth    a: no rules, targets 1,2; b: a `/variant` fixed_response rule, targets 2,1;
#            reload = `kill -HUP PID` after rewriting the file
# Config files are replaced with a rename, so a reload never reads a half-written file.
# Printed per proxy and client: requests, non-2xx, socket errors (connect/read/write/timeout),
# p99; then reloads done and a summary line.
#
# Usage: bench/reload.sh
# Environment:
#   BERTH_BIN=PATH   berth binary (default: <repo>/build/berth); when missing, berth is skipped
#   BERTH_ONLY=1     do not start or measure HAProxy and nginx
#   DUR=20           seconds of load per proxy
#   RELOADS=20       reloads per proxy, evenly spread over DUR
#   KA_CONN=32 CLOSE_CONN=8   connections of the keep-alive and the new-connection client
#   BACKEND_PORT=9121 PORT_BASE=8091   backend ports BACKEND_PORT, +1; haproxy, nginx and
#                    berth listen on PORT_BASE, +1, +2
# Exit status: 0 ok; 1 berth had a non-2xx response or a socket error in either client, a
# failed reload, or died; 2 setup failure (missing tool, busy port, a server that did not come up).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
BERTH_BIN=${BERTH_BIN:-$ROOT/build/berth}
BERTH_ONLY=${BERTH_ONLY:-0}
DUR=${DUR:-20}
RELOADS=${RELOADS:-20}
KA_CONN=${KA_CONN:-32}
CLOSE_CONN=${CLOSE_CONN:-8}
READY_TIMEOUT=10 # seconds each server gets to answer its first request

BACKEND_PORT=${BACKEND_PORT:-9121}
PORT_BASE=${PORT_BASE:-8091}
BACKEND_PORTS=("$BACKEND_PORT" $((BACKEND_PORT + 1)))
declare -A PORT=([haproxy]=$PORT_BASE [nginx]=$((PORT_BASE + 1)) [berth]=$((PORT_BASE + 2)))
declare -A LOG=()   # server name -> its log file
STARTED=()          # every pid this script started, for cleanup
EXPECT="hello from backend"


for arg in "$@"; do
    case $arg in
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $arg" ;;
    esac
done
for v in DUR RELOADS KA_CONN CLOSE_CONN BACKEND_PORT PORT_BASE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((DUR > 0 && RELOADS > 0 && KA_CONN > 0 && CLOSE_CONN > 0)) ||
    die "DUR, RELOADS, KA_CONN and CLOSE_CONN must be positive"

# ---- tools -------------------------------------------------------------------------------
need=(wrk curl nginx awk)
[[ $BERTH_ONLY == 1 ]] || need+=(haproxy ss)
missing=()
for t in "${need[@]}"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if ((${#missing[@]})); then
    die "missing tools: ${missing[*]} (Debian: apt-get install wrk curl nginx haproxy)"
fi
NGINX=$(command -v nginx)
HAPROXY=$(command -v haproxy || true)

RUN_BERTH=1
if [[ ! -x $BERTH_BIN ]]; then
    if [[ $BERTH_ONLY == 1 ]]; then die "berth binary not found at $BERTH_BIN (set BERTH_BIN or build it)"; fi
    echo "berth binary not found at $BERTH_BIN, skipping berth"
    RUN_BERTH=0
fi

PROXIES=()
[[ $BERTH_ONLY == 1 ]] || PROXIES+=(haproxy nginx)
[[ $RUN_BERTH == 0 ]] || PROXIES+=(berth)

# ---- temp dir and cleanup ----------------------------------------------------------------
bench_tmpdir reload

# ---- helpers -----------------------------------------------------------------------------
# put FILE: stdin to FILE through a rename, so a reload never reads a partial file.
put() { cat >"$1.tmp"; mv -f "$1.tmp" "$1"; }

# ---- configs -----------------------------------------------------------------------------
for p in "${BACKEND_PORTS[@]}"; do
    tcp_port_busy "$p" && die "127.0.0.1:$p is already in use (backend port)"
done
for n in "${PROXIES[@]}"; do
    tcp_port_busy "${PORT[$n]}" && die "127.0.0.1:${PORT[$n]} is already in use ($n port)"
done

B1=127.0.0.1:${BACKEND_PORTS[0]}
B2=127.0.0.1:${BACKEND_PORTS[1]}

put "$D/backend.conf" <<EOF
worker_processes 1; daemon off; master_process on;
$(nginx_paths backend)
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
$(nginx_http_paths backend)
  server {
    listen $B1;
    listen $B2;
    location / { return 200 "$EXPECT\n"; }
  }
}
EOF

# write_config NAME VARIANT (a or b): the proxy's config file for that variant.
write_config() {
    local n=$1 v=$2 first=$B1 second=$B2 rules=""
    if [[ $v == b ]]; then first=$B2 second=$B1; fi
    case $n in
    haproxy)
        put "$D/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:${PORT[haproxy]}
  http-response set-header X-Variant $v
  default_backend be
backend be
  balance roundrobin
  server s1 $first
  server s2 $second
EOF
        ;;
    nginx)
        put "$D/nginx.conf" <<EOF
worker_processes 1; daemon off; master_process on;
$(nginx_paths nginx)
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
$(nginx_http_paths nginx)
  upstream be {
    server $first;
    server $second;
    keepalive 128;
    keepalive_requests 100000;
  }
  server {
    listen 127.0.0.1:${PORT[nginx]};
    add_header X-Variant $v;
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
        ;;
    berth)
        if [[ $v == b ]]; then
            rules='    rules:
      - {priority: 1, conditions: {path: ["/variant"]}, action: {fixed_response: {status: 200, content_type: text/plain, body: "v"}}}
'
        fi
        put "$D/berth.yaml" <<EOF
workers: 1
access_log: "off"
control: {socket: $D/berth.sock}
listeners:
  - name: bench
    protocol: HTTP
    bind: 127.0.0.1:${PORT[berth]}
${rules}    default_action: {forward: {target_groups: [{name: be}]}}
target_groups:
  - name: be
    protocol: HTTP
    health_check: {enabled: false}
    targets: ["$first", "$second"]
EOF
        ;;
    esac
}

# ---- backend -----------------------------------------------------------------------------
LOG[backend]=$D/backend.log
# shellcheck disable=SC2094 # nginx: -e and stderr share the log on purpose
"$NGINX" -e "$D/backend.log" -p "$D" -c "$D/backend.conf" >>"$D/backend.log" 2>&1 &
STARTED+=($!)
BACKEND_PID=$!
for p in "${BACKEND_PORTS[@]}"; do wait_ready backend "$p" "$BACKEND_PID"; done

# ---- header ------------------------------------------------------------------------------
INTERVAL=$(awk -v d="$DUR" -v r="$RELOADS" 'BEGIN { printf "%.3f", d / r }')
HALF=$(awk -v i="$INTERVAL" 'BEGIN { printf "%.3f", i / 2 }')
cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
echo "# berth reload benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# host: $(uname -sr), $(nproc) CPUs${cpu_model:+, $cpu_model}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# per proxy, ${DUR}s of: wrk -t1 -c$KA_CONN --latency (ka)  +  wrk -t1 -c$CLOSE_CONN --latency -H 'Connection: close' (close)"
echo "# $RELOADS reloads per proxy, one every ${INTERVAL}s (first at ${HALF}s), config alternating between variants a and b"
echo "# backend nginx 1 worker on ${BACKEND_PORTS[*]}; ports:$(for n in "${PROXIES[@]}"; do printf ' %s=%s' "$n" "${PORT[$n]}"; done)"
echo "# $(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}'); $("$NGINX" -v 2>&1)"
[[ $BERTH_ONLY == 1 ]] || echo "# $("$HAPROXY" -v | head -n1)"
if [[ $RUN_BERTH == 1 ]]; then
    echo "# berth: $BERTH_BIN ($("$BERTH_BIN" --version 2>&1 | head -n1 || true))"
fi

# ---- proxies -----------------------------------------------------------------------------
# start_proxy NAME: start it on variant a; sets PID (the process to signal / replace).
PID=0
start_proxy() {
    local n=$1
    LOG[$n]=$D/$n.log
    write_config "$n" a
    # shellcheck disable=SC2094 # nginx: -e and stderr share the log on purpose
    case $n in
    haproxy) "$HAPROXY" -f "$D/haproxy.cfg" >>"$D/haproxy.log" 2>&1 & ;;
    nginx) "$NGINX" -e "$D/nginx.log" -p "$D" -c "$D/nginx.conf" >>"$D/nginx.log" 2>&1 & ;;
    berth) "$BERTH_BIN" -c "$D/berth.yaml" >>"$D/berth.log" 2>&1 & ;;
    esac
    PID=$!
    STARTED+=("$PID")
    wait_ready "$n" "${PORT[$n]}" "$PID"
}

# reload NAME VARIANT: rewrite the config to VARIANT and reload; returns 1 when the reload
# command failed. HAProxy: a new process that tells the old one (-sf) to finish and exit.
reload() {
    local n=$1 v=$2 newpid i
    write_config "$n" "$v"
    case $n in
    haproxy)
        "$HAPROXY" -f "$D/haproxy.cfg" -sf "$PID" >>"$D/haproxy.log" 2>&1 &
        newpid=$!
        STARTED+=("$newpid")
        # The new process is in charge once it listens (it binds, then signals the old one;
        # a foreground HAProxy writes no pid file); a new process that dies first failed.
        for i in {1..200}; do
            if ! kill -0 "$newpid" 2>/dev/null; then return 1; fi
            if ss -Hltnp "sport = :${PORT[haproxy]}" 2>/dev/null | grep -q "pid=$newpid,"; then break; fi
            sleep 0.01
        done
        PID=$newpid
        ;;
    nginx)
        # shellcheck disable=SC2094 # nginx: -e and stderr share the log on purpose
        "$NGINX" -e "$D/nginx.log" -p "$D" -c "$D/nginx.conf" -s reload >>"$D/nginx.log" 2>&1 || return 1
        ;;
    berth) kill -HUP "$PID" 2>/dev/null || return 1 ;;
    esac
    return 0
}

# parse FILE: "requests non2xx connect read write timeout p99_ms" from wrk's output.
parse() {
    awk '
    function ms(v) { # wrk prints 123.45us, 1.23ms, 1.02s, 1.50m
        if (v ~ /us$/) return v / 1000
        if (v ~ /ms$/) return v + 0
        if (v ~ /m$/) return v * 60000
        if (v ~ /s$/) return v * 1000
        return v + 0
    }
    / requests in /   { req = $1 }
    $1 == "99%"       { p99 = ms($2) }
    /Non-2xx or 3xx/  { non2xx = $NF }
    /Socket errors:/  { gsub(/,/, ""); c = $4; r = $6; w = $8; t = $10 }
    END {
        if (req == "") { req = -1; p99 = -1 }
        printf "%d %d %d %d %d %d %.3f\n", req, non2xx + 0, c + 0, r + 0, w + 0, t + 0, p99
    }' "$1"
}

declare -A RES=()   # name.client -> parse output
declare -A RELOADED=() # name -> "done/asked"
FAIL=0

for n in "${PROXIES[@]}"; do
    start_proxy "$n"
    ka_out=$D/wrk.$n.ka close_out=$D/wrk.$n.close
    wrk -t1 -c"$KA_CONN" -d"${DUR}s" --latency "http://127.0.0.1:${PORT[$n]}/" >"$ka_out" 2>&1 &
    ka_pid=$!
    STARTED+=("$ka_pid")
    wrk -t1 -c"$CLOSE_CONN" -d"${DUR}s" --latency -H "Connection: close" \
        "http://127.0.0.1:${PORT[$n]}/" >"$close_out" 2>&1 &
    close_pid=$!
    STARTED+=("$close_pid")

    ok=0
    sleep "$HALF"
    for ((i = 1; i <= RELOADS; i++)); do
        v=b
        if ((i % 2 == 0)); then v=a; fi
        if reload "$n" "$v"; then ok=$((ok + 1)); else echo "warning: $n reload $i failed" >&2; fi
        if ((i < RELOADS)); then sleep "$INTERVAL"; fi
    done
    wait "$ka_pid" "$close_pid" || true
    RELOADED[$n]="$ok/$RELOADS"

    # Still up, and serving the last variant?
    alive=1
    if [[ $n == haproxy ]]; then sleep 0.2; fi # the last new process may still be taking over
    if ! kill -0 "$PID" 2>/dev/null; then
        alive=0
        echo "error: $n (pid $PID) is gone after the run; last lines of its log:" >&2
        tail -n 20 "${LOG[$n]}" >&2 || true
    fi
    last=a
    if ((RELOADS % 2)); then last=b; fi
    check=""
    case $n in
    haproxy | nginx)
        hv=$(curl -sS -m 2 -D - -o /dev/null "http://127.0.0.1:${PORT[$n]}/" 2>/dev/null |
            awk -F': *' 'tolower($1) == "x-variant" {gsub(/\r/, "", $2); print $2}' || true)
        check="X-Variant now '${hv:-none}', expected '$last'"
        ;;
    berth)
        body=$(curl -sS -m 2 "http://127.0.0.1:${PORT[$n]}/variant" 2>/dev/null || true)
        if [[ $body == v ]]; then got=b; else got=a; fi
        check="/variant answered by variant $got, expected $last"
        reloads=$(curl -sS -m 2 --unix-socket "$D/berth.sock" http://berth/metrics 2>/dev/null |
            awk '/^berth_reloads_total/ {printf "%s%s", sep, $0; sep = ", "}' || true)
        [[ -z $reloads ]] || check+="; $reloads"
        if [[ $got != "$last" ]]; then FAIL=1; fi
        if grep -q 'result="error"} [1-9]' <<<"$reloads"; then FAIL=1; fi
        ;;
    esac

    echo
    echo "$n: reloads ${RELOADED[$n]} ok; $check"
    printf "  %-6s %9s %7s %8s %6s %6s %8s %9s\n" client requests non2xx connect read write timeout p99_ms
    for c in ka close; do
        out=$D/wrk.$n.$c
        RES[$n.$c]=$(parse "$out")
        read -r req non2xx ce re we te p99 <<<"${RES[$n.$c]}"
        printf "  %-6s %9s %7s %8s %6s %6s %8s %9s\n" "$c" "$req" "$non2xx" "$ce" "$re" "$we" "$te" "$p99"
        if ((req < 0)); then
            echo "warning: wrk output for $n $c not understood:" >&2
            cat "$out" >&2
        fi
        if [[ $n == berth ]] && ((req <= 0 || non2xx + ce + re + we + te > 0)); then FAIL=1; fi
    done
    if [[ $n == berth ]] && { ((alive == 0)) || [[ ${RELOADED[$n]} != "$RELOADS/$RELOADS" ]]; }; then FAIL=1; fi

    # Stop this proxy (and for HAProxy any old process still finishing) before the next one.
    for p in "${STARTED[@]}"; do
        [[ $p == "$BACKEND_PID" ]] || kill -TERM "$p" 2>/dev/null || true
    done
    for i in {1..50}; do
        tcp_port_busy "${PORT[$n]}" || break
        sleep 0.1
    done
    if [[ $n == nginx || $n == haproxy ]]; then sleep 0.3; fi
done

# ---- summary -----------------------------------------------------------------------------
echo
line="summary:"
for n in "${PROXIES[@]}"; do
    failed=0
    for c in ka close; do
        read -r req non2xx ce re we te _ <<<"${RES[$n.$c]}"
        failed=$((failed + non2xx + ce + re + we + te))
    done
    line+=" $n failed=$failed reloads=${RELOADED[$n]};"
done
echo "${line%;}"

if [[ $FAIL != 0 ]]; then
    echo "FAIL: berth had failed requests, a failed reload, or did not serve the last variant (see above)" >&2
    exit 1
fi
exit 0
