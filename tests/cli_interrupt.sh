#!/usr/bin/env bash
# Ctrl-C (SIGINT) in `uhlm run` and `uhlm generate`: the command stops at the next token, prints
# the partial text and its stats (with --json one parseable object marked "interrupted": true),
# and exits 130; the partial tokens are the uninterrupted run's first tokens; without a signal
# nothing changes (exit 0, no "interrupted" key). Also `eval` (Ctrl-C writes no reports, exits
# 130) and the output folders eval and calibrate create.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
P="Once upon a time, there was a little girl"
# jtest FILE PYTHON-EXPR: whether EXPR holds for d, FILE's JSON (testlib's jcheck also counts)
jtest() { $py -c "import json,sys; d=json.load(open('$1')); sys.exit(0 if ($2) else 1)"; }

# Nonzero until process $1 catches SIGINT (SigCgt bit 2 in /proc: the command has installed
# its handler, just before its token loop). A SIGINT sent earlier would be lost, since a
# non-interactive shell starts background jobs with SIGINT ignored.
not_catching() {
  local m
  m=$(awk '/^SigCgt:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 0
  [ -n "$m" ] || return 0
  [ $(( 0x$m & 2 )) = 0 ]
}

# Starts "$@" in the background (stdout $tmp/out, stderr $tmp/err), waits until it catches
# SIGINT and, with $1 >= 0, until stdout holds more than $1 bytes; sends SIGINT and sets rc.
interrupt_after() {
  local min=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err" &
  local pid=$! i=0
  # at most 120 s: a loaded machine (or a sanitizer build) may take a while to load the model
  while kill -0 $pid 2>/dev/null && [ $i -lt 1200 ] &&
        { not_catching $pid || [ "$(stat -c %s "$tmp/out")" -le "$min" ]; }; do
    sleep 0.1; i=$((i+1))
  done
  # without a byte count to wait for, let the loop make a few tokens first
  [ "$min" -ge 0 ] || sleep 0.3
  kill -INT $pid
  # a command that has not stopped 120 s after the signal is reported with its signal state
  # (caught, blocked, pending) and stopped, so a lost SIGINT fails this test with a diagnosis
  # instead of running into CTest's timeout
  i=0
  while kill -0 $pid 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
  if kill -0 $pid 2>/dev/null; then
    bad "$*: still running 120 s after SIGINT; $(grep -E '^Sig(Cgt|Blk|Pnd|Ign)|^ShdPnd' "/proc/$pid/status" | tr '\n' ' '); stderr: $(tail -c 300 "$tmp/err")"
    kill -9 $pid
  fi
  wait $pid
  rc=$?
}

# the shaped channel really waits each message's link time (20 ms latency each way), so the
# 251 tokens the context allows take several seconds: a SIGINT lands mid-run
RUN=(run "${TS_PAIR[@]}" -p "$P" -n 100000 --seed 7 --latency 0.02)

interrupt_after ${#P} "$bin" "${RUN[@]}" --channel shaped
[ "$rc" = 130 ] && ok || bad "run: rc $rc (want 130): $(cat "$tmp/err")"
case "$(cat "$tmp/out")" in "$P"?*) ok ;; *) bad "run: partial text missing: $(head -c 200 "$tmp/out")" ;; esac
grep -q "stop: cancelled" "$tmp/err" && grep -q "interrupted after" "$tmp/err" && ok || bad "run: stats: $(cat "$tmp/err")"

# --json: one object, marked, whose tokens start the uninterrupted run's
"$bin" "${RUN[@]}" --json >"$tmp/full.json" 2>"$tmp/err"
rc=$?
[ "$rc" = 0 ] && ok || bad "run --json uninterrupted rc $rc: $(cat "$tmp/err")"
jtest "$tmp/full.json" "'interrupted' not in d and d['stop']=='context'" && ok || bad "run --json uninterrupted: $(head -c 300 "$tmp/full.json")"
interrupt_after -1 "$bin" "${RUN[@]}" --channel shaped --json
[ "$rc" = 130 ] && ok || bad "run --json: rc $rc (want 130): $(cat "$tmp/err")"
jtest "$tmp/out" "d['interrupted'] is True and d['stop']=='cancelled' and 0 < d['generated_tokens'] < 251 and len(d['tokens'])==d['generated_tokens']" \
  && ok || bad "run --json: interrupted object: $(head -c 300 "$tmp/out")"
