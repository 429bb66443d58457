#!/usr/bin/env bash
# Progress of the long commands (`uhlm eval`, `uhlm calibrate`) when stderr is not a terminal:
# plain lines, no carriage return anywhere, each with the elapsed time and an ETA, no more than
# one per tenth of the work (plus the last), ending "ETA done". On a terminal (a pty from
# util-linux `script`, where it exists) the bar is still redrawn in place with '\r'.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}

cat >"$tmp/p.jsonl" <<'J'
{"id": "a", "prompt": "Once upon a time, there was a little dog named Max."}
{"id": "b", "prompt": "Lily and mom went to the park."}
{"id": "c", "prompt": "Tom had a red ball."}
{"id": "d", "prompt": "The sun was hot."}
J

# $1: label, $2: stderr file. Checks the progress lines of one command.
check_lines() {
  local label=$1 f=$2 n
  if grep -q $'\r' "$f"; then bad "$label: carriage return in a non-TTY stderr: $(od -c "$f" | head -5)"; else ok; fi
  n=$(grep -cE "^$label: [0-9]+/[0-9]+ \([0-9]+%\), [0-9]+ s elapsed, ETA ([0-9]{2}:[0-9]{2}|--:--|done)\$" "$f")
  [ "$n" -ge 2 ] && ok || bad "$label: $n progress lines, want at least 2: $(cat "$f")"
  # one per tenth at most, and the last line, plus one per 10 s that passed (a slow build)
  local el max
  el=$(grep -E "^$label: " "$f" | tail -1 | sed -E 's/.*, ([0-9]+) s elapsed.*/\1/')
  max=$((11 + ${el:-0} / 10))
  [ "$n" -le "$max" ] && ok || bad "$label: $n progress lines in $el s, want at most $max: $(cat "$f")"
  grep -E "^$label: " "$f" | tail -1 | grep -q "ETA done\$" && ok || bad "$label: last progress line is not 'ETA done': $(cat "$f")"
}

"$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -n 6 --snr 0 --sweep 0.5 -o "$tmp/e" >"$tmp/out" 2>"$tmp/eval.err"
rc=$?
[ "$rc" = 0 ] && ok || bad "eval rc $rc: $(tail -c 300 "$tmp/eval.err")"
check_lines eval "$tmp/eval.err"
grep -q "^uhlm eval: 4 prompts" "$tmp/eval.err" && ok || bad "eval's closing line: $(cat "$tmp/eval.err")"

"$bin" calibrate "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -n 6 -o "$tmp/c.json" >"$tmp/out" 2>"$tmp/cal.err"
rc=$?
[ "$rc" = 0 ] && ok || bad "calibrate rc $rc: $(tail -c 300 "$tmp/cal.err")"
check_lines calibrate "$tmp/cal.err"
# four prompts: a line per prompt, the last one from the end
[ "$(grep -c '^calibrate: ' "$tmp/cal.err")" = 4 ] && ok || bad "calibrate lines: $(cat "$tmp/cal.err")"

# a pipe is no terminal either
"$bin" calibrate "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -n 4 -o "$tmp/c2.json" 2>&1 >/dev/null | cat >"$tmp/pipe.err"
check_lines calibrate "$tmp/pipe.err"

# on a terminal the bar stays as it was: redrawn with '\r', no line per step
if command -v script >/dev/null && script -qec true /dev/null >/dev/null 2>&1; then
  script -qec "'$bin' calibrate -m stories-slm-0.28M.bin --llm stories-llm-2.76M.bin --prompts '$tmp/p.jsonl' -n 4 -o '$tmp/c3.json' >/dev/null" /dev/null >"$tmp/tty.out" 2>&1
  grep -q $'\rcalibrate \[' "$tmp/tty.out" && ok || bad "TTY: no redrawn bar: $(od -c "$tmp/tty.out" | head -5)"
  grep -qE '^calibrate: [0-9]+/' "$tmp/tty.out" && bad "TTY: plain progress lines on a terminal" || ok
else
  echo "SKIP: no usable 'script' (util-linux): TTY bar not checked" >&2
fi

finish cli_progress
