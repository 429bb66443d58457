#!/usr/bin/env bash
# Builds every libFuzzer target tests/fuzz/fuzz_*.c and runs each for a bounded time.
#
# usage: scripts/fuzz.sh [SECONDS] [TARGET...] [-- libFuzzer flags...]
#        scripts/fuzz.sh --seeds      rewrite tests/fuzz/seeds/ from the targets' seed writers
#
#   SECONDS  run time per target (default 10)
#   TARGET   a target's name without the fuzz_ prefix (wire, gguf, ...); default: all of them
#
# Needs clang with libFuzzer (Debian: clang + libclang-rt-<ver>-dev). The library sources are
# compiled once with -fsanitize=fuzzer-no-link,address,undefined into $UHLM_FUZZ_BUILD
# (default build-fuzz/; objects are rebuilt when a source or header is newer) and each target
# is linked against them with -fsanitize=fuzzer. Each target starts from its committed seeds,
# tests/fuzz/seeds/<target>/, plus, for a target that has one, what its seed writer (the same
# file built with -DUHLM_FUZZ_SEEDGEN) produces; the corpus it grows is kept in
# build-fuzz/corpus-<target>/ between runs. A target's input size limit is the number after
# "fuzz-max-len:" in its source (default 8192). Reproducers of findings are written as
# build-fuzz/<target>-crash-* (or -leak-, -timeout-, -oom-); replay one with
#   build-fuzz/fuzz_<target> build-fuzz/<target>-crash-<hash>
# Exit status: 0 every target built and ran clean; 77 clang/libFuzzer unavailable; 1 anything
# else: a target that does not build is a failure, never skipped.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
out=${UHLM_FUZZ_BUILD:-$src/build-fuzz}
cc=${UHLM_FUZZ_CC:-clang}
jobs=${UHLM_FUZZ_JOBS:-2}

regen=0
secs=10
if [ "${1:-}" = --seeds ]; then
  regen=1
  shift
elif [ $# -gt 0 ] && [ "$1" != -- ]; then
  case "$1" in
    ''|*[!0-9]*) ;;
    *) secs=$1; shift ;;
  esac
fi
want=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do want+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
extra=("$@")

if ! command -v "$cc" >/dev/null 2>&1; then
  echo "fuzz: $cc not found (Debian: apt-get install clang libclang-rt-dev)" >&2
  exit 77
fi
mkdir -p "$out/obj"
# libFuzzer ships separately from the compiler on Debian (libclang-rt-N-dev); probe for it
# so that a missing runtime is told apart from a broken target.
probe=$out/probe.c
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' >"$probe"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe" -o "$out/probe" >"$out/probe.log" 2>&1; then
  echo "fuzz: $cc cannot link libFuzzer (Debian: apt-get install libclang-rt-dev):" >&2
  head -n 3 "$out/probe.log" >&2
  exit 77
fi

