#!/usr/bin/env bash
# CTest hook for the fuzzers: scripts/fuzz.sh builds every tests/fuzz/fuzz_*.c target with
# clang's libFuzzer (ASan + UBSan) and runs each for a bounded time from its committed seeds.
# The whole run takes about UHLM_FUZZ_TOTAL seconds of fuzzing (default 72) shared equally by
# the targets (at least 3 s each; UHLM_FUZZ_SECONDS sets the time per target instead), plus
# the build. libFuzzer's seed is fixed (UHLM_FUZZ_SEED, default 1) so that a run in CI is
# repeatable: the same mutations in the same order, only how far it gets depends on the
# machine's speed. Longer campaigns with fresh seeds are scripts/fuzz.sh's job; their findings
# go into tests/fuzz/seeds/ so that this test replays them. The build and corpora live in
# this build tree (fuzz/), so parallel trees do not
# collide and the source tree stays clean. Skips (exit 0, with a SKIP line) only where clang or
# libFuzzer is missing; a target that does not build, a crash, a sanitizer report or a broken
# contract fails the test.
set -u
src=${UHLM_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
n=$(ls "$src"/tests/fuzz/fuzz_*.c 2>/dev/null | wc -l)
if [ "$n" = 0 ]; then
  echo "FAIL: no fuzz targets in $src/tests/fuzz"
  exit 1
fi
total=${UHLM_FUZZ_TOTAL:-72}
per=$((total / n))
[ "$per" -ge 3 ] || per=3
secs=${UHLM_FUZZ_SECONDS:-$per}
export UHLM_FUZZ_BUILD=${UHLM_FUZZ_BUILD:-$PWD/fuzz}
bash "$src/scripts/fuzz.sh" "$secs" -- -seed="${UHLM_FUZZ_SEED:-1}"
rc=$?
if [ "$rc" = 77 ]; then
  echo "SKIP: clang with libFuzzer is not available (Debian: clang libclang-rt-dev); fuzzers not run"
  exit 0
fi
[ "$rc" = 0 ] && echo "fuzz: $n targets, ${secs}s each, clean" || echo "FAIL: fuzzing (rc $rc), see $UHLM_FUZZ_BUILD/fuzz-*.log"
exit "$rc"
