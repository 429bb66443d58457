#!/usr/bin/env bash
# CLI behaviour of `uhlm run`: help, usage errors (exit 2), runtime errors (exit 1), the five
# modes, text on stdout and the summary on stderr, JSON, the u_th extremes, greedy hlm == llm,
# determinism across thread counts, and refusal of a vocabulary mismatch.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
P="Once upon a time, there was a little girl"

expect_rc 0 "$bin" run --help
grep -q "usage: uhlm run" "$tmp/out" && ok || bad "run --help text"
for args in "--bogus" "--mode" "--mode fast" "--payload topk:0" "--payload f8" "--uth x" \
            "--skip-prob 1.5" "--temp -1" "--fading rician" "--uncertainty vibes" "--samples 0" \
            "--theta-max 0" "-n -3" "--events" "--snr abc" "--bandwidth 0"; do
  # shellcheck disable=SC2086
  expect_rc 2 "$bin" run "${TS_PAIR[@]}" $args
done
expect_rc 1 "$bin" run -m /nonexistent.bin
grep -q "/nonexistent.bin" "$tmp/err" && ok || bad "missing model is named"
# K above the vocabulary is a usage error like K = 0, though seen only once the SLM is loaded
expect_rc 2 "$bin" run "${TS_PAIR[@]}" --payload topk:600 -p "$P" -n 4
grep -qi "topk" "$tmp/err" && ok || bad "topk K > V message"
expect_rc 2 "$bin" run "${TS_PAIR[@]}" --payload topk:999999 -p "$P" -n 4
expect_rc 2 "$bin" run "${TS_PAIR[@]}" --payload topk:0 -p "$P" -n 4

# every mode runs, prints the prompt and text on stdout and one summary line on stderr
for mode in slm llm hlm rand uhlm; do
  "$bin" run "${TS_PAIR[@]}" --mode "$mode" -p "$P" -n 24 --seed 3 >"$tmp/out" 2>"$tmp/err"
  rc=$?
  [ "$rc" = 0 ] && ok || bad "mode $mode rc $rc: $(cat "$tmp/err")"
  case "$(cat "$tmp/out")" in "$P"?*) ok ;; *) bad "mode $mode stdout: $(head -c 200 "$tmp/out")" ;; esac
  [ "$(wc -l <"$tmp/err")" = 1 ] && grep -q "mode $mode" "$tmp/err" && grep -q "TR" "$tmp/err" && ok || bad "mode $mode stderr: $(cat "$tmp/err")"
done

# JSON: full stats, consistent counts
"$bin" run "${TS_PAIR[@]}" --mode uhlm --uth 0.4 -p "$P" -n 40 --seed 5 --shadow --json --events >"$tmp/j" 2>/dev/null
$py - "$tmp/j" <<'EOF' && ok || bad "run --json"
import json, sys
o = json.load(open(sys.argv[1]))
assert o["mode"] == "uhlm" and o["generated_tokens"] == len(o["tokens"]) > 0, o
assert o["generated_tokens"] == o["transmitted_tokens"] + o["skipped_tokens"]
assert abs(o["tr"] - o["transmitted_tokens"] / o["generated_tokens"]) < 1e-9
assert o["accepted"] + o["rejected"] == o["transmitted_tokens"]
assert abs(o["accounted_seconds"] - o["compute_seconds"] - o["link_seconds"]) < 1e-9
assert o["throughput_accounted"] > 0 and o["throughput_compute"] >= o["throughput_accounted"]
assert o["shadow"]["evaluated"] == o["skipped_tokens"] and 0 <= o["shadow"]["tsr"] <= 1
assert len(o["events"]) == o["generated_tokens"]
assert all((e["u"] is not None) for e in o["events"])
assert sum(1 for e in o["events"] if e["verified"]) == o["transmitted_tokens"]
assert o["text"] and o["prompt"].startswith("Once upon")
assert o["channel"]["up_bandwidth_hz"] == 1e6 and o["channel"]["up_snr_db"] == 10
EOF

