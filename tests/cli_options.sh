#!/usr/bin/env bash
# The option table shared by every subcommand (src/cli/options.c): --help and --version on each
# command, every option its --help lists is one its parser takes, llama.cpp's long names and the
# older spellings give the same output, range errors name the option and value (exit 2),
# -p - reads standard input and -f a file, -c limits the context, --json prints exactly one
# JSON document, and --simd reaches the model contexts of serve, eval and calibrate.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}

cmds=(generate run serve info tokenize convert embed eval calibrate bench "bench serve"
      "bench batch" "bench soak" "bench uncertainty")

# --help, --version and unknown options on every command
for c in "${cmds[@]}"; do
  # shellcheck disable=SC2086
  expect_rc 0 "$bin" $c --help
  grep -q "^usage: uhlm $c \[options\]" "$tmp/out" && ok || bad "$c --help usage line: $(head -1 "$tmp/out")"
  cp "$tmp/out" "$tmp/help"
  # shellcheck disable=SC2086
  expect_rc 0 "$bin" $c --version
  grep -q "^uhlm [0-9]" "$tmp/out" && ok || bad "$c --version: $(cat "$tmp/out")"
  # shellcheck disable=SC2086
  expect_rc 2 "$bin" $c --no-such-option
  grep -q "unknown option '--no-such-option'" "$tmp/err" && ok || bad "$c unknown option message"
  # every option --help lists is taken: a flag before --version exits 0 without running, an
  # option with a value given none says it needs one (never "unknown option")
  "$py" - "$tmp/help" >"$tmp/opts" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    if not re.match(r"  -", line):
        continue
    spec = re.split(r"\s{2,}", line.strip())[0].split()
    names = [t.rstrip(",") for t in spec if t.startswith("-")]
    flag = spec[-1].startswith("-")
    for n in names:
        if n not in ("-h", "--help", "--version"):
            print(("flag" if flag else "value"), n)
PY
  [ -s "$tmp/opts" ] && ok || bad "$c --help lists no options"
  while read -r kind opt; do
    if [ "$kind" = flag ]; then
      # shellcheck disable=SC2086
      "$bin" $c "$opt" --version >"$tmp/out" 2>"$tmp/err"; rc=$?
      [ "$rc" = 0 ] && ok || bad "$c $opt --version: rc $rc $(head -c 200 "$tmp/err")"
    else
      # shellcheck disable=SC2086
      "$bin" $c "$opt" >"$tmp/out" 2>"$tmp/err"; rc=$?
      [ "$rc" = 2 ] && grep -q "needs a value" "$tmp/err" && ok || bad "$c $opt (no value): rc $rc $(head -c 200 "$tmp/err")"
    fi
  done <"$tmp/opts"
done
"$bin" --help | grep -q "bench" && ok || bad "uhlm --help lists bench"
expect_rc 0 "$bin" --version

# run's usage no longer drifts from its parser
"$bin" run --help >"$tmp/out"
for o in --calib --risk --slm --llm --n-predict --ctx-size --file --threads --simd; do
  grep -q -- "$o" "$tmp/out" && ok || bad "run --help lacks $o"
done

# range errors name the option and the value
check_range() { local pat=$1; shift; "$@" >/dev/null 2>"$tmp/err"; local rc=$?
  [ "$rc" = 2 ] && grep -qF -- "$pat" "$tmp/err" && ok || bad "rc $rc for $*: $(cat "$tmp/err")"; }
check_range "invalid value for -t: '2000'" "$bin" generate "${TS_LLM[@]}" -t 2000
check_range "invalid value for --threads: '-1'" "$bin" run "${TS_PAIR[@]}" --threads -1
check_range "invalid value for --top-p: '1.5'" "$bin" generate "${TS_LLM[@]}" --top-p 1.5
check_range "invalid value for --n-predict: 'x'" "$bin" generate "${TS_LLM[@]}" --n-predict x
check_range "invalid value for --port: '70000'" "$bin" serve "${TS_LLM[@]}" --port 70000
check_range "invalid value for --mode: 'fast'" "$bin" run "${TS_PAIR[@]}" --mode fast
check_range "invalid value for --simd: 'sse9'" "$bin" embed "${TS_LLM[@]}" --simd sse9 -p a
check_range "invalid value for --risk: 'bold'" "$bin" run "${TS_PAIR[@]}" --calib x.json --risk bold
check_range "invalid value for -n: '0'" "$bin" eval "${TS_PAIR[@]}" --prompts p.jsonl -o d -n 0
check_range "invalid value for --rounds: '0'" "$bin" bench batch "${TS_LLM[@]}" --rounds 0
check_range "invalid value for --seconds: '0.06'" "$bin" bench soak "${TS_LLM[@]}" --seconds 0.06
check_range "invalid value for -s: '-3'" "$bin" generate "${TS_LLM[@]}" -s -3
check_range "invalid value for --type: 'q9'" "$bin" convert --type q9
check_range "invalid value for --ctx-size: '-1'" "$bin" generate "${TS_LLM[@]}" --ctx-size -1

