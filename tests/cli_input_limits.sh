#!/usr/bin/env bash
# Input files read whole into memory (--calib, --prompts) are capped and must be regular files.
# Before: `uhlm run --calib /dev/zero` read until memory ran out, and a FIFO without a writer
# blocked forever. Now devices, FIFOs and directories are refused at once (exit 1, with the
# reason), files over the limit are refused without being read, and --max-input-mb raises it.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
# A regression must not eat the machine's memory or hang the suite: each command gets 20 s
# and, outside the sanitizer build (whose shadow memory needs a huge address space), 2 GiB.
limit=""
grep -q __asan_init "$bin" 2>/dev/null || limit="ulimit -v 2097152;"
expect_rc() { # WANT GREP-PATTERN CMD... (this test's own: two checks a call)
  local want=$1 pat=$2; shift 2
  bash -c "$limit"' exec timeout 20 "$@"' _ "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local rc=$?
  [ "$rc" = "$want" ] && ok || bad "rc $rc (want $want): $*: $(head -c 300 "$tmp/err")"
  [ -z "$pat" ] || grep -q -- "$pat" "$tmp/err" && ok || bad "no '$pat' in stderr of $*: $(head -c 300 "$tmp/err")"
}

mkfifo "$tmp/fifo"
mkdir "$tmp/dir"
# non-regular files: refused before any read
expect_rc 1 "not a regular file (a character device)" "$bin" run "${TS_PAIR[@]}" --calib /dev/zero --risk averse -n 1
expect_rc 1 "not a regular file (a FIFO or pipe)" "$bin" run "${TS_PAIR[@]}" --calib "$tmp/fifo" --risk averse -n 1
expect_rc 1 "not a regular file (a directory)" "$bin" run "${TS_PAIR[@]}" --calib "$tmp/dir" --risk averse -n 1
expect_rc 1 "prompt file /dev/zero is not a regular file" "$bin" calibrate "${TS_PAIR[@]}" --prompts /dev/zero -o "$tmp/c.json"
expect_rc 1 "not a regular file (a FIFO or pipe)" "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/fifo" -o "$tmp/ev"
expect_rc 1 "cannot open calibration file $tmp/none" "$bin" run "${TS_PAIR[@]}" --calib "$tmp/none" --risk averse -n 1

# the size limit: a sparse file past the 64 MiB default is refused without being read
truncate -s 65M "$tmp/huge.json"
expect_rc 1 "over the input limit of 67108864 bytes" "$bin" run "${TS_PAIR[@]}" --calib "$tmp/huge.json" --risk averse -n 1
expect_rc 1 "over the input limit" "$bin" calibrate "${TS_PAIR[@]}" --prompts "$tmp/huge.json" -o "$tmp/c.json"
expect_rc 1 "over the input limit" "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/huge.json" -o "$tmp/ev"
# a valid calibration file padded to 2 MiB: refused under a 1 MiB limit, read under 3 MiB
{ printf '{"thresholds": {"risk_averse": 0.5, "risk_prone": 0.7}'; head -c 2097152 /dev/zero | tr '\0' ' '; printf '}\n'; } >"$tmp/calib.json"
expect_rc 1 "is 2097208 bytes, over the input limit of 1048576 bytes" "$bin" run "${TS_PAIR[@]}" --calib "$tmp/calib.json" --risk averse -n 1 --max-input-mb 1
expect_rc 0 "" "$bin" run "${TS_PAIR[@]}" --calib "$tmp/calib.json" --risk averse -n 2 --max-input-mb 3 -p "Once"
expect_rc 0 "" "$bin" run "${TS_PAIR[@]}" --calib "$tmp/calib.json" --risk prone -n 2 -p "Once" # default limit
# the flag is checked like any number
expect_rc 2 "invalid value for --max-input-mb" "$bin" run "${TS_PAIR[@]}" --max-input-mb 0
expect_rc 2 "invalid value for --max-input-mb" "$bin" eval "${TS_PAIR[@]}" --max-input-mb x --prompts p -o o
expect_rc 2 "invalid value for --max-input-mb" "$bin" calibrate "${TS_PAIR[@]}" --max-input-mb -1 --prompts p -o o

finish
