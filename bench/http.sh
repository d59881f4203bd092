#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# HTTP proxy benchmark on loopback: berth side by side with HAProxy and nginx.
#
# One nginx backend (1 worker, ports 9101-9104) answers `200 "hello from backend\n"`. In front
# of it: HAProxy on 8081 (nbthread 1, http-reuse always, roundrobin), nginx on 8082 (1 worker,
# keepalive upstream) and berth on 8083 (workers: 1). wrk runs keep-alive load against each
# proxy in turn, ROUNDS times, and the script prints per run and as medians: requests/s, p50,
# p99, proxy CPU time per request (utime+stime from /proc/PID/stat; for nginx its worker),
# non-2xx responses and socket errors, then berth's ratios to HAProxy and nginx.
#
# HTTPS=1 puts TLS in front: a self-signed RSA-2048 certificate (openssl, in the temp dir) on
# all three proxies (HAProxy `ssl crt ... ssl-min-ver TLSv1.2 alpn http/1.1`, nginx `listen ssl`
# with TLSv1.2 TLSv1.3, berth `protocol: HTTPS` with the default `modern` policy), backends
# stay plain HTTP, and each proxy is measured three ways:
#   ka     wrk keep-alive on https:// (TLS records only, no handshakes after the first)
#   close  wrk -H "Connection: close": a new TCP+TLS connection per request, but wrk keeps its
#          SSL object and so RESUMES the session (abbreviated handshake, no RSA signature)
#   full   ab -f TLS1.3 -c CONN (no keep-alive): a new connection with a FULL handshake per
#          request (ab never offers a session); needs ab (Debian: apache2-utils), else skipped
#
# H2=1 measures HTTP/2 to clients over TLS (same certificate; backends stay plain HTTP/1.1 with
# keep-alive): HAProxy `alpn h2,http/1.1` on the bind, nginx `listen ... ssl http2`, berth
# `protocol: HTTPS` (h2 by ALPN is its default), one worker/thread each, and one measurement:
#   h2     h2load -t1 -c H2_CONN -m STREAMS -D DUR: H2_CONN connections, STREAMS concurrent
#          streams on each; p50/p99 from h2load's per-request log. A run whose client did not
#          negotiate h2 ("Application protocol: h2"), or that has failed or errored requests,
#          counts as an error. Needs h2load (Debian: nghttp2-client). With HTTPS=1 as well, h2
#          comes after ka, close and full.
#
# Usage: bench/http.sh [--markdown]
#   --markdown   print the summary as markdown tables (for bench/README.md)
# Environment:
#   BERTH_BIN=PATH   berth binary (default: <repo>/build/berth); when missing, berth is skipped
#   BERTH_ONLY=1     do not start or measure HAProxy and nginx
#   HTTPS=1          TLS mode (above); needs openssl, ab for the "full" measurement
#   H2=1             HTTP/2 mode (above); needs openssl and h2load
#   H2_CONN=32 STREAMS=10   h2load connections and concurrent streams per connection
#   CONN=64 DUR=8 ROUNDS=3   wrk connections, seconds per run, rounds
#   WARMUP=1         seconds of unmeasured load per proxy before round 1 (0: none)
#   TARGETS=N        a third berth ("berth_targets", port PORT_BASE+4) forwards to a group of
#                    N targets (127.1.X.Y:BACKEND_PORT, all served by the backend nginx, which
#                    then listens on N more addresses) instead of the 4 backend ports
#   RULES=N          berth gets one catch-all rule, and a second berth ("berth_rules", port
#                    PORT_BASE+3) matches the same requests against N rules
#   BACKEND_PORT=9101 PORT_BASE=8081   backend ports BACKEND_PORT..+3; haproxy, nginx and berth
#                    listen on PORT_BASE, +1, +2 (move them when another run holds the defaults)
# Exit status: 0 ok; 1 a berth run had non-2xx responses or socket errors, or berth died;
# 2 setup failure (missing tool, busy port, a server that did not come up).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
BERTH_BIN=${BERTH_BIN:-$ROOT/build/berth}
BERTH_ONLY=${BERTH_ONLY:-0}
HTTPS=${HTTPS:-0}
H2=${H2:-0}
H2_CONN=${H2_CONN:-32}
STREAMS=${STREAMS:-10}
CONN=${CONN:-64}
DUR=${DUR:-8}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
READY_TIMEOUT=10 # seconds each server gets to answer its first request
MARKDOWN=0

