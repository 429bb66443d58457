#!/usr/bin/env bash
# Regenerates the real-pair report (docs/results.md, part 1): SmolLM2-135M-Instruct (Q4_1, as
# shipped) as the server LLM, the drafter trained for it (models/smollm2-drafter.gguf, train/) as
# the device SLM, on the paper's prompt source, Stanford Alpaca (../shared/data/alpaca-200.jsonl,
# read in place), with the chat template.
#   1. uhlm calibrate on the fit records (Alpaca records N_EVAL.., by default 100..199), split by a
#      hash of the id into a fit half and a held-out half: the budget rule's out-of-sample check;
#   2. uhlm eval of the five modes on the evaluation records (the first N_EVAL, by default 0..99),
#      f32 payload (the paper's: the full vocabulary distribution), the SNR grid, u_th from the
#      calibration (--risk RISK), the u_th sweep against rand, bootstrap intervals over prompts;
#   3. the same evaluation records with the exact sparse payload topk:K (hlm and uhlm);
#   4. the paper's quality metric: sentence-embedding cosine (all-MiniLM-L6-v2) of every answer
#      to the llm answer and to the Alpaca reference (scripts/sentence_cosine.py);
#   5. the PNG plots (scripts/eval_plots.sh).
# The fit and evaluation records are disjoint by construction (records 0..N_EVAL-1 evaluate,
# the rest calibrate); nothing here reads the evaluation records before step 2.
# usage: scripts/eval_report_smollm2.sh [OUT_DIR]   (default out/results-smollm2, git-ignored;
#        name docs/results-smollm2 to regenerate the committed report data)
# Environment: UHLM_BIN (default build/uhlm), SLM, LLM (model files; default the pair in
# ./models), ALPACA, N (tokens per prompt, default 64), N_EVAL (default 100), THREADS (per model,
# default 1), RISK (default budget: the calibration's stored R), UTH (a fixed u_th instead of RISK), TOPK (default 64), SNR (default
# -10,-5,0,5,10,20,30), WORK (derived files that must not be committed: the fit records, the
# per-token calibration records and the answers with Alpaca's text; default out/report-smollm2),
# SENTENCE_PY and SENTENCE_COSINE_WHEEL (the Python that scores sentence cosine: see
# scripts/sentence_cosine_step.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/results-smollm2}
bin=${UHLM_BIN:-build/uhlm}
slm=${SLM:-smollm2-drafter.gguf}
llm=${LLM:-SmolLM2-135M-Instruct.Q4_1.gguf}
alpaca=${ALPACA:-../shared/data/alpaca-200.jsonl}
n=${N:-64}
n_eval=${N_EVAL:-100}
threads=${THREADS:-1}
risk=${RISK:-budget}
topk=${TOPK:-64}
snr=${SNR:--10,-5,0,5,10,20,30}
work=${WORK:-out/report-smollm2}
[ -x "$bin" ] || { echo "eval_report_smollm2: $bin not found (build first: scripts/build.sh release)" >&2; exit 1; }
[ -f "$alpaca" ] || { echo "eval_report_smollm2: $alpaca not found (set ALPACA)" >&2; exit 1; }
total=$(wc -l <"$alpaca")
[ "$total" -gt "$n_eval" ] || { echo "eval_report_smollm2: $alpaca has $total records, none left to calibrate on after N_EVAL=$n_eval" >&2; exit 1; }
mkdir -p "$out" "$work"
models=(--slm "$slm" --llm "$llm")
t0=$(date +%s)
echo "eval_report_smollm2: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')," \
  "SLM $slm, LLM $llm, -n $n, $n_eval evaluation records, fit records $((n_eval + 1))..$total (1-based lines)" |
  tee "$out/run.txt"
sed -n "$((n_eval + 1)),\$p" "$alpaca" >"$work/alpaca-fit.jsonl"
# UTH overrides the calibrated threshold (and lets the rest run where a fit has no threshold)
if [ -n "${UTH:-}" ]; then
  policy=(--uth "$UTH")
  "$bin" calibrate "${models[@]}" -t "$threads" --prompts "$work/alpaca-fit.jsonl" --split 0.5 -n "$n" \
    -o "$out/calib.json" --csv "$work/calib.csv" | tee "$out/calibrate.txt" || true
else
  policy=(--calib "$out/calib.json" --risk "$risk")
  "$bin" calibrate "${models[@]}" -t "$threads" --prompts "$work/alpaca-fit.jsonl" --split 0.5 -n "$n" \
    -o "$out/calib.json" --csv "$work/calib.csv" | tee "$out/calibrate.txt"
fi
t1=$(date +%s)
/usr/bin/time -f "eval wall %e s, max RSS %M kB" "$bin" eval "${models[@]}" -t "$threads" \
  --prompts "$alpaca" --limit "$n_eval" -n "$n" "${policy[@]}" \
  --snr "$snr" -o "$out" 2> >(tee "$out/eval.log" >&2)
t2=$(date +%s)
mkdir -p "$out/topk"
/usr/bin/time -f "eval wall %e s, max RSS %M kB" "$bin" eval "${models[@]}" -t "$threads" \
  --prompts "$alpaca" --limit "$n_eval" -n "$n" "${policy[@]}" \
  --snr "$snr" --payload "topk:$topk" --modes hlm,uhlm --no-greedy --sweep none \
  -o "$out/topk" 2> >(tee "$out/topk/eval.log" >&2)
t3=$(date +%s)
scripts/sentence_cosine_step.sh "$out" eval_report_smollm2
# the answers quote Alpaca's instructions and reference outputs (CC BY-NC): kept out of the report
for d in "$out" "$out/topk"; do
  [ -f "$d/answers.jsonl" ] && mv "$d/answers.jsonl" "$work/answers-$(basename "$d").jsonl"
done
t4=$(date +%s)
scripts/eval_plots.sh "$out"
t5=$(date +%s)
echo "eval_report_smollm2: calibrate $((t1 - t0)) s, eval $((t2 - t1)) s, topk eval $((t3 - t2)) s," \
  "sentence cosine $((t4 - t3)) s, plots $((t5 - t4)) s, total $((t5 - t0)) s" | tee "$out/timing.txt"
