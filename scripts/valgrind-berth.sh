#!/usr/bin/env bash
# Runs berth under valgrind memcheck; a drop-in BERTH_BIN for the integration tests
# (scripts/valgrind.sh sets it up). exec keeps the PID, so signals the tests send reach
# berth and vg.<pid>.log names the berth process.
#   BERTH_REAL_BIN      the berth binary (default: build/berth of this checkout)
#   BERTH_VALGRIND_DIR  where the logs go (default: /tmp/berth-vg)
#   BERTH_VALGRIND_ARGS extra valgrind options (word-split), e.g. "--track-origins=yes"
# Each start appends "<pid> <test>" (from PYTEST_CURRENT_TEST) to $BERTH_VALGRIND_DIR/pids.txt
# so a log can be traced back to the test that started the process.
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
real="${BERTH_REAL_BIN:-$root/build/berth}"
dir="${BERTH_VALGRIND_DIR:-/tmp/berth-vg}"
mkdir -p "$dir"
supp=()
if [ -f "$root/scripts/valgrind.supp" ]; then
    supp=(--suppressions="$root/scripts/valgrind.supp")
fi
printf '%s %s | %s\n' "$$" "${PYTEST_CURRENT_TEST:-(no test)}" "$*" >> "$dir/pids.txt"
# shellcheck disable=SC2086
exec valgrind --tool=memcheck --leak-check=full \
    --show-leak-kinds=definite,indirect,possible \
    --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
    --track-origins=no --num-callers=30 \
    --log-file="$dir/vg.%p.log" "${supp[@]}" ${BERTH_VALGRIND_ARGS:-} \
    "$real" "$@"
