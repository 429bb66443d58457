#!/usr/bin/env bash
# `uhlm convert --type q2_k..q6_k` and running the result: the K-quant types need rows that are
# a multiple of 256, so stories-llm-2.76M (dim 192) keeps most matrices in the fallback type
# (q8_0; q4_0 for q2_k / q3_k) and says which; a random 42M shape (dim 512) with a 512-token
# vocabulary has real K-quant matrices. Generated text is the same for every thread count and
# every SIMD level (the K-quant kernels are bit-identical across levels), and bench runs.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
P="Once upon a time"

for t in q2_k q3_k q4_k q5_k q6_k; do
  "$bin" convert -m stories-llm-2.76M.bin -z tok512.bin --type "$t" -o "$tmp/s_$t.gguf" 2>"$tmp/err"
  rc=$?
  [ "$rc" = 0 ] && ok || bad "convert $t rc $rc: $(cat "$tmp/err")"
  case $t in q2_k|q3_k) fb=q4_0 ;; q4_k) fb=q5_0 ;; q5_k) fb=q5_1 ;; *) fb=q8_0 ;; esac
  grep -q "not a multiple of 256" "$tmp/err" && grep -q "token_embd.weight ($fb)" "$tmp/err" && ok ||
    bad "convert $t names the fallback: $(cat "$tmp/err")"
  "$bin" generate -m "$tmp/s_$t.gguf" -p "$P" -n 24 --temp 0 -t 1 >"$tmp/o1" 2>"$tmp/err"
  rc=$?
  [ "$rc" = 0 ] && ok || bad "generate $t rc $rc: $(cat "$tmp/err")"
  case "$(cat "$tmp/o1")" in "$P"?*) ok ;; *) bad "generate $t text: $(head -c 200 "$tmp/o1")" ;; esac
done

# real K-quant matrices (dim 512, hidden 1376: ffn_down falls back), every level, 1 and 2 threads
"$bin" convert --random-shape 42M -z tok512.bin --vocab 512 --type q6_k -o "$tmp/r.gguf" 2>"$tmp/err"
rc=$?
[ "$rc" = 0 ] && ok || bad "convert 42M q6_k rc $rc: $(cat "$tmp/err")"
grep -q "blk.0.ffn_down.weight (q8_0)" "$tmp/err" && ok || bad "42M fallback: $(cat "$tmp/err")"
"$bin" generate -m "$tmp/r.gguf" -p "$P" -n 12 --temp 0 -t 1 --simd scalar >"$tmp/ref" 2>/dev/null || bad "generate scalar"
for simd in auto avx2 avx512; do
  for th in 1 2; do
    "$bin" generate -m "$tmp/r.gguf" -p "$P" -n 12 --temp 0 -t "$th" --simd "$simd" >"$tmp/o" 2>"$tmp/err"
    rc=$?
    if [ "$rc" != 0 ] && grep -qi "not supported" "$tmp/err"; then continue; fi
    cmp -s "$tmp/ref" "$tmp/o" && ok || bad "42M q6_k --simd $simd -t $th differs from scalar"
  done
done
"$bin" bench -m "$tmp/r.gguf" --prompt 8 --gen 8 --reps 1 -t 1 --json >"$tmp/b" 2>"$tmp/err"
rc=$?
[ "$rc" = 0 ] && grep -q '"weight_type":\s*"q6_k"' "$tmp/b" && ok || bad "bench rc $rc: $(head -c 300 "$tmp/b") $(cat "$tmp/err")"

finish
