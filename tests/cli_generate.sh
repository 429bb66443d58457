#!/usr/bin/env bash
# CLI behaviour of `uhlm generate`, `uhlm bench` and the dispatcher: help, errors, exit codes,
# stdout/stderr separation, JSON output, determinism across thread counts.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}

expect_rc 0 "$bin" --help
expect_rc 2 "$bin"
expect_rc 2 "$bin" frobnicate
expect_rc 0 "$bin" generate --help
grep -q "usage: uhlm generate" "$tmp/out" && ok || bad "generate --help text"
expect_rc 2 "$bin" generate "${TS_LLM[@]}" --bogus
expect_rc 2 "$bin" generate "${TS_LLM[@]}" -n
expect_rc 2 "$bin" generate "${TS_LLM[@]}" -n abc
expect_rc 2 "$bin" generate "${TS_LLM[@]}" --temp -1
expect_rc 2 "$bin" generate "${TS_LLM[@]}" --top-p 1.5
expect_rc 1 "$bin" generate -m /nonexistent.bin
grep -q "/nonexistent.bin" "$tmp/err" && ok || bad "missing model message names the file"
expect_rc 1 "$bin" generate -m stories260K.bin -z tokenizer.bin
grep -qi "vocabulary" "$tmp/err" && ok || bad "vocab mismatch message"

# the llama2.c reference text, stdout only has the text
out=$("$bin" generate -m stories260K.bin -z tok512.bin --temp 0 -n 200 2>"$tmp/err")
case "$out" in "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."*) ok ;; *) bad "reference text: $out" ;; esac
grep -q "tok/s" "$tmp/err" && ok || bad "stats on stderr"

# same seed, any thread count: same text
a=$("$bin" generate -m stories-llm-2.76M.bin -z tok512.bin -p "Once upon a time" -n 60 --seed 3 -t 1 2>/dev/null)
b=$("$bin" generate -m stories-llm-2.76M.bin -z tok512.bin -p "Once upon a time" -n 60 --seed 3 -t 2 2>/dev/null)
c=$("$bin" generate -m stories-llm-2.76M.bin -z tok512.bin -p "Once upon a time" -n 60 --seed 3 -t 2 --top-k 40 --top-p 0.9 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "thread count changed the output"
[ -n "$c" ] && ok || bad "top-k/top-p run produced nothing"
d=$("$bin" generate -m stories-llm-2.76M.bin -z tok512.bin -p "Once upon a time" -n 60 --seed 4 -t 1 2>/dev/null)
[ "$a" != "$d" ] && ok || bad "different seeds gave the same text"

# --load: how the file comes into memory changes nothing in the output
expect_rc 2 "$bin" generate "${TS_LLM[@]}" --load huge
grep -q "auto, mmap or copy" "$tmp/err" && ok || bad "--load error names the modes"
e=$("$bin" generate -m stories-llm-2.76M.bin -z tok512.bin -p "Once upon a time" -n 60 --seed 3 -t 1 --load copy 2>/dev/null)
f=$("$bin" generate -m stories-llm-2.76M.bin -z tok512.bin -p "Once upon a time" -n 60 --seed 3 -t 1 --load mmap 2>/dev/null)
[ -n "$e" ] && [ "$e" = "$a" ] && [ "$f" = "$a" ] && ok || bad "--load copy/mmap changed the output"

# JSON
"$bin" generate -m stories260K.bin -z tok512.bin --temp 0 -n 20 --json >"$tmp/out" 2>/dev/null
/usr/bin/python3 -c 'import json,sys; o=json.load(open(sys.argv[1])); assert o["generated_tokens"]==20 and o["text"].startswith("Once upon a time"), o' "$tmp/out" && ok || bad "generate --json"

# bench: machine-readable
expect_rc 0 "$bin" bench --help
"$bin" bench -m stories260K.bin --prompt 16 --gen 8 --reps 1 --json >"$tmp/out" 2>/dev/null
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["bench"]=="decode" and len(d["results"])==1, d; o=d["results"][0]; assert o["decode_tokens_per_s"]>0 and 0<o["fraction_of_bound"], o' "$tmp/out" && ok || bad "bench --json (one document)"
"$bin" bench -m stories260K.bin --prompt 16 --gen 8 --reps 1 --load copy --json >"$tmp/out" 2>/dev/null
/usr/bin/python3 -c 'import json,sys; o=json.load(open(sys.argv[1]))["results"][0]; assert o["weights_memory"]=="copy" and o["file_bytes"]>0 and -1<=o["huge_page_bytes"]<=o["file_bytes"] and o["thread_stalls"]>=0 and o["thread_solo_runs"]>=0 and o["thread_parallel_runs"]>=0, o' "$tmp/out" && ok || bad "bench --load copy reports its memory"

# bench batch: one JSON line per sequence count, both sides timed at the same contexts
expect_rc 0 "$bin" bench batch --help
"$bin" bench batch -m stories260K.bin --seqs 1,3 --rounds 1 >"$tmp/out" 2>/dev/null
/usr/bin/python3 -c '
import json,sys
r=[json.loads(l) for l in open(sys.argv[1])]
assert [o["seqs"] for o in r]==[1,3], r
assert all(o["batched_tokens_per_s"]>0 and o["one_at_a_time_tokens_per_s"]>0 and o["speedup"]>0 for o in r), r
assert r[1]["ctx_min"]==8 and r[1]["ctx_max"]==256 and r[0]["ctx_min"]==r[0]["ctx_max"]==132, r' "$tmp/out" && ok || bad "bench batch lines"
expect_rc 2 "$bin" bench batch "${TS_LLM[@]}" --seqs 1,x
expect_rc 2 "$bin" bench batch "${TS_LLM[@]}" --seqs 0
expect_rc 2 "$bin" bench batch "${TS_LLM[@]}" --seqs 1,2,
expect_rc 2 "$bin" bench batch "${TS_LLM[@]}" --ctx-min 50 --ctx-max 20
expect_rc 2 "$bin" bench batch "${TS_LLM[@]}" --ctx-max 256
expect_rc 2 "$bin" bench batch "${TS_LLM[@]}" --rounds 0
expect_rc 2 "$bin" bench batch "${TS_LLM[@]}" --frobnicate

finish
