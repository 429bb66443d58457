#!/usr/bin/env bash
# scripts/eval_plots.sh on a tiny eval's output (3 prompts, two SNRs, one sweep point, and a
# --sweep-methods eval in methods/): every PNG is drawn, non-empty and a PNG, with and without
# intervals.csv and a sentence-cosine CSV (the plots fall back to PPL alone, without error
# bars); a folder without the eval's CSVs is refused. SKIP where gnuplot is missing.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
if ! command -v gnuplot >/dev/null; then
  echo "SKIP: gnuplot not installed: eval_plots.sh not tested" >&2
  finish cli_eval_plots
fi

cat >"$tmp/p.jsonl" <<'J'
{"id": "a", "prompt": "Once upon a time, there was a little dog named Max."}
{"id": "b", "prompt": "Lily and mom went to the park."}
{"id": "c", "prompt": "Tom had a red ball."}
J
e=$tmp/e
"$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -n 10 --snr 0,20 --sweep 0.3,0.7 --uth 0.3 -o "$e" >/dev/null 2>"$tmp/err" \
  && ok || bad "eval: $(tail -c 300 "$tmp/err")"
"$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -n 8 --modes hlm --no-greedy --snr 0 --sweep 0.3,0.7 \
  --sweep-methods perturb,entropy,maxprob,margin -o "$e/methods" >/dev/null 2>"$tmp/err" \
  && ok || bad "methods eval: $(tail -c 300 "$tmp/err")"

# A sentence-cosine CSV in sentence_cosine.py --csv's columns (values made up here: this test
# is about the plots; tests/cli_sentence_cosine.sh tests the cosines where the model is).
{
  echo "mode,snr_db,metric,value,lo,hi,resamples,unit"
  for m in llm llm-seed2 slm hlm rand uhlm sweep-uhlm-perturb-q0.30 sweep-rand-perturb-q0.30 \
           sweep-uhlm-perturb-q0.70 sweep-rand-perturb-q0.70; do
    echo "$m,,sentence_cos_llm,0.8,0.7,0.9,100,prompts"
    echo "$m,,sentence_cos_llm_pct_llm,95,90,100,100,prompts"
    echo "$m,,sentence_cos_ref,0.6,0.5,0.7,100,prompts"
    echo "$m,,sentence_cos_ref_pct_llm,97,92,101,100,prompts"
  done
} >"$tmp/sc.csv"

pngs="u_vs_rejection throughput_snr sweep_uth frontier quality_modes methods_r2 methods_frontier"
check_pngs() {
  local what=$1 p
  for p in $pngs; do
    if [ -s "$e/$p.png" ] && [ "$(head -c 8 "$e/$p.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] \
       && [ "$(stat -c %s "$e/$p.png")" -gt 2000 ]; then ok; else bad "$what: $p.png missing, empty or not a PNG"; fi
  done
}
run_plots() {
  rm -f "$e"/*.png
  bash "$src/scripts/eval_plots.sh" "$e" >/dev/null 2>"$tmp/perr" && ok || bad "eval_plots ($1): $(cat "$tmp/perr")"
  grep -qi 'error\|invalid' "$tmp/perr" && bad "eval_plots ($1) complained: $(cat "$tmp/perr")" || ok
  check_pngs "$1"
}

[ -s "$e/intervals.csv" ] && ok || bad "the eval wrote no intervals.csv"
run_plots "eval output as written"
# the eval's own intervals belong to its figures: the ratio panel draws them
grep -q "does not match" "$tmp/perr" && bad "intervals of the same run refused: $(cat "$tmp/perr")" || ok
cp "$tmp/sc.csv" "$e/sentence_cosine.csv"
run_plots "with a sentence-cosine CSV"
mv "$e/intervals.csv" "$tmp/iv.csv"
run_plots "without intervals.csv"
rm -f "$e/sentence_cosine.csv"
run_plots "without intervals or sentence cosine"
# intervals.csv of another run (here: one figure moved) are not drawn around these figures
awk -F, -v OFS=, '$1=="uhlm" && $3=="speedup_vs_hlm" {$4 = $4 * 1.5} {print}' "$tmp/iv.csv" >"$e/intervals.csv"
run_plots "with intervals.csv of another run"
grep -q "speedup_vs_hlm of uhlm does not match" "$tmp/perr" && ok || bad "foreign intervals drawn: $(cat "$tmp/perr")"

mkdir -p "$tmp/empty"
bash "$src/scripts/eval_plots.sh" "$tmp/empty" >/dev/null 2>"$tmp/perr" && bad "plots of a folder without CSVs" || ok
grep -q "results.csv not found" "$tmp/perr" && ok || bad "missing CSV message: $(cat "$tmp/perr")"

finish cli_eval_plots
