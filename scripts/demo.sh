#!/usr/bin/env bash
# The demo: builds uhlm and runs one hybrid U-HLM generation with the default pair in
# ../shared/models (device SLM stories-slm-0.28M, server LLM stories-llm-2.76M, in one process
# with an accounted 10 dB wireless link). Extra arguments go to `uhlm run`. Before it, when
# scripts/setup.sh has fetched it, one greedy chat answer from SmolLM2-135M-Instruct (Q4_1 GGUF).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release
export UHLM_MODELS=${UHLM_MODELS:-$(cd .. && pwd)/shared/models}
if [ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
  echo "== SmolLM2-135M-Instruct (Q4_1 GGUF), --chat, greedy" >&2
  build/uhlm generate -m models/SmolLM2-135M-Instruct.Q4_1.gguf --chat \
    -p "Give three tips for staying healthy." --temp 0
fi
echo "== hybrid U-HLM run: device SLM stories-slm-0.28M, server LLM stories-llm-2.76M" >&2
exec build/uhlm run -p "Once upon a time" -n 120 --mode uhlm --seed 7 "$@"
