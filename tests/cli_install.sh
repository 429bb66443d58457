#!/usr/bin/env bash
# The installed library as an embedder sees it: `cmake --install` of this build tree into a
# temporary prefix (headers, libuhlm.a, libuhlm.so with a versioned SONAME, uhlm.pc); every
# public header compiles on its own with the installed tree only and none needs cJSON;
# libuhlm.so exports exactly the UHLM_API declarations, all named uhlm_*; and every
# examples/*.c, copied out of the tree, builds with `pkg-config --cflags --libs uhlm` against
# the shared and (with --static) the static library, and runs with the model directory as
# argv[1], exiting 0. device_generate's text must equal `uhlm run`'s for the same seed.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
build=$(cd "$(dirname "$bin")" && pwd)
prefix=$tmp/prefix

# the sanitizer tree's library needs the sanitizer runtime in every program that links it
san=()
grep -q '^UHLM_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null &&
  san=(-fsanitize=address,undefined -fno-omit-frame-pointer)

# ---- install
if ! cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1; then
  echo "FAIL: cmake --install: $(tail -5 "$tmp/install.log")" >&2
  exit 1
fi
libdir=$(dirname "$(find "$prefix" -name uhlm.pc | head -1)")/..
libdir=$(cd "$libdir" 2>/dev/null && pwd)
for f in include/uhlm/uhlm.h include/uhlm/model.h include/uhlm/generate.h; do
  [ -f "$prefix/$f" ] && ok || bad "$f not installed"
done
for f in libuhlm.a libuhlm.so pkgconfig/uhlm.pc; do
  [ -e "$libdir/$f" ] && ok || bad "$libdir/$f not installed"