# llama.cpp's long names and the older spellings give the same tokens
gen() { "$bin" generate "${TS_LLM[@]}" --json "$@" 2>/dev/null; }
a=$(gen -m stories260K.bin -z tok512.bin -p "Once upon a time" -n 24 --seed 7 -t 1)
b=$(gen --model stories260K.bin --tokenizer tok512.bin --prompt "Once upon a time" --n-predict 24 -s 7 --threads 2)
[ -n "$a" ] && [ "$a" != "${a#\{}" ] && ok || bad "generate --json: $a"
ta=$(printf '%s' "$a" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
tb=$(printf '%s' "$b" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
[ -n "$ta" ] && [ "$ta" = "$tb" ] && ok || bad "long names differ: $ta vs $tb"
# -p - reads standard input, -f a file (one final newline dropped, as llama.cpp's -f)
printf 'Once upon a time\n' >"$tmp/prompt.txt"
tc=$(printf 'Once upon a time\n' | gen -m stories260K.bin -z tok512.bin -p - -n 24 -s 7 | "$py" -c 'import json,sys; o=json.load(sys.stdin); assert o["prompt"]=="Once upon a time", o; print(o["tokens"])')
[ "$ta" = "$tc" ] && ok || bad "-p - differs: $tc"
td=$(gen -m stories260K.bin -z tok512.bin -f "$tmp/prompt.txt" -n 24 -s 7 | "$py" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
[ "$ta" = "$td" ] && ok || bad "-f differs: $td"
"$bin" generate "${TS_LLM[@]}" -f "$tmp/nope.txt" >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" = 1 ] && grep -q "nope.txt" "$tmp/err" && ok || bad "-f missing file: rc $rc $(cat "$tmp/err")"
# -c/--ctx-size: the context ends generation
gen -m stories260K.bin -z tok512.bin -c 16 -n 100 -s 7 | "$py" -c 'import json,sys; o=json.load(sys.stdin); assert o["stop"]=="context" and o["prompt_tokens"]+o["generated_tokens"]==16, o' \
  && ok || bad "-c 16 does not stop at the context"

# run: --slm/--llm and -m (the SLM in a command with two models) are the same option
ra=$("$bin" run -m stories-slm-0.28M.bin --llm stories-llm-2.76M.bin -n 16 --seed 3 --json 2>/dev/null | "$py" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
rb=$("$bin" run --slm stories-slm-0.28M.bin --llm stories-llm-2.76M.bin --n-predict 16 -s 3 --json 2>/dev/null | "$py" -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
[ -n "$ra" ] && [ "$ra" = "$rb" ] && ok || bad "run -m vs --slm: $ra vs $rb"

# --json prints exactly one JSON document
one_doc() { local what=$1; shift; "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  [ "$rc" = 0 ] && "$py" -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/out" && ok || bad "$what: rc $rc, not one JSON document: $(head -c 300 "$tmp/out") $(head -c 300 "$tmp/err")"; }
one_doc "run --json" "$bin" run "${TS_PAIR[@]}" -n 8 --json --events
one_doc "info --json" "$bin" info -m stories260K.bin --json
one_doc "tokenize --json" "$bin" tokenize -z tok512.bin --json --pieces Hello world
one_doc "embed --json" "$bin" embed "${TS_LLM[@]}" --json -p "The dog ran." -p "A cat sat."
one_doc "embed --json --cosine" "$bin" embed "${TS_LLM[@]}" --json --cosine -p "The dog ran." -p "A cat sat."
"$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["cosine"])==1 and -1<=d["cosine"][0]<=1, d' "$tmp/out" && ok || bad "embed cosine document"
one_doc "bench batch --json" "$bin" bench batch -m stories260K.bin --seqs 1,2 --rounds 1 --json
"$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["bench"]=="batch" and [r["seqs"] for r in d["results"]]==[1,2], d' "$tmp/out" && ok || bad "bench batch document"
one_doc "bench uncertainty --json" "$bin" bench uncertainty "${TS_SLM[@]}" --reps 10 --json
"$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["bench"]=="uncertainty" and len(d["results"])>=2, d' "$tmp/out" && ok || bad "bench uncertainty document"
# JSON Lines stay available
"$bin" embed "${TS_LLM[@]}" --jsonl -p "The dog ran." -p "A cat sat." >"$tmp/out" 2>/dev/null
"$py" -c 'import json,sys; L=[json.loads(l) for l in open(sys.argv[1])]; assert len(L)==2 and len(L[0])==192, len(L)' "$tmp/out" && ok || bad "embed --jsonl"
"$bin" bench uncertainty "${TS_SLM[@]}" --reps 10 --jsonl >"$tmp/out" 2>/dev/null
"$py" -c 'import json,sys; L=[json.loads(l) for l in open(sys.argv[1])]; assert len(L)>=2 and "ns_per_call" in L[0], L' "$tmp/out" && ok || bad "bench uncertainty --jsonl"
expect_rc 2 "$bin" bench batch "${TS_LLM[@]}" --json --jsonl

# --simd reaches the model contexts of serve, eval and calibrate: `--simd scalar` gives what
# UHLM_SIMD=scalar (which overrides auto) gives. Where the CPU has AVX2 or AVX-512, scalar
# kernels round differently from the default, so a --simd that went nowhere would show.
for c in serve eval calibrate; do
  check_range "invalid value for --simd: 'sse9'" "$bin" $c --simd sse9
  "$bin" $c --help | grep -q -- "--simd LEVEL" && ok || bad "$c --help lacks --simd"
done
P=${UHLM_SOURCE_DIR:-.}/data/prompts/stories.jsonl
strip_times() { "$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); [d.pop(k) for k in [k for k in d if k.endswith("seconds")]]; print(json.dumps(d, sort_keys=True))' "$1"; }
"$bin" calibrate "${TS_PAIR[@]}" --prompts "$P" --limit 4 -n 16 -t 1 --simd scalar -o "$tmp/cs.json" >/dev/null 2>"$tmp/err" \
  && UHLM_SIMD=scalar "$bin" calibrate "${TS_PAIR[@]}" --prompts "$P" --limit 4 -n 16 -t 1 -o "$tmp/ce.json" >/dev/null 2>>"$tmp/err" \
  && [ "$(strip_times "$tmp/cs.json")" = "$(strip_times "$tmp/ce.json")" ] && ok || bad "calibrate --simd scalar: $(head -c 300 "$tmp/err")"
# the per-prompt and per-method results (results.csv and the JSON also hold timings)
same_results() { local f; for f in per_prompt.csv bins.csv methods.csv; do cmp -s "$1/$f" "$2/$f" || return 1; done; }
ev() { "$bin" eval "${TS_PAIR[@]}" --prompts "$P" --limit 3 -n 12 --modes slm,hlm --snr 10 --sweep none --no-greedy -t 1 "$@"; }
ev --simd scalar -o "$tmp/es" >/dev/null 2>"$tmp/err" && UHLM_SIMD=scalar ev -o "$tmp/ee" >/dev/null 2>>"$tmp/err" \
  && same_results "$tmp/es" "$tmp/ee" \
  && ok || bad "eval --simd scalar: $(head -c 300 "$tmp/err")"
# serve: the verdicts' LLM probabilities (y_d) come from the server's context
serve_y() { # ENV... -- SERVE ARGS: y_d of a remote run against a server started with them
  local envs=(); while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  rm -f "$tmp/port"
  env "${envs[@]}" "$bin" serve "${TS_LLM[@]}" -t 1 --port 0 --port-file "$tmp/port" --quiet "$@" 2>"$tmp/serve.log" &
  local pid=$!
  for _ in $(seq 1 200); do [ -s "$tmp/port" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  "$bin" run "${TS_PAIR[@]}" -n 24 --json --events --require-server --server "127.0.0.1:$(cat "$tmp/port" 2>/dev/null)" 2>/dev/null \
    | "$py" -c 'import json,sys; print([e["y_d"] for e in json.load(sys.stdin)["events"]])'
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
}
ya=$(serve_y -- --simd scalar); yb=$(serve_y UHLM_SIMD=scalar --)
[ -n "$ya" ] && [ "$ya" = "$yb" ] && ok || bad "serve --simd scalar: $ya vs $yb $(head -c 300 "$tmp/serve.log")"

finish
