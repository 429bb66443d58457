#!/usr/bin/env bash
# The demo: builds uhlm and runs one hybrid U-HLM generation with the default pair, answering
# one chat instruction: device SLM models/smollm2-drafter.gguf (the drafter train/ makes for
# SmolLM2, committed with its SHA-256 in models/smollm2-drafter.gguf.sha256, checked first),
# server LLM models/SmolLM2-135M-Instruct.Q4_1.gguf (fetched by scripts/setup.sh), in one process
# with an accounted 10 dB wireless link. Extra arguments go to `uhlm run` (e.g. -p "TEXT").
#   scripts/demo.sh --stories [ARGS]   the TinyStories pair from ../shared/models instead
#                                      (stories-slm-0.28M, stories-llm-2.76M: a story)
set -euo pipefail
cd "$(dirname "$0")/.."
stories=0
if [ "${1:-}" = --stories ]; then stories=1; shift; fi
drafter=models/smollm2-drafter.gguf llm=models/SmolLM2-135M-Instruct.Q4_1.gguf
fail() { echo "demo: $*; scripts/demo.sh --stories runs the TinyStories pair instead" >&2; exit 1; }
if [ "$stories" = 0 ]; then
  [ -f "$drafter" ] || fail "$drafter is missing (it is committed with the repository; train/ rebuilds it)"
  why=$(scripts/check_sha256.sh "$drafter" "$drafter.sha256" 2>&1) || fail "$why"
fi
scripts/setup.sh
scripts/build.sh release
if [ "$stories" = 1 ]; then
  export UHLM_MODELS=${UHLM_MODELS:-$(cd .. && pwd)/shared/models}
  echo "== hybrid U-HLM run: device SLM stories-slm-0.28M, server LLM stories-llm-2.76M" >&2
  exec build/uhlm run -m stories-slm-0.28M.bin --llm stories-llm-2.76M.bin -z tok512.bin \
    -p "Once upon a time" -n 120 --mode uhlm --seed 7 "$@"
fi
[ -f "$llm" ] || fail "$llm is missing (scripts/setup.sh fetches it)"
echo "== hybrid U-HLM run: device SLM smollm2-drafter (sha256 ok), server LLM" \
  "SmolLM2-135M-Instruct (Q4_1), one chat turn" >&2
# Temperature 0.7 and top-p 0.9 (llama.cpp's defaults are 0.8 and 0.95): SmolLM2-135M sampled at
# temperature 1 wanders off within a sentence, and hybrid decoding is exact for any sampler, so
# the answer reads as the LLM's own would. u_th is the 2% risk budget calibrated on Alpaca
# (docs/results.md; that calibration ran at temperature 1, so here it is a threshold, not a promise).
exec build/uhlm run -m "$drafter" --llm "$llm" --chat -n 120 --mode uhlm --seed 7 --temp 0.7 --top-p 0.9 \
  --calib docs/results-smollm2/calib.json --risk budget "$@"
