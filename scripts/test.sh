#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds the release and the sanitizer
# (ASan+UBSan) trees, and runs CTest in both. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export UHLM_MODELS=${UHLM_MODELS:-$(cd .. && pwd)/shared/models}
jobs=$(nproc 2>/dev/null || echo 2)
echo "== release build" >&2
scripts/build.sh release
(cd build && ctest --output-on-failure -j"$jobs")
echo "== sanitizer build (ASan+UBSan)" >&2
scripts/build.sh asan
# Tests marked too slow for the instrumented build are excluded by label.
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j"$jobs" -LE no_asan)
