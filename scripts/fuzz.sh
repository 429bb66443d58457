#!/usr/bin/env bash
# Builds the wire-protocol libFuzzer target and runs it for a bounded time.
#
# usage: scripts/fuzz.sh [SECONDS] [libFuzzer flags...]      (default 20 s)
#
# Needs clang with libFuzzer (Debian: clang + libclang-rt-<ver>-dev). Builds into
# $UHLM_FUZZ_BUILD (default build-fuzz/), seeds build-fuzz/corpus-wire/ with encodings of
# valid messages, keeps whatever the fuzzer adds to that corpus between runs, and writes
# crash-*/leak-*/timeout-* reproducers into the build folder. Reproduce one with
#   build-fuzz/fuzz_wire build-fuzz/crash-<hash>
# Exit status: 0 clean run, 77 clang/libFuzzer unavailable, anything else a failure.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-20}
[ $# -gt 0 ] && shift
case "$secs" in ''|*[!0-9]*) echo "fuzz: SECONDS must be a whole number, got '$secs'" >&2; exit 2 ;; esac
out=${UHLM_FUZZ_BUILD:-$src/build-fuzz}
cc=${UHLM_FUZZ_CC:-clang}

if ! command -v "$cc" >/dev/null 2>&1; then
  echo "fuzz: $cc not found (Debian: apt-get install clang libclang-rt-dev)" >&2
  exit 77
fi
mkdir -p "$out"
# libFuzzer ships separately from the compiler on Debian (libclang-rt-N-dev); probe for it
# so that a missing runtime is told apart from a broken target.
probe=$out/probe.c
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' >"$probe"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe" -o "$out/probe" >"$out/probe.log" 2>&1; then
  echo "fuzz: $cc cannot link libFuzzer (Debian: apt-get install libclang-rt-dev):" >&2
  head -n 3 "$out/probe.log" >&2
  exit 77
fi

common=(-std=c11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -I"$src/include")
sources=("$src/tests/fuzz/fuzz_wire.c" "$src/src/net/wire.c")
"$cc" "${common[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -fno-omit-frame-pointer "${sources[@]}" -lm -o "$out/fuzz_wire"
"$cc" "${common[@]}" -DUHLM_FUZZ_SEEDGEN "${sources[@]}" -lm -o "$out/fuzz_wire_seedgen"

corpus=$out/corpus-wire
mkdir -p "$corpus"
"$out/fuzz_wire_seedgen" "$corpus"

echo "fuzz: running fuzz_wire for ${secs}s on $(ls "$corpus" | wc -l) corpus inputs" >&2
# -max_len 8192 keeps inputs small enough to mutate fast while still covering every field
# (token lists, x blobs); pass -max_len=N to change it. Later flags override earlier ones.
set +e
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1} \
  "$out/fuzz_wire" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
  -print_final_stats=1 -artifact_prefix="$out/" "$@" "$corpus" >"$out/fuzz.log" 2>&1
rc=$?
set -e
grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)' "$out/fuzz.log" >&2 || true
if [ $rc -ne 0 ]; then
  echo "fuzz: FAILED (rc $rc); log: $out/fuzz.log" >&2
  tail -n 40 "$out/fuzz.log" >&2
  ls "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-* 2>/dev/null >&2 || true
  exit 1
fi
echo "fuzz: ok, corpus now $(ls "$corpus" | wc -l) inputs" >&2
