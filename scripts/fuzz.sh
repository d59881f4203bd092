#!/usr/bin/env bash
# Builds the libFuzzer harnesses in fuzz/ into build-fuzz/ and runs each for FUZZ_SECONDS.
#
#   scripts/fuzz.sh                     build and run all harnesses, one after another
#   scripts/fuzz.sh pp2 config          build and run only these (names without fuzz_)
#   FUZZ_SECONDS=60 scripts/fuzz.sh     run each for 60 s (default 600)
#   FUZZ_BUILD_ONLY=1 scripts/fuzz.sh   build, do not run
#   FUZZ_NO_BUILD=1 scripts/fuzz.sh X   run an already built harness
#
# Seeds come from fuzz/corpus/<name>/ (read only), fuzz/<name>.dict is used when present; new inputs go to build-fuzz/corpus/<name>/.
# Crash, leak and timeout inputs are kept in fuzz/crashes/<name>/; the logs in
# build-fuzz/<name>.log. Exits non-zero when any harness found something (or failed to build).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=build-fuzz
SECONDS_PER=${FUZZ_SECONDS:-600}
CC=${CC:-clang}
ALL=(http_request http_response config control_json pp2 sticky dns h2 h2_target)
if [ $# -gt 0 ]; then NAMES=("$@"); else NAMES=("${ALL[@]}"); fi

SAN=address,undefined
CFLAGS=(-g -O1 -std=c11 -D_GNU_SOURCE -DBERTH_VERSION=\"fuzz\" $(for d in src/*/; do printf -- "-I%s " "$d"; done) -I/usr/share/include/llhttp
        -fno-omit-frame-pointer -fno-sanitize-recover=all)
PKGS="libevent_core libevent_openssl libevent_pthreads openssl yaml-0.1 jansson libnghttp2"
# shellcheck disable=SC2207
LIBS=($(pkg-config --libs $PKGS) -lpthread -lm)
# shellcheck disable=SC2207
PKG_CFLAGS=($(pkg-config --cflags $PKGS))

mkdir -p "$OUT/obj"

build_objs() {
    # berth core (every src/*/*.c but main.c) and llhttp, instrumented once, shared by all
    # harnesses. Rebuilt when the source, or any header of src/ (a struct that changed
    # layout), is newer than the object; objects are named by folder and file, so a file
    # that moved folders never links its old object.
    local srcs=() f o newest_h
    for f in src/*/*.c; do [ "$f" = src/process/main.c ] || srcs+=("$f"); done
    srcs+=(/usr/share/llhttp/*.c)
    newest_h=$(ls -t src/*/*.h | head -n1)
    OBJS=()
    for f in "${srcs[@]}"; do
        case "$f" in
        /usr/share/llhttp/*) o="$OUT/obj/llhttp_$(basename "$f" .c).o" ;;
        *) o="$OUT/obj/$(basename "$(dirname "$f")")_$(basename "$f" .c).o" ;;
        esac
        OBJS+=("$o")
        if [ ! -e "$o" ] || [ "$f" -nt "$o" ] || [ "$newest_h" -nt "$o" ]; then
            echo "cc $f" >&2
            "$CC" "${CFLAGS[@]}" "${PKG_CFLAGS[@]}" -fsanitize=fuzzer-no-link,$SAN -c "$f" -o "$o" &
            # at most two compilers at a time
            while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
        fi
    done
    wait
}

build() {
    local name=$1
    echo "== build fuzz_$name" >&2
    "$CC" "${CFLAGS[@]}" "${PKG_CFLAGS[@]}" -fsanitize=fuzzer,$SAN "fuzz/fuzz_$name.c" "${OBJS[@]}" \
        "${LIBS[@]}" -o "$OUT/fuzz_$name"
}

run() {
    local name=$1 rc=0
    local seeds="fuzz/corpus/$name" work="$OUT/corpus/$name" crashes="fuzz/crashes/$name"
    mkdir -p "$work" "$crashes"
    local dict=()
    [ -f "fuzz/$name.dict" ] && dict=(-dict="fuzz/$name.dict")
    echo "== run fuzz_$name for ${SECONDS_PER}s" >&2
    ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        "$OUT/fuzz_$name" "$work" "$seeds" -max_total_time="$SECONDS_PER" -timeout=25 \
        -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
        -artifact_prefix="$crashes/" "${dict[@]}" >"$OUT/$name.log" 2>&1 || rc=$?
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+ *DONE" "$OUT/$name.log" >&2 || true
    if [ $rc -ne 0 ]; then
        echo "!! fuzz_$name exited $rc; see $OUT/$name.log and $crashes/" >&2
        grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$OUT/$name.log" >&2 || true
    else
        rmdir "$crashes" 2>/dev/null || true
    fi
    return $rc
}

status=0
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
    build_objs
    for n in "${NAMES[@]}"; do build "$n" || status=1; done
fi
[ -n "${FUZZ_BUILD_ONLY:-}" ] && exit $status
for n in "${NAMES[@]}"; do
    [ -x "$OUT/fuzz_$n" ] || { echo "!! fuzz_$n not built" >&2; status=1; continue; }
    run "$n" || status=1
done
exit $status
