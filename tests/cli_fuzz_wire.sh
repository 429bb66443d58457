#!/usr/bin/env bash
# CTest hook for the wire-protocol fuzzer: builds tests/fuzz/fuzz_wire.c with clang's
# libFuzzer and runs it for a short, bounded time (UHLM_FUZZ_SECONDS, default 15). The build
# and its corpus live in this build tree (fuzz-wire/), so parallel trees do not collide and
# the source tree stays clean. Skips (exit 0, with a SKIP line) where clang or libFuzzer is
# missing; any crash, sanitizer report or broken codec contract fails the test.
set -u
src=${UHLM_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
secs=${UHLM_FUZZ_SECONDS:-15}
export UHLM_FUZZ_BUILD=${UHLM_FUZZ_BUILD:-$PWD/fuzz-wire}
bash "$src/scripts/fuzz.sh" "$secs"
rc=$?
if [ "$rc" = 77 ]; then
  echo "SKIP: clang with libFuzzer is not available (Debian: clang libclang-rt-dev); fuzz_wire not run"
  exit 0
fi
[ "$rc" = 0 ] && echo "fuzz_wire: ${secs}s clean" || echo "FAIL: fuzz_wire (rc $rc), see $UHLM_FUZZ_BUILD/fuzz.log"
exit "$rc"
