#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Rule-matching micro-benchmark (bench/rules.c): builds it against the static libraries of
# an existing CMake build and runs it. Prints ns per match for 10..10000 rules and the
# 10000/10 ratio. Usage: bench/rules.sh   (BUILD=DIR for another build dir, default build/)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
if [ ! -f "$BUILD/libberth_core.a" ]; then
    echo "rules.sh: $BUILD/libberth_core.a missing; run cmake --build build first" >&2
    exit 2
fi
LLHTTP_LIB=
[ -f "$BUILD/libberth_llhttp.a" ] && LLHTTP_LIB=$BUILD/libberth_llhttp.a
gcc -O2 -std=c11 -D_GNU_SOURCE -I"$ROOT/src" -I/usr/share/include/llhttp \
    $(pkg-config --cflags libevent_core openssl yaml-0.1 jansson) \
    "$ROOT/bench/rules.c" "$BUILD/libberth_core.a" $LLHTTP_LIB \
    $(pkg-config --libs libevent_core libevent_extra openssl yaml-0.1 jansson) \
    $(pkg-config --libs llhttp 2>/dev/null || true) \
    -ljemalloc -lpthread -lm -o "$BUILD/bench_rules"
exec "$BUILD/bench_rules"
