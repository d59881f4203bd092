#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# TLS configuration scan of berth's HTTPS listener with testssl.sh, on loopback only.
#
# Starts berth with one HTTPS listener on 127.0.0.1:PORT (self-signed RSA-2048 certificate made
# with openssl in a temp dir, default ssl_policy `modern`, a target group without targets and
# health checks off, access log off), runs
#   testssl --quiet --color 0 --warnings off --nodns none --severity HIGH --jsonfile F 127.0.0.1:PORT
# (testssl only connects to the address it is given; --nodns none: no DNS look-ups; revocation
# and OCSP look-ups stay off without --phone-out), prints its report, then lists the findings
# rated HIGH or CRITICAL. Findings about the certificate itself (ids cert_*: self-signed, no
# CRL/OCSP URI) come from the throw-away test certificate and are listed apart; they do not
# fail the run. When testssl is not installed the script says so and exits 0.
#
# Usage: bench/testssl.sh
# Environment:
#   BERTH_BIN=PATH   berth binary (default: <repo>/build/berth)
#   PORT=8443        listener port on 127.0.0.1
#   SSL_POLICY=modern|intermediate   listener ssl_policy (default: berth's default, modern)
# Exit status: 0 no HIGH/CRITICAL finding (or testssl absent); 1 HIGH/CRITICAL findings;
# 2 setup failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BERTH_BIN=${BERTH_BIN:-$ROOT/build/berth}
PORT=${PORT:-8443}
SSL_POLICY=${SSL_POLICY:-}

usage() { sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "error: $*" >&2; exit 2; }
case ${1:-} in
-h | --help) usage; exit 0 ;;
"") ;;
*) usage >&2; die "unknown argument: $1" ;;
esac
[[ $PORT =~ ^[0-9]+$ ]] || die "PORT must be a whole number, got '$PORT'"

# Debian's package installs the script as `testssl`; upstream calls it testssl.sh.
TESTSSL=$(command -v testssl.sh || command -v testssl || true)
if [[ -z $TESTSSL ]]; then
    echo "testssl.sh not found, skipping the TLS scan (Debian: apt-get install testssl.sh)"
    exit 0
fi
for t in openssl curl python3; do
    command -v "$t" >/dev/null 2>&1 || die "missing tool: $t"
done
[[ -x $BERTH_BIN ]] || die "berth binary not found at $BERTH_BIN (set BERTH_BIN or build it)"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then die "127.0.0.1:$PORT is already in use"; fi

D=$(mktemp -d /tmp/berth-testssl.XXXXXX)
BERTH_PID=""
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    trap - EXIT INT TERM
    if [[ -n $BERTH_PID ]]; then
        kill -TERM "$BERTH_PID" 2>/dev/null || true
        wait "$BERTH_PID" 2>/dev/null || true
    fi
    rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 365 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$D/key.pem" -out "$D/cert.pem" >"$D/openssl.log" 2>&1 ||
    { cat "$D/openssl.log" >&2; die "openssl could not create the test certificate"; }

cat >"$D/berth.yaml" <<EOF
workers: 1
access_log: "off"
control: {socket: $D/berth.sock}
listeners:
  - name: tls
    protocol: HTTPS
    bind: 127.0.0.1:$PORT
    certificates: [{cert: $D/cert.pem, key: $D/key.pem}]
${SSL_POLICY:+    ssl_policy: $SSL_POLICY
}    default_action: {forward: {target_groups: [{name: be}]}}
target_groups:
  - name: be
    protocol: HTTP
    health_check: {enabled: false}
    targets: []
EOF

"$BERTH_BIN" -c "$D/berth.yaml" >"$D/berth.log" 2>&1 &
BERTH_PID=$!
ready=0
for _ in {1..100}; do # up to 10s; no targets, so berth answers 503
    kill -0 "$BERTH_PID" 2>/dev/null || { cat "$D/berth.log" >&2; die "berth exited during start-up"; }
    code=$(curl -sk -o /dev/null -m 1 -w '%{http_code}' "https://127.0.0.1:$PORT/" 2>/dev/null || true)
    if [[ $code =~ ^[1-5][0-9][0-9]$ ]]; then ready=1; break; fi
    sleep 0.1
done
((ready)) || { tail -n 20 "$D/berth.log" >&2; die "berth did not answer on https://127.0.0.1:$PORT"; }

echo "# berth TLS scan $(date -u +%Y-%m-%dT%H:%M:%SZ): $TESTSSL on 127.0.0.1:$PORT (ssl_policy ${SSL_POLICY:-default})"
echo "# berth: $BERTH_BIN ($("$BERTH_BIN" --version 2>&1 | head -n1 || true)); $("$TESTSSL" --version 2>&1 | grep -m1 -o 'testssl[^ ]* *[0-9][^ ]*' || true)"
start=$SECONDS
# testssl's exit status counts problems; the JSON findings decide below.
"$TESTSSL" --quiet --color 0 --warnings off --nodns none --severity HIGH \
    --jsonfile "$D/testssl.json" "127.0.0.1:$PORT" || true
took=$((SECONDS - start))
kill -0 "$BERTH_PID" 2>/dev/null || { tail -n 20 "$D/berth.log" >&2; die "berth died during the scan"; }
[[ -s $D/testssl.json ]] || die "testssl wrote no JSON findings"

echo
echo "scan took ${took}s"
# --severity HIGH keeps HIGH and CRITICAL findings in the JSON (plus scan errors, FATAL/WARN).
python3 - "$D/testssl.json" <<'PY'
import json, sys
findings = json.load(open(sys.argv[1]))
high = [f for f in findings if f.get("severity") in ("HIGH", "CRITICAL")]
cert = [f for f in high if str(f.get("id", "")).startswith("cert_")]
bad = [f for f in high if f not in cert]
notes = [f for f in findings if f.get("severity") in ("WARN", "FATAL")]
for f in notes:
    print(f"scan note: {f['severity']} {f.get('id')}: {f.get('finding')}")
print(f"HIGH or CRITICAL findings about the self-signed test certificate (expected): {len(cert)}")
for f in cert:
    print(f"  {f['severity']:8} {f.get('id')}: {f.get('finding')}")
print(f"HIGH or CRITICAL findings about berth's TLS (protocols, ciphers, vulnerabilities): {len(bad)}")
for f in bad:
    print(f"  {f['severity']:8} {f.get('id')}: {f.get('finding')}")
sys.exit(1 if bad else 0)
PY
