#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# HTTP/2 rapid reset (CVE-2023-44487) on loopback: what a flood on one connection costs a
# well-behaved client of the same berth.
#
# berth alone (workers: 1, access log off) in front of one nginx backend (1 worker, ports
# BACKEND_PORT..+3, `200 "hello from backend\n"`), by default h2 over TLS (`protocol: HTTPS`,
# self-signed RSA-2048, h2 by ALPN), with H2C=1 h2c with prior knowledge (`protocol: HTTP`,
# `h2c: true`). A well-behaved client, h2load -t1 -c H2_CONN -m STREAMS -D DUR, is measured
# in three kinds of runs, each once per round, the order rotating from round to round (round 1:
# attack, base, burn; round 2: base, burn, attack; ...):
#   base    h2load alone
#   attack  h2load while bench/h2_rapid_reset.py floods: one connection at a time, HEADERS then
#           RST_STREAM(CANCEL) on new streams as fast as the socket takes them, a new connection
#           as soon as berth sends GOAWAY or closes. The attacker starts 1 s before h2load and
#           stops when it ends.
#   burn    the control: h2load while the same script only burns as much CPU as the attacker
#           used in the latest attack run (its CPU seconds / wall seconds), talking to nobody.
#           On a small machine the attacker competes with h2load, berth and the backend for the
#           CPUs; burn/base is that competition alone, attack/burn what is left for berth.
# Per run it prints the client's requests/s, p50/p99 (h2load's per-request log), berth's CPU
# per client request and CPU share, and, under attack, berth's metric deltas from the control
# socket (berth_http2_goaways_total{code="ENHANCE_YOUR_CALM"}, client stream resets, streams)
# and the attacker's own counts (connections, streams sent, GOAWAYs received, its CPU).
# The summary gives the medians and the attack runs' requests/s as a percentage of the base
# runs' (the goal is >= 80 %), both as the ratio of medians and the median of the per-round
# ratios, and the same for burn/base and attack/burn.
#
# Usage: bench/h2_rapid_reset.sh
# Environment:
#   BERTH_BIN=PATH   berth binary (default: <repo>/build/berth)
#   H2C=1            h2c with prior knowledge instead of h2 over TLS
#   H2_CONN=32 STREAMS=10 DUR=8 ROUNDS=3   h2load connections, streams per connection,
#                    seconds per run, rounds (one base, one attack and one burn run each)
#   CONTROL=0        no burn runs
#   BATCH=50         HEADERS+RST_STREAM pairs per attacker write
#   WARMUP=1         seconds of unmeasured h2load load before round 1 (0: none)
#   BACKEND_PORT=9101 PORT=8083   backend ports BACKEND_PORT..+3 and berth's port
#   PYTHON=python3   interpreter for the attacker (standard library only)
#   NICE=0           the attacker's (and the burner's) nice value: 19 gives it only the CPU
#                    nobody else wants, as when it runs on a machine of its own (the
#                    summary counts the streams it still got reset)
#   PIN=0            1: berth runs alone on CPU 0 (taskset), the backend, h2load and the
#                    attacker share CPU 1: the attacker then competes with the client, not
#                    with berth, as when it runs on another machine
# Exit status: 0 ok (whatever the percentage); 1 berth died, or the well-behaved client had
# failed requests or did not negotiate h2 (h2c with H2C=1); 2 setup failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
BERTH_BIN=${BERTH_BIN:-$ROOT/build/berth}
H2C=${H2C:-0}
H2_CONN=${H2_CONN:-32}
STREAMS=${STREAMS:-10}
DUR=${DUR:-8}
ROUNDS=${ROUNDS:-3}
BATCH=${BATCH:-50}
CONTROL=${CONTROL:-1}
WARMUP=${WARMUP:-1}
BACKEND_PORT=${BACKEND_PORT:-9101}
BPORT=${PORT:-8083}
PYTHON=${PYTHON:-python3}
PIN=${PIN:-0}
NICE=${NICE:-0}
BERTH_CPU=() OTHER_CPU=()
if [[ $PIN == 1 ]]; then
    BERTH_CPU=(taskset -c 0) OTHER_CPU=(taskset -c 1)
