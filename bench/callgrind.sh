#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Instructions per request under callgrind: a repeatable cost meter for berth alone (the
# side-by-side scripts give throughput and CPU ratios; this one does not drift with a noisy
# machine). berth (workers: 1) runs under `valgrind --tool=callgrind` in front of an nginx
# backend on loopback, and a client sends requests one after another:
#   http   keep-alive GETs on one connection (HTTP listener -> HTTP group)
#   tcp    one TCP connection per exchange: 64 bytes up, the backend's answer back, close
#   udp    one flow: a 1200-byte datagram up, its echo back (a Python echo target)
#   h2     h2c (prior knowledge) GETs on one connection, one stream after another (Python's
#          h2 client; HTTP/2 listener -> the same HTTP group)
#   grpc   unary gRPC calls the same way (POST, a 9-byte message, te: trailers) to a GRPC
#          group whose target is nghttpd answering one message and grpc-status 0 in trailers
#          (HTTP/2 on both sides: berth's h2_upstream)
# Each case runs twice (N1 and N2 exchanges); the difference in instructions over N2-N1
# cancels start-up and shutdown, and the script prints instructions per exchange.
#
# Usage: bench/callgrind.sh
# Environment: BERTH_BIN=PATH (default <repo>/build/berth), N1=200 N2=1200, PORT_BASE=8391,
#   MODES="http tcp udp h2 grpc" (the cases to run; grpc needs nghttpd, nghttp2-server)
# Exit status: 0 ok; 2 setup failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
BERTH_BIN=${BERTH_BIN:-$ROOT/build/berth}
N1=${N1:-200}
N2=${N2:-1200}
PORT_BASE=${PORT_BASE:-8391}
READY_TIMEOUT=20
STARTED=()
declare -A LOG
EXPECT="hello from backend"

if [[ ${1:-} == -h || ${1:-} == --help ]]; then usage; exit 0; fi
for tool in valgrind callgrind_annotate nginx curl python3; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[[ -x $BERTH_BIN ]] || die "no berth binary at $BERTH_BIN"
bench_tmpdir callgrind
BACKEND=$PORT_BASE HTTP_PORT=$((PORT_BASE + 1)) TCP_PORT=$((PORT_BASE + 2))
UDP_PORT=$((PORT_BASE + 3)) ECHO_PORT=$((PORT_BASE + 4)) H2_PORT=$((PORT_BASE + 5))
GRPC_TARGET=$((PORT_BASE + 6)) GRPC_PORT=$((PORT_BASE + 7))
for p in $BACKEND $HTTP_PORT $TCP_PORT $H2_PORT $GRPC_TARGET $GRPC_PORT; do
    tcp_port_busy "$p" && die "port $p is busy (set PORT_BASE)"
done

cat >"$D/nginx.conf" <<EOF
worker_processes 1;
$(nginx_paths backend)
events { worker_connections 1024; }
http {
$(nginx_http_paths backend)
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$BACKEND;
    location / { return 200 "hello from backend\n"; }
  }
}
EOF
LOG[backend]=$D/backend.log
nginx -c "$D/nginx.conf" -g 'daemon off;' >"${LOG[backend]}" 2>&1 &
STARTED+=($!)
wait_ready backend "$BACKEND" $!

python3 - "$ECHO_PORT" <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(65536)
    s.sendto(data, peer)
EOF
STARTED+=($!)

if [[ " ${MODES:-http tcp udp h2 grpc} " == *" grpc "* ]]; then
    command -v nghttpd >/dev/null || die "nghttpd is missing (Debian: nghttp2-server)"
    mkdir -p "$D/www/berthtest.Echo"
    printf '\x00\x00\x00\x00\x07\x0a\x05hello' >"$D/www/berthtest.Echo/Unary"
    nghttpd --no-tls --address=127.0.0.1 -d "$D/www" --trailer "grpc-status: 0" "$GRPC_TARGET" \
        >"$D/nghttpd.log" 2>&1 &
    STARTED+=($!)
fi

cat >"$D/berth.yaml" <<EOF
workers: 1
control: {socket: $D/berth.sock}
access_log: off
listeners:
  - {name: web, protocol: HTTP, bind: "127.0.0.1:$HTTP_PORT", default_action: {forward: {target_groups: [{name: web}]}}}
  - {name: tcp, protocol: TCP, bind: "127.0.0.1:$TCP_PORT", default_action: {forward: {target_groups: [{name: tcp}]}}}
  - {name: udp, protocol: UDP, bind: "127.0.0.1:$UDP_PORT", default_action: {forward: {target_groups: [{name: udp}]}}}
  - {name: h2, protocol: HTTP, h2c: true, bind: "127.0.0.1:$H2_PORT", default_action: {forward: {target_groups: [{name: web}]}}}
  - {name: grpc, protocol: HTTP, h2c: true, bind: "127.0.0.1:$GRPC_PORT", default_action: {forward: {target_groups: [{name: grpc}]}}}