# extremes: u_th < 0 is hlm (TR = 1, same text); u_th = 1 is slm (TR = 0, same text)
hlm=$("$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 40 --seed 9 2>/dev/null)
slm=$("$bin" run "${TS_PAIR[@]}" --mode slm -p "$P" -n 40 --seed 9 2>/dev/null)
lo=$("$bin" run "${TS_PAIR[@]}" --mode uhlm --uth -1 -p "$P" -n 40 --seed 9 2>"$tmp/err")
grep -q "TR 1.000" "$tmp/err" && ok || bad "uth -1 TR: $(cat "$tmp/err")"
[ "$lo" = "$hlm" ] && ok || bad "uth -1 text differs from hlm"
hi=$("$bin" run "${TS_PAIR[@]}" --mode uhlm --uth 1 -p "$P" -n 40 --seed 9 2>"$tmp/err")
grep -q "TR 0.000" "$tmp/err" && ok || bad "uth 1 TR: $(cat "$tmp/err")"
[ "$hi" = "$slm" ] && ok || bad "uth 1 text differs from slm"
[ "$hlm" != "$slm" ] && ok || bad "hlm and slm gave the same text"

# greedy: hlm equals llm token for token
a=$("$bin" run "${TS_PAIR[@]}" --mode hlm --temp 0 -p "$P" -n 60 2>/dev/null)
b=$("$bin" run "${TS_PAIR[@]}" --mode llm --temp 0 -p "$P" -n 60 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "greedy hlm != llm: '$a' vs '$b'"

# same seed, any thread count, same text; payloads and channels do not change the text of hlm
# only through the draft distribution (topk changes x~, so compare like with like)
for mode in uhlm rand hlm; do
  a=$("$bin" run "${TS_PAIR[@]}" --mode "$mode" -p "$P" -n 40 --seed 4 -t 1 --payload topk:16 2>/dev/null)
  b=$("$bin" run "${TS_PAIR[@]}" --mode "$mode" -p "$P" -n 40 --seed 4 -t 2 --payload topk:16 2>/dev/null)
  [ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "mode $mode: thread count changed the text"
done
a=$("$bin" run "${TS_PAIR[@]}" --mode uhlm -p "$P" -n 40 --seed 4 --snr -10 --fading rayleigh 2>/dev/null)
b=$("$bin" run "${TS_PAIR[@]}" --mode uhlm -p "$P" -n 40 --seed 4 --snr 30 2>/dev/null)
[ "$a" = "$b" ] && ok || bad "the channel changed the text"

# the channel sets link time: lower SNR, more link seconds
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 10 --seed 1 --snr -10 --json >"$tmp/lo" 2>/dev/null
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 10 --seed 1 --snr 30 --latency 0.01 --json >"$tmp/hi" 2>/dev/null
$py - "$tmp/lo" "$tmp/hi" <<'EOF' && ok || bad "link time vs SNR"
import json, sys, math
lo, hi = (json.load(open(f)) for f in sys.argv[1:3])
r = lambda snr: 1e6 * math.log2(1 + 10 ** (snr / 10))
assert abs(lo["uplink_seconds"] - lo["uplink_bits"] / r(-10)) < 1e-9, lo
msgs = hi["uplink_messages"] + hi["downlink_messages"]
assert abs(hi["link_seconds"] - (hi["uplink_bits"] + hi["downlink_bits"]) / r(30) - 0.01 * msgs) < 1e-9, hi
assert lo["link_seconds"] > hi["link_seconds"] - 0.01 * msgs
EOF

# vocabulary mismatch: an LLM whose embedded vocabulary differs in one score
$py - "$UHLM_MODELS/tok512.bin" "$tmp/alt.bin" <<'EOF'
import struct, sys
d = bytearray(open(sys.argv[1], "rb").read())
off = 4  # max_token_length, then (score f32, len i32, bytes) per token
for i in range(300):
    n = struct.unpack_from("<i", d, off + 4)[0]
    off += 8 + n
struct.pack_into("<f", d, off, struct.unpack_from("<f", d, off)[0] - 1.0)
open(sys.argv[2], "wb").write(d)
EOF
if "$bin" convert -m stories-llm-2.76M.bin -z "$tmp/alt.bin" -o "$tmp/alt.gguf" >/dev/null 2>&1; then
  expect_rc 1 "$bin" run -m stories-slm-0.28M.bin --llm "$tmp/alt.gguf" -p "$P" -n 4
  grep -qi "vocabulary mismatch" "$tmp/err" && ok || bad "vocab mismatch message: $(cat "$tmp/err")"
else
  bad "uhlm convert failed; cannot build the mismatched LLM"
fi
expect_rc 1 "$bin" run -m stories-slm-0.28M.bin --llm stories-llm-2.76M.bin -z tokenizer.bin -n 4
grep -qi "vocabulary\|tokenizer" "$tmp/err" && ok || bad "32000-token tokenizer on 512-token models"

finish