fi
READY_TIMEOUT=10 # used by wait_ready
EXPECT="hello from backend"
GOAL=80
declare -A LOG=()
STARTED=()

for arg in "$@"; do
    case $arg in
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $arg" ;;
    esac
done
for v in H2_CONN STREAMS DUR ROUNDS BATCH WARMUP BACKEND_PORT BPORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((H2_CONN > 0 && STREAMS > 0 && DUR > 0 && ROUNDS > 0 && BATCH > 0)) ||
    die "H2_CONN, STREAMS, DUR, ROUNDS and BATCH must be positive"
[[ $H2C == 0 || $H2C == 1 ]] || die "H2C must be 0 or 1, got '$H2C'"
[[ $CONTROL == 0 || $CONTROL == 1 ]] || die "CONTROL must be 0 or 1, got '$CONTROL'"

need=(h2load curl nginx awk sort "$PYTHON")
[[ $H2C == 1 ]] || need+=(openssl)
missing=()
for t in "${need[@]}"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (Debian: apt-get install nghttp2-client curl nginx python3 openssl)"
[[ -x $BERTH_BIN ]] || die "berth binary not found at $BERTH_BIN (set BERTH_BIN or build it)"
NGINX=$(command -v nginx)

bench_tmpdir h2rr

BACKEND_PORTS=("$BACKEND_PORT" $((BACKEND_PORT + 1)) $((BACKEND_PORT + 2)) $((BACKEND_PORT + 3)))
for p in "${BACKEND_PORTS[@]}" "$BPORT"; do
    tcp_port_busy "$p" && die "127.0.0.1:$p is already in use"
done

# ---- configs -----------------------------------------------------------------------------
listens="" targets=""
for p in "${BACKEND_PORTS[@]}"; do
    listens+="    listen 127.0.0.1:$p;"$'\n'
    targets+="${targets:+, }\"127.0.0.1:$p\""
done
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

if [[ $H2C == 1 ]]; then
    SCHEME=http TRANSPORT="h2c (prior knowledge)" ATTACK_TLS=() PROTO=h2c
    listener_extra="    h2c: true"$'\n'
else
    SCHEME=https TRANSPORT="h2 over TLS (ALPN; self-signed RSA-2048)" ATTACK_TLS=(--tls) PROTO=h2
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$D/key.pem" -out "$D/cert.pem" >"$D/openssl.log" 2>&1 ||
        { cat "$D/openssl.log" >&2; die "openssl could not create the test certificate"; }
    listener_extra="    certificates: [{cert: $D/cert.pem, key: $D/key.pem}]"$'\n'
fi
cat >"$D/berth.yaml" <<EOF
workers: 1
access_log: "off"
control: {socket: $D/berth.sock}
listeners:
  - name: bench
    protocol: $([[ $H2C == 1 ]] && echo HTTP || echo HTTPS)
    bind: 127.0.0.1:$BPORT
$listener_extra    default_action: {forward: {target_groups: [{name: be}]}}
target_groups:
  - name: be
    protocol: HTTP
    health_check: {enabled: false}
    targets: [$targets]
EOF

# ---- start -------------------------------------------------------------------------------
LOG[backend]=$D/backend.log
# shellcheck disable=SC2094 # -e and stderr share the log on purpose
"${OTHER_CPU[@]}" "$NGINX" -e "$D/backend.log" -p "$D" -c "$D/backend.conf" >>"$D/backend.log" 2>&1 &
STARTED+=($!)
for p in "${BACKEND_PORTS[@]}"; do wait_ready backend "$p" "${STARTED[0]}"; done
LOG[berth]=$D/berth.log
"${BERTH_CPU[@]}" "$BERTH_BIN" -c "$D/berth.yaml" >>"$D/berth.log" 2>&1 &
STARTED+=($!)
BERTH_PID=$!
wait_ready berth "$BPORT" "$BERTH_PID" "$SCHEME"
URL="$SCHEME://127.0.0.1:$BPORT/"

check_alive() {
    if ! kill -0 "$BERTH_PID" 2>/dev/null; then
        echo "error: berth (pid $BERTH_PID) died; last lines of its log:" >&2
        tail -n 20 "$D/berth.log" >&2 || true
        exit 1
    fi
}

