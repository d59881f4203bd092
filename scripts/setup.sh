#!/usr/bin/env bash
# Installs what berth needs from Debian 12 packages (only what is missing) and builds it.
# Usage: scripts/setup.sh [BUILD_DIR [extra cmake args...]]   Sourced by run.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_PKGS=(build-essential cmake pkg-config libevent-dev libssl-dev libjemalloc-dev node-llhttp
            libyaml-dev libjansson-dev libcmocka-dev libnghttp2-dev)
TEST_PKGS=(python3 python3-pytest python3-yaml python3-h2 python3-grpcio python3-grpc-tools nghttp2-client
           nghttp2-server iproute2 curl openssl prometheus dnsmasq-base)
want=("${BUILD_PKGS[@]}")
[ "${BERTH_WITH_TEST_DEPS:-0}" = 1 ] && want+=("${TEST_PKGS[@]}")

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

build_dir=${1:-build}
shift || true
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