BACKEND_PORT=${BACKEND_PORT:-9101}
PORT_BASE=${PORT_BASE:-8081}
BACKEND_PORTS=("$BACKEND_PORT" $((BACKEND_PORT + 1)) $((BACKEND_PORT + 2)) $((BACKEND_PORT + 3)))
RULES=${RULES:-0} # > 0: berth gets one catch-all rule and "berth_rules" runs with RULES rules
TARGETS=${TARGETS:-0} # > 0: "berth_targets" forwards to a group of TARGETS targets
declare -A PORT=([haproxy]=$PORT_BASE [nginx]=$((PORT_BASE + 1)) [berth]=$((PORT_BASE + 2))
                 [berth_rules]=$((PORT_BASE + 3)) [berth_targets]=$((PORT_BASE + 4)))
declare -A PID=()   # proxy name -> pid whose CPU time is measured
declare -A LOG=()   # proxy name -> its log file
STARTED=()          # every pid this script started, for cleanup
EXPECT="hello from backend"


for arg in "$@"; do
    case $arg in
    --markdown) MARKDOWN=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $arg" ;;
    esac
done
for v in CONN DUR ROUNDS WARMUP BACKEND_PORT PORT_BASE RULES TARGETS H2_CONN STREAMS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((CONN > 0 && DUR > 0 && ROUNDS > 0)) || die "CONN, DUR and ROUNDS must be positive"
((H2_CONN > 0 && STREAMS > 0)) || die "H2_CONN and STREAMS must be positive"
[[ $HTTPS == 0 || $HTTPS == 1 ]] || die "HTTPS must be 0 or 1, got '$HTTPS'"
[[ $H2 == 0 || $H2 == 1 ]] || die "H2 must be 0 or 1, got '$H2'"
TLS=0 # HTTPS=1 or H2=1: every proxy listens with TLS
if [[ $HTTPS == 1 || $H2 == 1 ]]; then TLS=1; fi

