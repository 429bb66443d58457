#!/usr/bin/env bash
# The demo: builds uhlm and generates a story with the default models in ../shared/models.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release
export UHLM_MODELS=${UHLM_MODELS:-$(cd .. && pwd)/shared/models}
if build/uhlm run --help >/dev/null 2>&1; then
  echo "== hybrid U-HLM run: device SLM stories-slm-0.28M, server LLM stories-llm-2.76M" >&2
  build/uhlm run -p "Once upon a time" -n 120 --mode uhlm --seed 7 "$@"
else
  build/uhlm generate -m stories-llm-2.76M.bin -z tok512.bin -p "Once upon a time" -n 120 --seed 7 "$@"
fi