$py -c "import json,sys; p=json.load(open('$tmp/out')); f=json.load(open('$tmp/full.json')); n=len(p['tokens']); sys.exit(0 if n > 0 and p['tokens']==f['tokens'][:n] and f['text'].startswith(p['text'].rstrip()) else 1)" \
  && ok || bad "run --json: the partial tokens are not the full run's first tokens"

# without a signal: exit 0, full text
"$bin" "${RUN[@]}" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" = 0 ] && grep -q "stop: context" "$tmp/err" && ! grep -q interrupted "$tmp/err" && ok || bad "run uninterrupted: rc $rc: $(cat "$tmp/err")"

# generate needs a model slow enough to interrupt: SmolLM2 (scripts/setup.sh), 8192 positions
smol=$(find_model SmolLM2-135M-Instruct.Q4_1.gguf)
if [ -z "$smol" ]; then
  echo "SKIP: generate: SmolLM2-135M-Instruct.Q4_1.gguf not found (scripts/setup.sh fetches it)"
else
  GP="The quick brown fox"
  # stdout holds the prompt, then 20 more bytes of generated text: the loop is running
  interrupt_after $(( ${#GP} + 20 )) "$bin" generate -m "$smol" -p "$GP" -n 100000 -t 2 --seed 5
  [ "$rc" = 130 ] && ok || bad "generate: rc $rc (want 130): $(cat "$tmp/err")"
  case "$(cat "$tmp/out")" in "$GP"?*) ok ;; *) bad "generate: partial text: $(head -c 200 "$tmp/out")" ;; esac
  grep -q "stop: cancelled" "$tmp/err" && grep -q "interrupted after" "$tmp/err" && ok || bad "generate: stats: $(cat "$tmp/err")"
  interrupt_after -1 "$bin" generate -m "$smol" -p "$GP" -n 100000 -t 2 --seed 5 --json
  [ "$rc" = 130 ] && ok || bad "generate --json: rc $rc"
  jtest "$tmp/out" "d['interrupted'] is True and d['stop']=='cancelled' and len(d['tokens'])==d['generated_tokens']" \
    && ok || bad "generate --json: $(head -c 300 "$tmp/out")"
fi

# eval: stopped between tokens of some run, it writes no reports (a cut plan would mix whole
# and missing sets) into the folder it made, and exits 130
prompts=$src/data/prompts/stories.jsonl
interrupt_after -1 "$bin" eval "${TS_PAIR[@]}" --prompts "$prompts" -n 64 -o "$tmp/ev/deep/er"
[ "$rc" = 130 ] && ok || bad "eval: rc $rc (want 130): $(tail -c 300 "$tmp/err")"
grep -q "interrupted" "$tmp/err" && ok || bad "eval: no interrupted message: $(tail -c 300 "$tmp/err")"
[ -d "$tmp/ev/deep/er" ] && [ -z "$(ls -A "$tmp/ev/deep/er")" ] && ok || bad "eval: interrupted run left files: $(ls "$tmp/ev/deep/er")"

# eval and calibrate create their output folders (mkdir -p), and name the one they cannot
"$bin" eval "${TS_PAIR[@]}" --prompts "$prompts" --limit 2 -n 8 --no-greedy --sweep-methods perturb -o "$tmp/e2/a/b" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" = 0 ] && [ -s "$tmp/e2/a/b/results.json" ] && ok || bad "eval -o a/b/: rc $rc: $(tail -c 300 "$tmp/err")"
"$bin" calibrate "${TS_PAIR[@]}" --prompts "$prompts" --limit 6 -n 32 -o "$tmp/c2/x/calib.json" --csv "$tmp/c2/y/c.csv" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" = 0 ] && [ -s "$tmp/c2/x/calib.json" ] && [ -s "$tmp/c2/y/c.csv" ] && ok || bad "calibrate -o x/y: rc $rc: $(tail -c 300 "$tmp/err")"
: >"$tmp/plain"
"$bin" eval "${TS_PAIR[@]}" --prompts "$prompts" --limit 2 -n 8 -o "$tmp/plain/sub" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" = 1 ] && grep -q "cannot create output folder $tmp/plain" "$tmp/err" && ok || bad "eval -o under a file: rc $rc: $(cat "$tmp/err")"
"$bin" calibrate "${TS_PAIR[@]}" --prompts "$prompts" --limit 2 -n 8 -o "$tmp/plain/sub/c.json" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" = 1 ] && grep -q "cannot create output folder $tmp/plain" "$tmp/err" && ok || bad "calibrate -o under a file: rc $rc: $(cat "$tmp/err")"

finish