targets=()
for f in "$src"/tests/fuzz/fuzz_*.c; do
  [ -e "$f" ] || continue
  name=$(basename "$f" .c)
  name=${name#fuzz_}
  if [ ${#want[@]} -gt 0 ]; then
    keep=0
    for w in "${want[@]}"; do [ "$w" = "$name" ] && keep=1; done
    [ $keep = 1 ] || continue
  fi
  targets+=("$name")
done
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no targets in tests/fuzz/" >&2
  exit 1
fi
for w in "${want[@]}"; do
  [ -e "$src/tests/fuzz/fuzz_$w.c" ] || { echo "fuzz: no target tests/fuzz/fuzz_$w.c" >&2; exit 1; }
done

san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
common=(-std=c11 -gline-tables-only -O1 -Wall -Wextra -D_GNU_SOURCE -I"$src/include" -I"$src/src" -I"$src/tests/fuzz")
# The library under instrumentation: every module the CMake build puts in the library.
# Warnings are left to the main build (gcc, -Werror); the targets themselves use -Werror.
lib_sources=()
for f in "$src"/src/model/*.c "$src"/src/model/*/*.c "$src"/src/hybrid/*.c "$src"/src/net/*.c \
         "$src"/src/eval/*.c; do
  [ -e "$f" ] && lib_sources+=("$f")
done
newest_header=$(find "$src/include" "$src/src" -name '*.h' -newer "$out/lib.stamp" 2>/dev/null | head -n 1 || true)
[ -e "$out/lib.stamp" ] || newest_header=all
stale=()
objs=()
for f in "${lib_sources[@]}"; do
  rel=${f#"$src"/}
  o=$out/obj/${rel//\//_}.o
  objs+=("$o")
  if [ -n "$newest_header" ] || [ ! -e "$o" ] || [ "$f" -nt "$o" ]; then stale+=("$f"); fi
done
if [ ${#stale[@]} -gt 0 ]; then
  echo "fuzz: compiling ${#stale[@]} library sources with $cc (fuzzer-no-link, ASan, UBSan)" >&2
  export src out cc
  # shellcheck disable=SC2016
  if ! printf '%s\n' "${stale[@]}" | xargs -P "$jobs" -I{} bash -c \
       'rel=${1#"$src"/}; "$cc" "${@:2}" -c "$1" -o "$out/obj/${rel//\//_}.o"' _ {} \
       "${common[@]}" "${san[@]}" -fsanitize=fuzzer-no-link -w >"$out/lib.log" 2>&1; then
    echo "fuzz: FAILED: the library does not build with $cc; log: $out/lib.log" >&2
    grep -E 'error' "$out/lib.log" | head -n 20 >&2 || tail -n 20 "$out/lib.log" >&2
    exit 1
  fi
fi
rm -f "$out/libuhlm_fuzz.a"
ar rcs "$out/libuhlm_fuzz.a" "${objs[@]}"
touch "$out/lib.stamp"
libs=("$out/libuhlm_fuzz.a" -lcjson -lssl -lcrypto -lm -lpthread) # OpenSSL: net/tls.c

failed=()
built=()
for t in "${targets[@]}"; do
  f=$src/tests/fuzz/fuzz_$t.c
  if ! "$cc" "${common[@]}" -Werror "${san[@]}" -fsanitize=fuzzer "$f" "${libs[@]}" \
       -o "$out/fuzz_$t" >"$out/build-$t.log" 2>&1; then
    echo "fuzz: FAILED: target $t does not build:" >&2
    head -n 30 "$out/build-$t.log" >&2
    failed+=("$t (build)")
    continue
  fi
  if grep -q UHLM_FUZZ_SEEDGEN "$f" &&
     ! "$cc" "${common[@]}" -Werror "${san[@]}" -DUHLM_FUZZ_SEEDGEN "$f" "${libs[@]}" \
       -o "$out/fuzz_${t}_seedgen" >"$out/build-$t-seedgen.log" 2>&1; then
    echo "fuzz: FAILED: the seed writer of target $t does not build:" >&2
    head -n 30 "$out/build-$t-seedgen.log" >&2
    failed+=("$t (seed writer build)")
    continue
  fi
  built+=("$t")
done

if [ $regen = 1 ]; then
  for t in "${built[@]}"; do
    [ -x "$out/fuzz_${t}_seedgen" ] || continue
    mkdir -p "$src/tests/fuzz/seeds/$t"
    "$out/fuzz_${t}_seedgen" "$src/tests/fuzz/seeds/$t"
    echo "fuzz: $t: $(ls "$src/tests/fuzz/seeds/$t" | wc -l) seeds in tests/fuzz/seeds/$t" >&2
  done
  [ ${#failed[@]} -eq 0 ] || { echo "fuzz: FAILED: ${failed[*]}" >&2; exit 1; }
  exit 0
fi

for t in "${built[@]}"; do
  f=$src/tests/fuzz/fuzz_$t.c
  corpus=$out/corpus-$t
  mkdir -p "$corpus"
  if [ -d "$src/tests/fuzz/seeds/$t" ]; then cp -n "$src/tests/fuzz/seeds/$t"/* "$corpus"/ 2>/dev/null || true; fi
  if [ -x "$out/fuzz_${t}_seedgen" ] && ! "$out/fuzz_${t}_seedgen" "$corpus" >"$out/seedgen-$t.log" 2>&1; then
    echo "fuzz: FAILED: the seed writer of $t failed; log: $out/seedgen-$t.log" >&2
    tail -n 20 "$out/seedgen-$t.log" >&2
    failed+=("$t (seed writer)")
    continue
  fi
  max_len=$(grep -o 'fuzz-max-len: *[0-9]*' "$f" | head -n 1 | grep -o '[0-9]*$' || true)
  max_len=${max_len:-8192}
  echo "fuzz: running $t for ${secs}s on $(ls "$corpus" | wc -l) corpus inputs (max_len $max_len)" >&2
  # Later flags override earlier ones, so the caller's libFuzzer flags win.
  set +e
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
  ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1} \
    "$out/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" \
    -print_final_stats=1 -artifact_prefix="$out/$t-" "${extra[@]}" "$corpus" >"$out/fuzz-$t.log" 2>&1
  rc=$?
  set -e
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' "$out/fuzz-$t.log" | tr '\n' ' ' >&2 || true
  echo >&2
  if [ $rc -ne 0 ]; then
    echo "fuzz: FAILED: $t (rc $rc); log: $out/fuzz-$t.log" >&2
    tail -n 40 "$out/fuzz-$t.log" >&2
    ls "$out/$t"-crash-* "$out/$t"-leak-* "$out/$t"-timeout-* "$out/$t"-oom-* 2>/dev/null >&2 || true
    failed+=("$t")
    continue
  fi
  echo "fuzz: $t ok, corpus now $(ls "$corpus" | wc -l) inputs" >&2
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#built[@]} targets clean (${built[*]}), ${secs}s each" >&2