# ---- tools -------------------------------------------------------------------------------
need=(wrk curl nginx awk sort)
[[ $BERTH_ONLY == 1 ]] || need+=(haproxy)
[[ $TLS == 0 ]] || need+=(openssl)
[[ $H2 == 0 ]] || need+=(h2load)
missing=()
for t in "${need[@]}"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if ((${#missing[@]})); then
    pkgs="wrk curl nginx haproxy"
    [[ $H2 == 0 ]] || pkgs+=" nghttp2-client"
    die "missing tools: ${missing[*]} (Debian: apt-get install $pkgs)"
fi
# Debian keeps nginx and haproxy in /usr/sbin, which is not always on PATH for non-root users.
NGINX=$(command -v nginx)
HAPROXY=$(command -v haproxy || true)

# Measurements per proxy: "ka" (wrk keep-alive) only, unless HTTPS=1 or H2=1 (see the header).
MODES=(ka)
SCHEME=http
if [[ $TLS == 1 ]]; then SCHEME=https; fi
if [[ $HTTPS == 1 ]]; then
    MODES=(ka close)
    if command -v ab >/dev/null 2>&1; then
        MODES+=(full)
    else
        echo "ab not found (Debian: apt-get install apache2-utils), skipping the full-handshake measurement"
    fi
fi
if [[ $H2 == 1 ]]; then
    if [[ $HTTPS == 1 ]]; then MODES+=(h2); else MODES=(h2); fi
fi

RUN_BERTH=1
if [[ ! -x $BERTH_BIN ]]; then
    if [[ $BERTH_ONLY == 1 ]]; then die "berth binary not found at $BERTH_BIN (set BERTH_BIN or build it)"; fi
    echo "berth binary not found at $BERTH_BIN, skipping berth"
    RUN_BERTH=0
fi

PROXIES=()
[[ $BERTH_ONLY == 1 ]] || PROXIES+=(haproxy nginx)
[[ $RUN_BERTH == 0 ]] || PROXIES+=(berth)
if [[ $RUN_BERTH == 1 ]] && ((RULES > 0)); then PROXIES+=(berth_rules); fi
if [[ $RUN_BERTH == 1 ]] && ((TARGETS > 0)); then PROXIES+=(berth_targets); fi
((TARGETS <= 60000)) || die "TARGETS must be at most 60000"

# ---- temp dir and cleanup ----------------------------------------------------------------
bench_tmpdir http

# ---- configs -----------------------------------------------------------------------------
for p in "${BACKEND_PORTS[@]}"; do
    tcp_port_busy "$p" && die "127.0.0.1:$p is already in use (backend port)"
done
for n in "${PROXIES[@]}"; do
    tcp_port_busy "${PORT[$n]}" && die "127.0.0.1:${PORT[$n]} is already in use ($n port)"
done

listens=""
servers=""
targets=""
for p in "${BACKEND_PORTS[@]}"; do
    listens+="    listen 127.0.0.1:$p;"$'\n'
    servers+="    server 127.0.0.1:$p;"$'\n'
    targets+="${targets:+, }\"127.0.0.1:$p\""
done

# HTTPS=1 or H2=1: one self-signed RSA-2048 certificate for all proxies; HAProxy wants cert+key
# in one file. H2=1 offers h2 by ALPN on HAProxy and nginx too (berth offers it by default).
HA_SSL="" NGX_SSL="" NGX_SSL_CONF="" BERTH_PROTO=HTTP BERTH_CERTS=""
if [[ $TLS == 1 ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$D/key.pem" -out "$D/cert.pem" >"$D/openssl.log" 2>&1 ||
        { cat "$D/openssl.log" >&2; die "openssl could not create the test certificate"; }
    cat "$D/cert.pem" "$D/key.pem" >"$D/combined.pem"
    chmod 644 "$D/key.pem" "$D/combined.pem" # readable by nginx workers running as nobody
    HA_SSL=" ssl crt $D/combined.pem ssl-min-ver TLSv1.2 alpn http/1.1"
    NGX_SSL=" ssl"
    if [[ $H2 == 1 ]]; then
        HA_SSL=" ssl crt $D/combined.pem ssl-min-ver TLSv1.2 alpn h2,http/1.1"
        NGX_SSL=" ssl http2" # nginx 1.22's form (1.25.1 moved it to "http2 on;")
    fi
    NGX_SSL_CONF="    ssl_certificate $D/cert.pem; ssl_certificate_key $D/key.pem; ssl_protocols TLSv1.2 TLSv1.3;"$'\n'
    BERTH_PROTO=HTTPS
    BERTH_CERTS="    certificates: [{cert: $D/cert.pem, key: $D/key.pem}]"$'\n'
fi

cat >"$D/backend.conf" <<EOF
worker_processes 1; daemon off; master_process on;
$(nginx_paths backend)
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
$(nginx_http_paths backend)
  server {
$listens    location / { return 200 "$EXPECT\n"; }
  }
}
EOF

cat >"$D/haproxy.cfg" <<EOF
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
  bind 127.0.0.1:${PORT[haproxy]}$HA_SSL
  default_backend be
backend be
  balance roundrobin
$(for i in "${!BACKEND_PORTS[@]}"; do echo "  server s$((i + 1)) 127.0.0.1:${BACKEND_PORTS[$i]}"; done)
EOF

cat >"$D/nginx.conf" <<EOF
worker_processes 1; daemon off; master_process on;
$(nginx_paths nginx)
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
$(nginx_http_paths nginx)
  upstream be {
$servers    keepalive 128;
    keepalive_requests 100000;
  }
  server {
    listen 127.0.0.1:${PORT[nginx]}$NGX_SSL;
$NGX_SSL_CONF    location / {
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
    protocol: $BERTH_PROTO
    bind: 127.0.0.1:${PORT[berth]}
$BERTH_CERTS    default_action: {forward: {target_groups: [{name: be}]}}
target_groups:
  - name: be
    protocol: HTTP
    health_check: {enabled: false}
    targets: [$targets]
EOF

# With RULES=N: berth matches one catch-all rule, berth_rules the same request against N
# rules (N-1 host+path rules that miss, then the catch-all), both forwarding to "be".
if ((RULES > 0)); then
    catch_all='{priority: 50000, conditions: {path: ["/*"]}, action: {forward: {target_groups: [{name: be}]}}}'
    sed "s|bind: 127.0.0.1:${PORT[berth]}|bind: 127.0.0.1:${PORT[berth_rules]}|; s|$D/berth.sock|$D/berth_rules.sock|" \
        "$D/berth.yaml" >"$D/berth_rules.yaml"
    {
        echo "    rules:"
        echo "      - $catch_all"
    } | sed -i "/    default_action:/e cat /dev/stdin" "$D/berth.yaml"
    {
        echo "    rules:"
        for ((i = 1; i < RULES; i++)); do
            echo "      - {priority: $i, conditions: {host: [\"api-$i.example.com\"], path: [\"/svc-$i/*\"]}, action: {forward: {target_groups: [{name: be}]}}}"
        done
        echo "      - $catch_all"
    } | sed -i "/    default_action:/e cat /dev/stdin" "$D/berth_rules.yaml"
fi

# With TARGETS=N: berth_targets is berth with the N-target group instead of the 4 ports. The
# targets are 127.1.X.Y:BACKEND_PORT, served by extra nginx backends ("bigN") of 2,500
# addresses each: every address is a listening socket and every target keeps a pooled
# connection, and one process of 2,500 + 2,500 descriptors stays under common open-file limits.
BIG=2500
big_addrs=()
for ((i = 0; i < TARGETS; i++)); do
    big_addrs+=("127.1.$((i / 250)).$((i % 250 + 1)):${BACKEND_PORTS[0]}")
done
for ((k = 0; k * BIG < TARGETS; k++)); do
    {
        echo "worker_processes 1; daemon off; master_process on;"
        nginx_paths "big$k"
        echo "events { worker_connections $((2 * BIG + 1024)); }"
        echo "http {"
        echo "  access_log off;"
        echo "  keepalive_requests 100000;"
        nginx_http_paths "big$k"
        echo "  server {"
        for ((i = k * BIG; i < TARGETS && i < (k + 1) * BIG; i++)); do
            echo "    listen ${big_addrs[$i]};"
        done
        echo "    location / { return 200 \"$EXPECT\n\"; }"
        echo "  }"
        echo "}"
    } >"$D/big$k.conf"
done
if ((TARGETS > 0)); then
    while IFS= read -r line; do
        if [[ $line =~ ^(\ *)targets:\ \[ ]]; then
            echo "${BASH_REMATCH[1]}targets:"
            printf "${BASH_REMATCH[1]}  - \"%s\"\n" "${big_addrs[@]}"
        else
            line=${line//"bind: 127.0.0.1:${PORT[berth]}"/"bind: 127.0.0.1:${PORT[berth_targets]}"}
            echo "${line//"$D/berth.sock"/"$D/berth_targets.sock"}"
        fi
    done <"$D/berth.yaml" >"$D/berth_targets.yaml"
fi

# ---- start -------------------------------------------------------------------------------
LOG[backend]=$D/backend.log
# nginx writes its error log (-e, error_log) and its start-up messages (stderr) to one file.
# shellcheck disable=SC2094
"$NGINX" -e "$D/backend.log" -p "$D" -c "$D/backend.conf" >>"$D/backend.log" 2>&1 &
STARTED+=($!)
BACKEND_PID=$!
wait_ready backend "${BACKEND_PORTS[0]}" "$BACKEND_PID"
for p in "${BACKEND_PORTS[@]:1}"; do wait_ready backend "$p" "$BACKEND_PID"; done
for ((k = 0; k * BIG < TARGETS; k++)); do
    LOG[big$k]=$D/big$k.log
    # shellcheck disable=SC2094
    "$NGINX" -e "$D/big$k.log" -p "$D" -c "$D/big$k.conf" >>"$D/big$k.log" 2>&1 &
    STARTED+=($!)
    for ((i = 0; i < 100; i++)); do
        [[ $(curl -s -m 1 "http://${big_addrs[$((k * BIG))]}/" 2>/dev/null) == "$EXPECT" ]] && break
        sleep 0.1
    done
done

for n in "${PROXIES[@]}"; do
    LOG[$n]=$D/$n.log
    # shellcheck disable=SC2094 # nginx: -e and stderr share the log on purpose
    case $n in
    haproxy) "$HAPROXY" -f "$D/haproxy.cfg" >>"$D/haproxy.log" 2>&1 & ;;
    nginx) "$NGINX" -e "$D/nginx.log" -p "$D" -c "$D/nginx.conf" >>"$D/nginx.log" 2>&1 & ;;
    berth) "$BERTH_BIN" -c "$D/berth.yaml" >>"$D/berth.log" 2>&1 & ;;
    berth_rules) "$BERTH_BIN" -c "$D/berth_rules.yaml" >>"$D/berth_rules.log" 2>&1 & ;;
    berth_targets) "$BERTH_BIN" -c "$D/berth_targets.yaml" >>"$D/berth_targets.log" 2>&1 & ;;
    esac
    STARTED+=($!)
    PID[$n]=$!
    wait_ready "$n" "${PORT[$n]}" "${PID[$n]}" "$SCHEME"
    if [[ $n == nginx ]]; then PID[$n]=$(nginx_worker "${PID[$n]}"); fi
done

# ---- header ------------------------------------------------------------------------------
cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
echo "# berth HTTP benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# host: $(uname -sr), $(nproc) CPUs${cpu_model:+, $cpu_model}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $HTTPS == 1 ]]; then
    echo "# HTTPS (self-signed RSA-2048, backends plain HTTP); $ROUNDS rounds of ${DUR}s, ${WARMUP}s warm-up; backend nginx 1 worker on ${BACKEND_PORTS[*]}"
    echo "#   ka:    wrk -t1 -c$CONN --latency https://... (keep-alive)"
    echo "#   close: wrk -t1 -c$CONN --latency -H 'Connection: close' (new connection per request, TLS session resumed by wrk)"
    if [[ " ${MODES[*]} " == *" full "* ]]; then
        echo "#   full:  ab -q -r -f TLS1.3 -c$CONN -t$DUR (new connection per request, full handshake)"
    fi
    # What the client and each proxy negotiate, and whether a reconnect resumes the session.
    for n in "${PROXIES[@]}"; do
        tls=$(openssl s_client -connect "127.0.0.1:${PORT[$n]}" -alpn http/1.1 </dev/null 2>/dev/null |
            awk '/^New, /{sub(/^New, /, ""); print; exit}')
        res=""
        for v in 1_3 1_2; do # save the session (TLS 1.3 tickets come after the handshake), offer it again
            rm -f "$D/sess.pem"
            sleep 0.3 | openssl s_client -connect "127.0.0.1:${PORT[$n]}" -tls$v -sess_out "$D/sess.pem" >/dev/null 2>&1 || true
            if [[ -s $D/sess.pem ]] && openssl s_client -connect "127.0.0.1:${PORT[$n]}" -tls$v -sess_in "$D/sess.pem" \
                </dev/null 2>/dev/null | grep -q '^Reused,'; then res+=" TLSv${v/_/.} yes"; else res+=" TLSv${v/_/.} no"; fi
        done
        echo "#   $n: ${tls:-handshake failed}; session resumption (s_client -sess_out/-sess_in):$res"
    done
elif [[ $H2 == 0 ]]; then
    echo "# wrk -t1 -c$CONN -d${DUR}s --latency (keep-alive), $ROUNDS rounds, ${WARMUP}s warm-up; backend nginx 1 worker on ${BACKEND_PORTS[*]}"
fi
if [[ $H2 == 1 ]]; then
    [[ $HTTPS == 1 ]] ||
        echo "# HTTP/2 over TLS (self-signed RSA-2048, backends plain HTTP/1.1 keep-alive); $ROUNDS rounds of ${DUR}s, ${WARMUP}s warm-up; backend nginx 1 worker on ${BACKEND_PORTS[*]}"
    echo "#   h2:    h2load -t1 -c$H2_CONN -m$STREAMS -D$DUR (h2 by ALPN, $STREAMS concurrent streams per connection)"
    # What each proxy answers a client offering h2 and http/1.1.
    for n in "${PROXIES[@]}"; do
        alpn=$(openssl s_client -connect "127.0.0.1:${PORT[$n]}" -alpn h2,http/1.1 </dev/null 2>/dev/null |
            awk '/^ALPN protocol:/{print $3; exit} /^No ALPN negotiated/{print "none"; exit}')
        echo "#   $n: offered h2,http/1.1, ALPN chose ${alpn:-?}"
    done
fi
echo "# ports:$(for n in "${PROXIES[@]}"; do printf ' %s=%s' "$n" "${PORT[$n]}"; done)"
echo "# $(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}'); $("$NGINX" -v 2>&1)"
if [[ $HTTPS == 1 ]]; then
    echo "# $(openssl version)${MODES[2]:+; $(ab -V 2>&1 | head -n1)}"
elif [[ $H2 == 1 ]]; then
    echo "# $(openssl version)"
fi
[[ $H2 == 0 ]] || echo "# $(h2load --version 2>&1 | head -n1)"
[[ $BERTH_ONLY == 1 ]] || echo "# $("$HAPROXY" -v | head -n1)"
if [[ $RUN_BERTH == 1 ]]; then
    echo "# berth: $BERTH_BIN ($("$BERTH_BIN" --version 2>&1 | head -n1 || true))"
fi

# ---- measure -----------------------------------------------------------------------------
RESULTS=$D/results.tsv
: >"$RESULTS"
HZ=$(getconf CLK_TCK)
FAIL=0

check_alive() { # NAME
    if ! kill -0 "${PID[$1]}" 2>/dev/null; then
        echo "error: $1 (pid ${PID[$1]}) died; last lines of its log:" >&2
        tail -n 20 "${LOG[$1]}" >&2 || true
        if [[ $1 == berth ]]; then exit 1; fi
        exit 2
    fi
}

# run ROUND NAME [MODE]: one measured run (MODE ka, close, full or h2; see the header); appends
# a line to $RESULTS (name, round, rps, p50, p99, cpu, non2xx, sock, mode) and prints it.
run() {
    local round=$1 n=$2 mode=${3:-ka} out=$D/load.$2.$1.${3:-ka} c0 c1 line label=$2 w=8 ok
    local url="$SCHEME://127.0.0.1:${PORT[$n]}/"
    if [[ $TLS == 1 ]]; then label="$n $mode" w=17; fi
    c0=$(cpu_ticks "${PID[$n]}")
    case $mode in
    ka) wrk -t1 -c"$CONN" -d"${DUR}s" --latency "$url" >"$out" 2>&1 || true ;;
    close) wrk -t1 -c"$CONN" -d"${DUR}s" --latency -H "Connection: close" "$url" >"$out" 2>&1 || true ;;
    # -n caps the run; -t ends it. -r: do not stop on a failed receive (counted as failed).
    full) ab -q -r -f TLS1.3 -c "$CONN" -t "$DUR" -n 100000000 "$url" >"$out" 2>&1 || true ;;
    # --log-file: one line per request (start, status, microseconds), for p50 and p99.
    h2) h2load -t1 -c"$H2_CONN" -m"$STREAMS" -D"$DUR" --log-file="$out.log" "$url" >"$out" 2>&1 || true ;;
    esac
    check_alive "$n"
    c1=$(cpu_ticks "${PID[$n]}")
    if [[ $mode == h2 ]]; then
        ok='^finished in '
        # h2load: "done" requests (in flight at the end of -D are neither done nor failed);
        # non2xx from "status codes" (3xx, 4xx, 5xx); sock_err: "failed" requests (HTTP-level
        # failures included, so a 5xx counts in both) plus the run itself when the client did
        # not negotiate h2.
        local pct
        pct=$(awk -F'\t' '{print $3}' "$out.log" 2>/dev/null | sort -n | awk '
            {v[NR] = $1}
            END { if (NR == 0) print "-1 -1"; else printf "%.3f %.3f\n", v[int((NR - 1) * 0.50) + 1] / 1000, v[int((NR - 1) * 0.99) + 1] / 1000 }')
        rm -f "$out.log"
        line=$(awk -v name="$n" -v round="$round" -v c0="$c0" -v c1="$c1" -v hz="$HZ" -v mode="$mode" -v pct="$pct" '
        /^finished in /          { rps = $4 }
        /^requests: /            { gsub(/,/, ""); req = $6; failed = $10 }
        /^status codes: /        { gsub(/,/, ""); non2xx = $5 + $7 + $9 }
        /^Application protocol:/ { proto = $3 }
        END {
            split(pct, p, " ")
            sock = failed + (proto == "h2" ? 0 : 1)
            if (req == "") { req = 0; rps = 0; p[1] = -1; p[2] = -1 }
            cpu = (req > 0) ? (c1 - c0) / hz * 1e6 / req : -1
            printf "%s\t%d\t%.0f\t%.3f\t%.3f\t%.2f\t%d\t%d\t%s\n", name, round, rps, p[1], p[2], cpu, non2xx + 0, sock + 0, mode
        }' "$out")
        if ! grep -q '^Application protocol: h2$' "$out"; then
            echo "warning: $label: h2load did not negotiate h2 ($(grep -m1 '^Application protocol' "$out" || echo 'no protocol line'))" >&2
        fi
    elif [[ $mode == full ]]; then
        ok='^Requests per second:'
        # ab: "Failed requests" (connect, receive, length, exceptions) go to sock_err;
        # percentiles are whole milliseconds.
        line=$(awk -v name="$n" -v round="$round" -v c0="$c0" -v c1="$c1" -v hz="$HZ" -v mode="$mode" '
        /^Complete requests:/    { req = $3 }
        /^Failed requests:/      { sock = $3 }
        /^Non-2xx responses:/    { non2xx = $3 }
        /^Requests per second:/  { rps = $4 }
        $1 == "50%"              { p50 = $2 }
        $1 == "99%"              { p99 = $2 }
        END {
            if (req == "") { req = 0; rps = 0; p50 = -1; p99 = -1; sock = (sock == "" ? -1 : sock) }
            cpu = (req > 0) ? (c1 - c0) / hz * 1e6 / req : -1
            printf "%s\t%d\t%.0f\t%.3f\t%.3f\t%.2f\t%d\t%d\t%s\n", name, round, rps, p50, p99, cpu, non2xx + 0, sock + 0, mode
        }' "$out")
    else
        ok='^Requests/sec:'
        line=$(awk -v name="$n" -v round="$round" -v c0="$c0" -v c1="$c1" -v hz="$HZ" -v mode="$mode" '
        function ms(v) { # wrk prints 123.45us, 1.23ms, 1.02s, 1.50m
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /m$/) return v * 60000
            if (v ~ /s$/) return v * 1000
            return v + 0
        }
        / requests in /       { req = $1 }
        /^Requests\/sec:/     { rps = $2 }
        $1 == "50%"           { p50 = ms($2) }
        $1 == "99%"           { p99 = ms($2) }
        /Non-2xx or 3xx/      { non2xx = $NF }
        /Socket errors:/      { gsub(/,/, ""); sock = $4 + $6 + $8 + $10 }
        END {
            if (req == "") { req = 0; rps = 0; p50 = -1; p99 = -1; sock = (sock == "" ? -1 : sock) }
            cpu = (req > 0) ? (c1 - c0) / hz * 1e6 / req : -1
            printf "%s\t%d\t%.0f\t%.3f\t%.3f\t%.2f\t%d\t%d\t%s\n", name, round, rps, p50, p99, cpu, non2xx + 0, sock + 0, mode
        }' "$out")
    fi
    echo "$line" >>"$RESULTS"
    awk -F'\t' -v label="$label" -v w="$w" '{
        printf "round %d  %-*s rps=%-8s p50=%-9s p99=%-9s cpu_us/req=%-7s non2xx=%s sock_err=%s\n",
               $2, w, label, $3, $4 "ms", $5 "ms", $6, $7, $8 }' <<<"$line"
    if ! grep -q "$ok" "$out"; then
        echo "warning: load tool output for $label not understood:" >&2
        cat "$out" >&2
        if [[ $n == berth* ]]; then FAIL=1; fi
    fi
    if [[ $n == berth* ]] && awk -F'\t' '$7 != 0 || $8 != 0 {exit 0} {exit 1}' <<<"$line"; then
        FAIL=1
    fi
}

if ((WARMUP > 0)); then
    for n in "${PROXIES[@]}"; do
        if [[ ${MODES[0]} == h2 ]]; then
            h2load -t1 -c"$H2_CONN" -m"$STREAMS" -D"$WARMUP" "$SCHEME://127.0.0.1:${PORT[$n]}/" >/dev/null 2>&1 || true
        else
            wrk -t1 -c"$CONN" -d"${WARMUP}s" "$SCHEME://127.0.0.1:${PORT[$n]}/" >/dev/null 2>&1 || true
        fi
        check_alive "$n"
    done
fi

np=${#PROXIES[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    # Rotate the starting proxy each round so no proxy always runs first or last.
    for mode in "${MODES[@]}"; do
        for ((i = 0; i < np; i++)); do
            run "$r" "${PROXIES[$(((i + r - 1) % np))]}" "$mode"
        done
    done
done

# ---- summary -----------------------------------------------------------------------------
# median over rounds of rps, p50, p99, cpu_us/req per proxy and mode; errors are summed.
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
declare -A MED=()
for m in "${MODES[@]}"; do
    for n in "${PROXIES[@]}"; do
        for col in 3:rps 4:p50 5:p99 6:cpu; do
            MED[$n.$m.${col#*:}]=$(awk -F'\t' -v n="$n" -v m="$m" -v c="${col%:*}" '$1 == n && $9 == m {print $c}' "$RESULTS" | median)
        done
        MED[$n.$m.non2xx]=$(awk -F'\t' -v n="$n" -v m="$m" '$1 == n && $9 == m {s += $7} END {print s + 0}' "$RESULTS")
        MED[$n.$m.sock]=$(awk -F'\t' -v n="$n" -v m="$m" '$1 == n && $9 == m {s += $8} END {print s + 0}' "$RESULTS")
    done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a >= 0) printf "%.2f", a / b; else print "-" }'; }

declare -A MODE_DESC=([ka]="\`wrk -t1 -c$CONN -d${DUR}s\`, keep-alive"
                      [close]="\`wrk -t1 -c$CONN -d${DUR}s -H 'Connection: close'\`, new connection per request (TLS session resumed)"
                      [full]="\`ab -f TLS1.3 -c$CONN -t$DUR\`, new connection per request (full TLS handshake)"
                      [h2]="\`h2load -t1 -c$H2_CONN -m$STREAMS -D$DUR\`, HTTP/2 over TLS, $STREAMS streams per connection")
for m in "${MODES[@]}"; do
    echo
    tag="" # HTTPS, H2: name the mode in every summary line
    [[ $TLS == 0 ]] || tag=" [$m]"
    if [[ $MARKDOWN == 1 ]]; then
        echo "Median of $ROUNDS rounds; ${MODE_DESC[$m]}, loopback${tag:+, HTTPS}. Errors are totals over all rounds."
        echo
        echo "| proxy | req/s | p50 (ms) | p99 (ms) | CPU µs/req | non-2xx | socket errors |"
        echo "|---|---:|---:|---:|---:|---:|---:|"
        for n in "${PROXIES[@]}"; do
            printf "| %s | %.0f | %.3f | %.3f | %.2f | %s | %s |\n" "$n" "${MED[$n.$m.rps]}" "${MED[$n.$m.p50]}" \
                "${MED[$n.$m.p99]}" "${MED[$n.$m.cpu]}" "${MED[$n.$m.non2xx]}" "${MED[$n.$m.sock]}"
        done
    else
        echo "summary$tag: median of $ROUNDS rounds (non2xx and sock_err summed over rounds)"
        printf "%-12s %10s %10s %10s %11s %7s %9s\n" proxy rps p50_ms p99_ms cpu_us/req non2xx sock_err
        for n in "${PROXIES[@]}"; do
            printf "%-12s %10.0f %10.3f %10.3f %11.2f %7s %9s\n" "$n" "${MED[$n.$m.rps]}" "${MED[$n.$m.p50]}" \
                "${MED[$n.$m.p99]}" "${MED[$n.$m.cpu]}" "${MED[$n.$m.non2xx]}" "${MED[$n.$m.sock]}"
        done
    fi

    if [[ $RUN_BERTH == 1 && $BERTH_ONLY != 1 ]]; then
        echo
        if [[ $MARKDOWN == 1 ]]; then
            echo "| berth vs | CPU µs/req ratio (lower is better) | req/s ratio (higher is better) |"
            echo "|---|---:|---:|"
        fi
        for a in haproxy nginx; do
            cr=$(ratio "${MED[berth.$m.cpu]}" "${MED[$a.$m.cpu]}")
            rr=$(ratio "${MED[berth.$m.rps]}" "${MED[$a.$m.rps]}")
            if [[ $MARKDOWN == 1 ]]; then
                echo "| $a | $cr | $rr |"
            else
                printf "berth/%-8s cpu_us/req ratio %s (lower is better), rps ratio %s (higher is better)%s\n" "$a" "$cr" "$rr" "$tag"
            fi
        done
    fi

    if ((RULES > 0)) && [[ $RUN_BERTH == 1 ]]; then
        echo
        printf "berth with %d rules / berth with 1 rule: cpu_us/req ratio %s, rps ratio %s%s\n" "$RULES" \
            "$(ratio "${MED[berth_rules.$m.cpu]}" "${MED[berth.$m.cpu]}")" "$(ratio "${MED[berth_rules.$m.rps]}" "${MED[berth.$m.rps]}")" "$tag"
    fi
    if ((TARGETS > 0)) && [[ $RUN_BERTH == 1 ]]; then
        echo
        printf "berth with %d targets / berth with 4 targets: cpu_us/req ratio %s, rps ratio %s%s\n" "$TARGETS" \
            "$(ratio "${MED[berth_targets.$m.cpu]}" "${MED[berth.$m.cpu]}")" "$(ratio "${MED[berth_targets.$m.rps]}" "${MED[berth.$m.rps]}")" "$tag"
    fi
done

if [[ $TLS == 1 && $RUN_BERTH == 1 && $BERTH_ONLY != 1 ]]; then
    echo
    echo "HTTPS: berth/haproxy cpu_us/req ratio (lower is better):$(for m in "${MODES[@]}"; do
        printf ' %s %s' "$m" "$(ratio "${MED[berth.$m.cpu]}" "${MED[haproxy.$m.cpu]}")"; done)"
fi

if [[ $FAIL != 0 ]]; then
    echo "FAIL: berth had non-2xx responses or socket errors (see the runs above)" >&2
    exit 1
fi
exit 0