# metric NAME_AND_LABELS: one value from berth's /metrics (0 when absent).
METRICS=$D/metrics.txt
metrics_snapshot() { curl -sS -m 5 --unix-socket "$D/berth.sock" http://x/metrics >"$METRICS" 2>/dev/null || : >"$METRICS"; }
metric() { awk -v k="$1" '$1 == k {print $2; found = 1} END {if (!found) print 0}' "$METRICS"; }
EYC='berth_http2_goaways_total{listener="bench",code="ENHANCE_YOUR_CALM"}'
RESETS='berth_http2_stream_resets_total{listener="bench",by="client"}'
H2STREAMS='berth_http2_streams_total{listener="bench"}'
H2CONNS='berth_http2_connections_total{listener="bench"}'

# ---- header ------------------------------------------------------------------------------
cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
echo "# berth HTTP/2 rapid-reset benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# host: $(uname -sr), $(nproc) CPUs${cpu_model:+, $cpu_model}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# berth: $BERTH_BIN ($("$BERTH_BIN" --version 2>&1 | head -n1 || true)), workers: 1, $TRANSPORT on 127.0.0.1:$BPORT; backend nginx 1 worker on ${BACKEND_PORTS[*]}"
KINDS=(attack base)
[[ $CONTROL == 0 ]] || KINDS+=(burn)
echo "# client: $(h2load --version 2>&1 | head -n1), h2load -t1 -c$H2_CONN -m$STREAMS -D$DUR $URL; $ROUNDS rounds of ${KINDS[*]}, ${WARMUP}s warm-up"
echo "# attacker: $PYTHON bench/h2_rapid_reset.py ${ATTACK_TLS[*]:+${ATTACK_TLS[*]} }--batch $BATCH (HEADERS + RST_STREAM pairs, reconnects on GOAWAY/close)"

# ---- measure -----------------------------------------------------------------------------
RESULTS=$D/results.tsv
: >"$RESULTS"
HZ=$(getconf CLK_TCK)
FAIL=0

BURN=0 # the attacker's CPU share in the latest attack run, for the burn runs

# children_cpu: user+sys seconds of this shell's waited-for children so far (bash's `times`,
# second line; run in this shell, not a subshell); around a foreground h2load, its CPU time.
children_cpu() {
    times >"$D/times"
    awk 'NR == 2 {
        n = split($0, f, " ")
        for (i = 1; i <= n; i++) { split(f[i], p, "m"); s += p[1] * 60 + p[2] }
        printf "%.3f", s }' "$D/times"
}

