#!/usr/bin/env bash
# The real pair end to end: the drafter trained for SmolLM2-135M-Instruct
# (models/smollm2-drafter.gguf, train/) against the shipped Q4_1 LLM.
#   - exactness: hlm with this drafter reproduces the LLM's next-token distribution (chi-square,
#     train/check_exact.c), and the drafter alone (slm) does not (the negative control);
#   - a tiny eval on the paper's prompts (the first Alpaca records, chat template), two SNRs:
#     every mode runs, the hlm payload is the f32 distribution over 49152 tokens, greedy hlm is
#     the greedy LLM (exact match 1), uhlm sends fewer uplinks than hlm at a u_th it skips at,
#     and the intervals, summary and answers are written.
# Skips (passes with SKIP) when either model file is missing; scripts/setup.sh fetches the LLM
# and the drafter is committed.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}

slm='' llm='' # need_model sets them, or skips the test
need_model slm smollm2-drafter.gguf
need_model llm SmolLM2-135M-Instruct.Q4_1.gguf "scripts/setup.sh fetches it"
alpaca=$src/../shared/data/alpaca-200.jsonl
[ -f "$alpaca" ] || { echo "SKIP: $alpaca not found"; exit 0; }
check=$(dirname "$bin")/check_exact
asan=0
grep -q __asan_init "$bin" 2>/dev/null && asan=1
# the sanitizer build runs everything about 10x slower: fewer samples, the same checks
n_exact=${N_EXACT:-$([ "$asan" = 1 ] && echo 300 || echo 1000)}

# 1. exactness on this pair
if [ -x "$check" ]; then
  "$check" "$slm" "$llm" "$n_exact" >"$tmp/exact" 2>&1
  rc=$?
  cat "$tmp/exact"
  [ "$rc" = 0 ] && ok || bad "check_exact rc $rc"
  grep -q "^hlm .*matches (as it must)" "$tmp/exact" && ok || bad "hlm does not match the LLM's distribution"
  grep -q "^slm .*differs (as it must)" "$tmp/exact" && ok || bad "the negative control (slm) was not told apart"
else
  bad "$check not built"
fi

# 2. a tiny eval: 3 prompts, two SNRs, every mode
"$bin" eval --slm "$slm" --llm "$llm" -t 2 --prompts "$alpaca" --limit 3 -n 8 --uth 0.5 \
  --snr -10,20 --sweep none -o "$tmp/e" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" = 0 ] && ok || bad "eval rc $rc: $(tail -5 "$tmp/err")"
grep -q "chatml chat template" "$tmp/err" && ok || bad "prompts not wrapped in the chat template: $(head -3 "$tmp/err")"
for f in results.csv intervals.csv per_prompt.csv summary.md answers.jsonl results.json; do
  [ -s "$tmp/e/$f" ] && ok || bad "eval wrote no $f"
done
python3 - "$tmp/e" <<'PY' && ok || bad "eval results (above)"
import csv, json, math, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(d + "/results.csv")))
got = {(r["mode"], r["snr_db"]) for r in rows}
want = {(m, s) for m in ("slm", "llm", "hlm", "rand", "uhlm") for s in ("-10", "20")}
errs = []
if not want <= got:
    errs.append(f"modes x SNRs missing: {sorted(want - got)}")
r = {(x["mode"], x["snr_db"]): x for x in rows}
def f(m, s, k):
    return float(r[(m, s)][k])
if not errs:
    # 49152 f32 probabilities and the message's few bytes of framing
    if not 49152 * 4 <= f("hlm", "-10", "uplink_bytes_per_token") < 49152 * 4 + 64:
        errs.append(f"hlm uplink bytes per token {f('hlm', '-10', 'uplink_bytes_per_token')}, want 196608 + framing (f32)")
    if f("hlm", "-10", "tr") != 1.0:
        errs.append("hlm does not verify every token")
    if f("hlm", "-10", "exact_match") != 1.0:
        errs.append(f"greedy hlm differs from greedy llm: exact match {f('hlm', '-10', 'exact_match')}")
    if not 0.0 <= f("uhlm", "-10", "tr") < 1.0:
        errs.append(f"uhlm TR {f('uhlm', '-10', 'tr')} (u_th 0.5 should skip some tokens)")
    for m in ("llm", "hlm", "rand", "uhlm"):
        for s in ("-10", "20"):
            t = f(m, s, "throughput_tok_s")
            if not (math.isfinite(t) and t > 0):
                errs.append(f"{m} at {s} dB: throughput {t}")
    if not f("hlm", "20", "throughput_tok_s") > f("hlm", "-10", "throughput_tok_s"):
        errs.append("hlm is not faster at 20 dB than at -10 dB")
    if f("slm", "-10", "llm_calls") != 0:
        errs.append("slm called the LLM")
iv = list(csv.DictReader(open(d + "/intervals.csv")))
if not any(x["mode"] == "uhlm" and x["metric"] == "tr" for x in iv):
    errs.append("no uhlm TR interval")
ans = [json.loads(l) for l in open(d + "/answers.jsonl")]
if len({a.get("prompt_id", a.get("id")) for a in ans}) != 3:
    errs.append(f"answers.jsonl: {len(ans)} records, want 3 prompts")
for e in errs:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errs else 0)
PY

finish cli_real_pair
