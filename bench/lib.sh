# SPDX-License-Identifier: MIT
# Helpers shared by the side-by-side benchmarks (http.sh, reload.sh, l4.sh, idle.sh). Source it after
# `set -euo pipefail`; the caller keeps every pid it starts in the array STARTED.

# usage: the calling script's header comment (from line 3 to `set -euo`).
usage() { sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
die() { echo "error: $*" >&2; exit 2; }

# bench_tmpdir NAME: sets D to a fresh temp dir that nginx workers (maybe "nobody") can reach,
# and on exit stops every pid in STARTED (TERM, up to 3 s, then KILL) and removes D.
bench_tmpdir() {
    D=$(mktemp -d "/tmp/berth-bench-$1.XXXXXX")
    chmod 755 "$D"
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    ulimit -n 65536 2>/dev/null || true
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
bench_cleanup() {
    local p i alive
    trap - EXIT INT TERM
    for p in "${STARTED[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for i in {1..30}; do
        alive=0
        for p in "${STARTED[@]}"; do
            if kill -0 "$p" 2>/dev/null; then alive=1; fi
        done
        if ((alive == 0)); then break; fi
        sleep 0.1
    done
    for p in "${STARTED[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$D"
}

# cpu_ticks PID: utime+stime in clock ticks (fields 14 and 15; comm may contain spaces);
# 0 when the process is gone.
cpu_ticks() {
    local s f
    s=$(<"/proc/$1/stat") || { echo 0; return; }
    read -ra f <<<"${s##*) }"
    echo $((f[11] + f[12]))
}

# nginx_paths NAME / nginx_http_paths NAME: directives that keep nginx's files inside $D.
nginx_paths() { echo "pid $D/$1.pid; error_log $D/$1.log warn;"; }
nginx_http_paths() {
    local t
    for t in client_body proxy fastcgi uwsgi scgi; do
        echo "  ${t}_temp_path $D/$1-tmp-$t;"
    done
}

# tcp_port_busy PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
tcp_port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_ready NAME PORT PID [SCHEME]: poll until the server answers with the backend's body
# ($EXPECT) within $READY_TIMEOUT seconds; on failure (or when PID exits) print the tail of
# ${LOG[NAME]} and exit 2.
wait_ready() {
    local name=$1 port=$2 pid=$3 scheme=${4:-http} body deadline=$((SECONDS + READY_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: $name exited during start-up; its log:" >&2
            tail -n 20 "${LOG[$name]}" >&2 || true
            exit 2
        fi
        body=$(curl -sSk -m 1 "$scheme://127.0.0.1:$port/" 2>/dev/null || true)
        [[ $body == "$EXPECT" ]] && return 0
        sleep 0.1
    done
    echo "error: $name did not answer on $scheme://127.0.0.1:$port within ${READY_TIMEOUT}s; its log:" >&2
    tail -n 20 "${LOG[$name]}" >&2 || true
    exit 2
}

# nginx_worker MASTER_PID: the pid of its single worker.
nginx_worker() {
    local w i
    for i in {1..50}; do
        w=$(pgrep -P "$1" 2>/dev/null | head -n1 || true)
        [[ -n $w ]] && { echo "$w"; return 0; }
        sleep 0.1
    done
    die "no worker process under nginx master $1"
}