# run ROUND KIND: one h2load run (KIND base, attack or burn); appends
# kind round rps p50 p99 cpu_us/req cpu_pct failed eyc resets streams conns attacker_json client_cpu_pct
# (conns: new h2 connections besides h2load's H2_CONN)
run() {
    local round=$1 kind=$2 out=$D/h2load.$1.$2 c0 c1 k0 k1 e0 r0 s0 n0 apid="" ajson="{}" pct line
    metrics_snapshot
    e0=$(metric "$EYC") r0=$(metric "$RESETS") s0=$(metric "$H2STREAMS") n0=$(metric "$H2CONNS")
    if [[ $kind == attack ]]; then
        "${OTHER_CPU[@]}" nice -n "$NICE" "$PYTHON" "$ROOT/bench/h2_rapid_reset.py" --port "$BPORT" "${ATTACK_TLS[@]}" --batch "$BATCH" \
            --duration $((DUR + 30)) >"$D/$kind.$round.json" 2>"$D/$kind.$round.err" &
    elif [[ $kind == burn ]]; then
        "${OTHER_CPU[@]}" nice -n "$NICE" "$PYTHON" "$ROOT/bench/h2_rapid_reset.py" --burn "$BURN" --duration $((DUR + 30)) \
            >"$D/$kind.$round.json" 2>"$D/$kind.$round.err" &
    fi
    if [[ $kind != base ]]; then
        apid=$!
        STARTED+=("$apid")
        sleep 1
    fi
    c0=$(cpu_ticks "$BERTH_PID")
    children_cpu >"$D/k0"
    "${OTHER_CPU[@]}" h2load -t1 -c"$H2_CONN" -m"$STREAMS" -D"$DUR" --log-file="$out.log" "$URL" >"$out" 2>&1 || true
    children_cpu >"$D/k1"
    k0=$(<"$D/k0") k1=$(<"$D/k1")
    c1=$(cpu_ticks "$BERTH_PID")
    if [[ -n $apid ]]; then
        kill -TERM "$apid" 2>/dev/null || true
        wait "$apid" 2>/dev/null || true
        ajson=$(head -n1 "$D/$kind.$round.json")
        [[ -n $ajson ]] || { echo "warning: the $kind client printed nothing; its stderr:" >&2; cat "$D/$kind.$round.err" >&2; ajson="{}"; }
        if [[ $kind == attack ]]; then
            BURN=$("$PYTHON" -c 'import json, sys
j = json.loads(sys.argv[1])
print("%.3f" % min(1.0, j["cpu_seconds"] / j["seconds"]) if j.get("seconds") else 0)' "$ajson")
        fi
    fi
    check_alive
    metrics_snapshot
    pct=$(awk -F'\t' '{print $3}' "$out.log" 2>/dev/null | sort -n | awk '
        {v[NR] = $1}
        END { if (NR == 0) print "-1 -1"; else printf "%.3f %.3f\n", v[int((NR - 1) * 0.50) + 1] / 1000, v[int((NR - 1) * 0.99) + 1] / 1000 }')
    rm -f "$out.log"
    line=$(awk -v kind="$kind" -v round="$round" -v c0="$c0" -v c1="$c1" -v hz="$HZ" -v pct="$pct" -v want="$PROTO" -v kc="$(awk -v a="$k0" -v b="$k1" 'BEGIN {print b - a}')" \
        -v eyc="$(($(metric "$EYC") - e0))" -v rs="$(($(metric "$RESETS") - r0))" \
        -v st="$(($(metric "$H2STREAMS") - s0))" -v cn="$(($(metric "$H2CONNS") - n0 - H2_CONN))" -v aj="$ajson" '
        /^finished in /          { secs = $3 + 0; rps = $4 }
        /^requests: /            { gsub(/,/, ""); req = $6; failed = $10 }
        /^Application protocol:/ { proto = $3 }
        END {
            split(pct, p, " ")
            if (req == "") { req = 0; rps = 0; failed = -1 }
            if (proto != want) failed = (failed < 0 ? 0 : failed) + 1000000000
            cpu = (req > 0) ? (c1 - c0) / hz * 1e6 / req : -1
            share = (secs > 0) ? (c1 - c0) / hz / secs * 100 : -1
            kshare = (secs > 0) ? kc / secs * 100 : -1
            printf "%s\t%d\t%.0f\t%.3f\t%.3f\t%.2f\t%.0f\t%d\t%d\t%d\t%d\t%d\t%s\t%.0f\n", kind, round, rps, p[1], p[2], cpu, share, failed, eyc, rs, st, cn, aj, kshare
        }' "$out")
    echo "$line" >>"$RESULTS"
    awk -F'\t' -v want="$PROTO" '{
        printf "round %d  %-6s rps=%-7s p50=%-9s p99=%-9s berth cpu_us/req=%-6s berth cpu=%s%% h2load cpu=%s%%  failed=%s", $2, $1, $3, $4 "ms", $5 "ms", $6, $7, $14, ($8 >= 1000000000 ? "not-" want : $8)
        if ($1 == "attack") printf "\n          berth: goaways ENHANCE_YOUR_CALM +%d, client resets +%d, h2 streams +%d, other h2 connections +%d\n          attacker: %s", $9, $10, $11, $12, $13
        if ($1 == "burn") printf "\n          burner: %s", $13
        printf "\n" }' <<<"$line"
    if ! grep -q "^Application protocol: $PROTO\$" "$out"; then
        echo "warning: h2load did not negotiate $PROTO ($(grep -m1 '^Application protocol' "$out" || echo 'no protocol line')); its output:" >&2
        cat "$out" >&2
        FAIL=1
    fi
    if ! awk -F'\t' '$8 == 0 {exit 0} {exit 1}' <<<"$line"; then FAIL=1; fi
}

if ((WARMUP > 0)); then
    h2load -t1 -c"$H2_CONN" -m"$STREAMS" -D"$WARMUP" "$URL" >/dev/null 2>&1 || true
    check_alive
fi
nk=${#KINDS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < nk; i++)); do
        run "$r" "${KINDS[$(((i + r - 1) % nk))]}"
        sleep 1.5 # the attacker's last connections close (berth's GOAWAY grace is 1 s)
    done
done

# ---- summary -----------------------------------------------------------------------------
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
col() { awk -F'\t' -v k="$1" -v c="$2" '$1 == k {print $c}' "$RESULTS" | median; }
declare -A MED=()
for k in "${KINDS[@]}"; do
    for c in 3:rps 4:p50 5:p99 6:cpu 7:share 14:kshare; do MED[$k.${c#*:}]=$(col "$k" "${c%:*}"); done
done
# per_round A B: median over rounds of A's rps / B's rps in the same round, in percent.
per_round() {
    awk -F'\t' -v x="$1" -v y="$2" '$1 == x {a[$2] = $3} $1 == y {b[$2] = $3}
        END {for (r in b) if (b[r] > 0 && (r in a)) print a[r] / b[r] * 100}' "$RESULTS" | median
}
eyc_total=$(awk -F'\t' '$1 == "attack" {s += $9} END {print s + 0}' "$RESULTS")
resets_total=$(awk -F'\t' '$1 == "attack" {s += $10} END {print s + 0}' "$RESULTS")
conns_total=$(awk -F'\t' '$1 == "attack" {s += $12} END {print s + 0}' "$RESULTS")
failed_total=$(awk -F'\t' '{s += ($8 >= 1000000000 ? $8 - 1000000000 : $8)} END {print s + 0}' "$RESULTS")
attack_secs=$(awk -F'\t' '$1 == "attack" {s += 1} END {print s + 0}' "$RESULTS")
ratio_pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b * 100; else print "-" }'; }
pct=$(ratio_pct "${MED[attack.rps]}" "${MED[base.rps]}")
goal_met=$(awk -v p="$pct" -v g="$GOAL" 'BEGIN {print (p + 0 >= g) ? "met" : "NOT met"}')

echo
echo "summary: median of $ROUNDS rounds; $TRANSPORT; h2load -c$H2_CONN -m$STREAMS -D$DUR"
printf "%-8s %10s %10s %10s %17s %10s %11s\n" run rps p50_ms p99_ms berth_cpu_us/req berth_cpu% h2load_cpu%
for k in base attack "${KINDS[@]:2}"; do
    printf "%-8s %10.0f %10.3f %10.3f %17.2f %10.0f %11.0f\n" "$k" "${MED[$k.rps]}" "${MED[$k.p50]}" "${MED[$k.p99]}" "${MED[$k.cpu]}" "${MED[$k.share]}" "${MED[$k.kshare]}"
done
echo "under attack (all $attack_secs attack runs): berth sent $eyc_total GOAWAY ENHANCE_YOUR_CALM on $conns_total attacker connections, counted $resets_total client stream resets"
echo "well-behaved client's failed requests over all runs: $failed_total"
echo "rapid reset: well-behaved rps under attack = $pct % of no attack (ratio of medians); median of per-round ratios $(printf '%.1f' "$(per_round attack base)") % (goal >= $GOAL %: $goal_met)"
if [[ $CONTROL == 1 ]]; then
    echo "control: burn/base $(ratio_pct "${MED[burn.rps]}" "${MED[base.rps]}") % (per round $(printf '%.1f' "$(per_round burn base)") %): the attacker's CPU use alone;" \
        "attack/burn $(ratio_pct "${MED[attack.rps]}" "${MED[burn.rps]}") % (per round $(printf '%.1f' "$(per_round attack burn)") %): the attack's effect beyond it"
fi

if [[ $FAIL != 0 ]]; then
    echo "FAIL: the well-behaved client had failed requests or did not negotiate $PROTO (see the runs above)" >&2
    exit 1
fi
exit 0
