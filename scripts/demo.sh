#!/usr/bin/env bash
# The demo: builds uhlm and runs one hybrid U-HLM generation with the default pair in
# ../shared/models (device SLM stories-slm-0.28M, server LLM stories-llm-2.76M, in one process
# with an accounted 10 dB wireless link). Extra arguments go to `uhlm run`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release
export UHLM_MODELS=${UHLM_MODELS:-$(cd .. && pwd)/shared/models}
echo "== hybrid U-HLM run: device SLM stories-slm-0.28M, server LLM stories-llm-2.76M" >&2
exec build/uhlm run -p "Once upon a time" -n 120 --mode uhlm --seed 7 "$@"
