#!/usr/bin/env bash
# `uhlm bench gemv`: options and exit codes, its JSON, and the property it checks on every run:
# the one-token matrix products give bit-identical outputs on 1 and N threads (F32, and a
# Q8_0 conversion of the same model). Speed is never asserted.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
# expect_rc's files
out=$tmp/out err=$tmp/err q8=$tmp/q8.gguf

expect_rc 0 "$bin" bench gemv --help
grep -q "usage: uhlm bench gemv" $out && ok || bad "gemv --help text"
"$bin" bench --help 2>/dev/null | grep -q "gemv" && ok || bad "bench --help lists gemv"
expect_rc 2 "$bin" bench gemv "${TS_LLM[@]}" --reps 0
expect_rc 2 "$bin" bench gemv "${TS_LLM[@]}" -t 0
expect_rc 2 "$bin" bench gemv "${TS_LLM[@]}" --frobnicate
expect_rc 2 "$bin" bench gemv "${TS_LLM[@]}" --json --jsonl
expect_rc 1 "$bin" bench gemv -m /nonexistent-gemv.bin
grep -q "/nonexistent-gemv.bin" $err && ok || bad "missing model message names the file"

# JSON Lines: one object per thread count, rates positive, bits identical across threads
check_lines() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert [r["threads"] for r in rows] == [1, 2], rows
for r in rows:
    assert r["weight_type"] == sys.argv[2], r
    assert r["identical_across_threads"] is True, r
    assert r["matmul_steps_per_s_best"] > 0 and r["read_bytes_per_s_best"] > 0, r
    assert r["weight_bytes_per_step"] > 0 and r["reps"] == 2, r
assert rows[0]["matmul_steps_per_cpu_s_best"] > 0 and rows[1]["speedup_median"] > 0, rows
PY
}
expect_rc 0 "$bin" bench gemv -m stories260K.bin --reps 2 -t 2 --jsonl
check_lines $out f32 && ok || bad "f32 JSON Lines: $(head -c 400 $out)"

if "$bin" convert -m stories260K.bin -z tok512.bin --type q8_0 -o $q8 >/dev/null 2>$err; then
  expect_rc 0 "$bin" bench gemv -m $q8 --reps 2 -t 2 --jsonl
  check_lines $out q8_0 && ok || bad "q8_0 JSON Lines: $(head -c 400 $out)"
else
  bad "convert to q8_0: $(head -c 300 $err)"
fi

expect_rc 0 "$bin" bench gemv -m stories260K.bin --reps 1 --json
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["bench"]=="gemv" and len(d["results"])==2, d' $out && ok || bad "--json document"
expect_rc 0 "$bin" bench gemv -m stories260K.bin --reps 1
grep -q "speedup 2/1 threads" $out && ok || bad "table output"

finish