target_groups:
  - {name: web, protocol: HTTP, health_check: {enabled: false}, targets: ["127.0.0.1:$BACKEND"]}
  - {name: tcp, protocol: TCP, health_check: {enabled: false}, targets: ["127.0.0.1:$BACKEND"]}
  - {name: udp, protocol: UDP, health_check: {enabled: false}, targets: ["127.0.0.1:$ECHO_PORT"]}
  - {name: grpc, protocol: HTTP, protocol_version: GRPC, health_check: {enabled: false}, targets: ["127.0.0.1:$GRPC_TARGET"]}
EOF

# client MODE N: N exchanges, one after another.
client() {
    /usr/bin/python3 - "$1" "$2" "$HTTP_PORT" "$TCP_PORT" "$UDP_PORT" "$H2_PORT" "$GRPC_PORT" <<'EOF'
import socket, sys
mode, n, http_port, tcp_port, udp_port, h2_port, grpc_port = (
    sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
    int(sys.argv[6]), int(sys.argv[7]))
req = b"GET /x HTTP/1.1\r\nHost: bench\r\nUser-Agent: callgrind\r\n\r\n"
if mode == "http":
    s = socket.create_connection(("127.0.0.1", http_port))
    buf = b""
    for _ in range(n):
        s.sendall(req)
        while b"hello from backend\n" not in buf:
            buf += s.recv(65536)
        buf = buf.split(b"hello from backend\n", 1)[1]
    s.close()
elif mode in ("h2", "grpc"):
    import h2.connection, h2.config, h2.events
    s = socket.create_connection(("127.0.0.1", h2_port if mode == "h2" else grpc_port))
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    s.sendall(c.data_to_send())
    hs = [(":method", "GET"), (":scheme", "http"), (":authority", "bench"), (":path", "/x"),
          ("user-agent", "callgrind")]
    if mode == "grpc":
        hs = [(":method", "POST"), (":scheme", "http"), (":authority", "bench"),
              (":path", "/berthtest.Echo/Unary"), ("content-type", "application/grpc"),
              ("te", "trailers"), ("user-agent", "callgrind")]
    msg = b"\x00\x00\x00\x00\x04\x0a\x02hi"
    for _ in range(n):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, hs, end_stream=mode == "h2")
        if mode == "grpc":
            c.send_data(sid, msg, end_stream=True)
        s.sendall(c.data_to_send())
        done = False
        while not done:
            for ev in c.receive_data(s.recv(65536)):
                if isinstance(ev, h2.events.DataReceived):
                    c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    done = True
            s.sendall(c.data_to_send())
    s.close()
elif mode == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    d = b"u" * 1200
    for _ in range(n):
        s.sendto(d, ("127.0.0.1", udp_port))
        s.recvfrom(65536)
    s.close()
else:
    up = b"GET /t HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nX-Pad: 0123456789\r\n\r\n"
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", tcp_port))
        s.sendall(up)
        while s.recv(65536):
            pass
        s.close()
EOF
}

# instructions MODE N: total Ir of one berth run serving N exchanges.
instructions() {
    local out=$D/cg.$1.$2 pid i
    rm -f "$D/berth.sock"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$BERTH_BIN" -c "$D/berth.yaml" \
        >"$D/berth.$1.$2.log" 2>&1 &
    pid=$!
    for i in {1..200}; do
        [[ -S $D/berth.sock ]] && curl -s -m 1 "http://127.0.0.1:$HTTP_PORT/" >/dev/null && break
        sleep 0.1
    done
    client "$1" "$2"
    kill -TERM "$pid"
    wait "$pid" || true
    callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}

printf '%-6s %14s %14s %18s\n' case "Ir (N=$N1)" "Ir (N=$N2)" "Ir per exchange"
for mode in ${MODES:-http tcp udp h2 grpc}; do
    a=$(instructions "$mode" "$N1")
    b=$(instructions "$mode" "$N2")
    printf '%-6s %14s %14s %18s\n' "$mode" "$a" "$b" $(((b - a) / (N2 - N1)))
done
