#!/usr/bin/env bash
# Regenerates the reproduction report's data and plots (docs/results.md):
#   1. uhlm calibrate on the held-out TinyStories prompts (fit on one half by id, report on
#      the other), once per uncertainty method;
#   2. uhlm eval of the five modes over data/prompts/stories.jsonl and the SNR grid, with the
#      perturbation u_th sweep against rand;
#   3. a smaller eval comparing the four uncertainty methods by frontier;
#   4. the paper's quality metric: the sentence-embedding cosine of every answer of step 2
#      (answers.jsonl, the sweep's runs included) to the llm answer and to the reference,
#      by scripts/sentence_cosine.py --csv, where the embedding model is installed (else
#      skipped with a note, and the plots show PPL alone);
#   5. the PNG plots (scripts/eval_plots.sh).
# usage: scripts/eval_report.sh [OUT_DIR]   (default out/results, git-ignored, so a trial run
# does not dirty the committed docs/results; name docs/results to regenerate those)
# Environment: UHLM_BIN (default build/uhlm), N (tokens per prompt, default 128), UTH
# (default 0.2), METHODS_LIMIT (prompts for the method comparison, default 52), METHODS_N
# (default 64), HELDOUT (the held-out prompt file), CALIB_CSV (the per-token calibration
# records, default out/calib.csv: about 2 MB, so kept out of docs/ and out of git),
# SENTENCE_PY and SENTENCE_COSINE_WHEEL (the Python that scores sentence cosine: see
# scripts/sentence_cosine_step.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/results}
bin=${UHLM_BIN:-build/uhlm}
n=${N:-128}
uth=${UTH:-0.2}
heldout=${HELDOUT:-../shared/data/tinystories-heldout-prompts.jsonl}
calib_csv=${CALIB_CSV:-out/calib.csv}
# one thread per model, as the committed results were measured (the CLI's default is all CPUs;
# the tokens do not depend on it, the compute time in the throughput does)
threads=${THREADS:-1}
# the TinyStories pair by name (the CLI's defaults are the SmolLM2 pair)
TS=(-m stories-slm-0.28M.bin --llm stories-llm-2.76M.bin)
mkdir -p "$out" "$(dirname "$calib_csv")"
t0=$(date +%s)
"$bin" calibrate "${TS[@]}" -t "$threads" --prompts "$heldout" --split 0.5 -n "$n" -o "$out/calib.json" \
  --csv "$calib_csv" | tee "$out/calibrate.txt"
for m in entropy maxprob margin; do
  "$bin" calibrate "${TS[@]}" -t "$threads" --prompts "$heldout" --split 0.5 -n "$n" --uncertainty "$m" \
    -o "$out/calib-$m.json" >"$out/calibrate-$m.txt" || true # a method may have no usable slope
done
t1=$(date +%s)
/usr/bin/time -f "eval wall %e s, max RSS %M kB" "$bin" eval "${TS[@]}" -t "$threads" --prompts data/prompts/stories.jsonl \
  -n "$n" --uth "$uth" --snr -10,-5,0,5,10,20,30 -o "$out" 2> >(tee "$out/eval.log" >&2)
t2=$(date +%s)
"$bin" eval "${TS[@]}" -t "$threads" --prompts data/prompts/stories.jsonl --limit "${METHODS_LIMIT:-52}" \
  -n "${METHODS_N:-64}" --modes hlm --no-greedy --snr 0 \
  --sweep-methods perturb,entropy,maxprob,margin --sweep 0.1,0.3,0.5,0.7,0.9 -o "$out/methods"
t3=$(date +%s)
scripts/sentence_cosine_step.sh "$out" eval_report
t4=$(date +%s)
scripts/eval_plots.sh "$out"
echo "eval_report: calibrate $((t1 - t0)) s, eval $((t2 - t1)) s, methods $((t3 - t2)) s," \
  "sentence cosine $((t4 - t3)) s" | tee "$out/timing.txt"