done
soname=$(readelf -d "$libdir/libuhlm.so" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
major=$(sed -n 's/^#define UHLM_VERSION_MAJOR \([0-9]*\)$/\1/p' "$src/include/uhlm/common.h")
[ "$soname" = "libuhlm.so.$major" ] && ok || bad "SONAME '$soname' (want libuhlm.so.$major)"
[ -e "$libdir/$soname" ] && ok || bad "$soname not installed"
for h in quant.h threadpool.h gguf.h model_internal.h; do
  [ ! -e "$prefix/include/uhlm/$h" ] && ok || bad "internal header $h installed"
done
export PKG_CONFIG_PATH=$libdir/pkgconfig
version=$(pkg-config --modversion uhlm)
want=$(for k in MAJOR MINOR PATCH; do sed -n "s/^#define UHLM_VERSION_$k \([0-9]*\)$/\1/p" "$src/include/uhlm/common.h"; done | paste -sd.)
[ "$version" = "$want" ] && ok || bad "uhlm.pc version '$version' (want $want)"
pkg-config --print-requires-private uhlm | grep -q libcjson && ok || bad "uhlm.pc: cJSON is not a private requirement"
pkg-config --libs uhlm | grep -q cjson && bad "uhlm.pc: cJSON in the public Libs" || ok
pkg-config --print-requires-private uhlm | grep -q libssl && ok || bad "uhlm.pc: OpenSSL (libssl) is not a private requirement"

# ---- headers: each compiles alone from the installed tree; none needs cJSON
cflags=$(pkg-config --cflags uhlm)
for h in "$prefix"/include/uhlm/*.h; do
  n=$(basename "$h")
  printf '#include <uhlm/%s>\nint main(void) { return 0; }\n' "$n" >"$tmp/h.c"
  gcc -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only -I"$prefix/include" "$tmp/h.c" 2>"$tmp/h.err" &&
    ok || bad "uhlm/$n does not compile alone: $(head -c 400 "$tmp/h.err")"
  grep -q 'cJSON' "$h" && bad "uhlm/$n mentions cJSON" || ok
done

# ---- exports: exactly the UHLM_API declarations, all uhlm_*
nm -D --defined-only "$libdir/libuhlm.so" | awk '{print $3}' | sort -u >"$tmp/exported"
grep -v '^uhlm_' "$tmp/exported" >"$tmp/foreign"
[ -s "$tmp/foreign" ] && bad "libuhlm.so exports non-uhlm_ symbols: $(head -20 "$tmp/foreign" | paste -sd' ')" || ok
grep -hoE '^UHLM_API [^(]*\b(uhlm_[A-Za-z0-9_]+)\(' "$prefix"/include/uhlm/*.h |
  sed -E 's/.*\b(uhlm_[A-Za-z0-9_]+)\($/\1/' | sort -u >"$tmp/declared"
comm -23 "$tmp/declared" "$tmp/exported" >"$tmp/missing"
[ -s "$tmp/missing" ] && bad "declared but not exported: $(paste -sd' ' "$tmp/missing")" || ok
comm -13 "$tmp/declared" "$tmp/exported" >"$tmp/extra"
[ -s "$tmp/extra" ] && bad "exported but not declared with UHLM_API: $(head -20 "$tmp/extra" | paste -sd' ')" || ok
# a public declaration without UHLM_API would build in-tree but fail embedders
grep -nE '^[A-Za-z_][A-Za-z0-9_ *]*\buhlm_[A-Za-z0-9_]+\(' "$prefix"/include/uhlm/*.h |
  grep -vE ':[0-9]+:(UHLM_API|typedef|static|extern)\b' >"$tmp/unmarked"
[ -s "$tmp/unmarked" ] && bad "public declarations without UHLM_API (run scripts/uhlm_api.py): $(head -5 "$tmp/unmarked")" || ok

# ---- examples, out of tree, shared and static
models=$(find_model_dir stories-slm-0.28M.bin stories-llm-2.76M.bin tok512.bin)
[ -n "$models" ] || echo "SKIP: running the examples: no directory with stories-slm-0.28M.bin, stories-llm-2.76M.bin and tok512.bin (\$UHLM_MODELS)"
libs_shared=$(pkg-config --libs uhlm)
# --static adds the private requirements; -Bstatic picks libuhlm.a over libuhlm.so
libs_static=$(pkg-config --static --libs uhlm | sed 's/-luhlm\b/-Wl,-Bstatic -luhlm -Wl,-Bdynamic/')
n_ex=0
for ex in "$src"/examples/*.c; do
  [ -f "$ex" ] || continue
  n_ex=$((n_ex+1))
  name=$(basename "$ex" .c)
  mkdir -p "$tmp/ex/$name" && cp "$ex" "$tmp/ex/$name/$name.c"
  (cd "$tmp/ex/$name" &&
    gcc -std=c11 -Wall -Wextra -Werror "${san[@]}" -o "$name-shared" "$name.c" $cflags $libs_shared \
      -Wl,-rpath,"$libdir" 2>build-shared.log) && ok ||
    { bad "$name: shared build: $(head -c 600 "$tmp/ex/$name/build-shared.log")"; continue; }
  (cd "$tmp/ex/$name" &&
    gcc -std=c11 -Wall -Wextra -Werror "${san[@]}" -o "$name-static" "$name.c" $cflags $libs_static \
      2>build-static.log) && ok ||
    { bad "$name: static build: $(head -c 600 "$tmp/ex/$name/build-static.log")"; continue; }
  readelf -d "$tmp/ex/$name/$name-shared" | grep -q 'NEEDED.*libuhlm\.so' && ok ||
    bad "$name-shared does not load libuhlm.so"
  readelf -d "$tmp/ex/$name/$name-static" | grep -q 'NEEDED.*libuhlm' &&
    bad "$name-static still needs libuhlm.so" || ok
  [ -n "$models" ] || continue
  for kind in shared static; do
    if timeout 300 "$tmp/ex/$name/$name-$kind" "$models" >"$tmp/ex/$name/$kind.out" 2>"$tmp/ex/$name/$kind.err"; then
      ok
    else
      bad "$name-$kind $models: exit $?: $(tail -c 600 "$tmp/ex/$name/$kind.err")"
    fi
  done
  # device_generate's stdout is fixed by its seed (times go to stderr)
  [ "$name" != device_generate ] || { cmp -s "$tmp/ex/$name/shared.out" "$tmp/ex/$name/static.out" && ok ||
    bad "$name: the shared and static builds print different output"; }
done
[ "$n_ex" -gt 0 ] && ok || bad "no examples/*.c"

# device_generate is `uhlm run` in process: same seed, same text
dg=$tmp/ex/device_generate/shared.out
if [ -n "$models" ] && [ -s "$dg" ]; then
  "$bin" run -m "$models/stories-slm-0.28M.bin" --llm "$models/stories-llm-2.76M.bin" \
    -z "$models/tok512.bin" -p "Once upon a time" -n 48 --seed 42 -t 1 --mode uhlm \
    >"$tmp/run.out" 2>"$tmp/run.err"
  want=$(head -1 "$tmp/run.out")
  got=$(sed -n 2p "$dg")
  [ -n "$want" ] && [ "$want" = "$got" ] && ok || bad "device_generate's text differs from uhlm run's: '$got' vs '$want'"
fi

# train/'s C tools (the drafter recipe's teacher and exactness check) are programs against the
# installed API too: building them here keeps the recipe from rotting between drafter runs.
for tool in "$src"/train/*.c; do
  [ -f "$tool" ] || continue
  name=$(basename "$tool" .c)
  gcc -std=c11 -O1 -Wall -Wextra -Werror "${san[@]}" -o "$tmp/train-$name" "$tool" $cflags $libs_static \
    2>"$tmp/train-$name.log" && ok || bad "train/$name.c: static build: $(head -c 600 "$tmp/train-$name.log")"
done

finish cli_install
