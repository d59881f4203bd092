#!/usr/bin/env bash
# Checks the layering, installs what is missing, builds, and runs every test: unit and
# integration tests on the release build, then both again on an AddressSanitizer + UndefinedBehaviorSanitizer build.
set -euo pipefail
cd "$(dirname "$0")/.."
export BERTH_WITH_TEST_DEPS=1
scripts/setup.sh build
scripts/check-layers.sh  # no file includes a higher layer's header (docs/ARCHITECTURE.md)
(cd build && ctest --output-on-failure -j1)
if [ "${BERTH_SKIP_SANITIZE:-0}" != 1 ]; then
    scripts/setup.sh build-asan -DBERTH_SANITIZE="address;undefined" -DCMAKE_BUILD_TYPE=Debug
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j1)
fi
