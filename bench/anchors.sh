#!/usr/bin/env bash
# anchors.sh: uhlm against llama.cpp (llama-cpp-python 0.3.36), prompt and generation speed on the
# same SmolLM2 GGUF files, threads and prompt, as interleaved pairs. Takes the bench lock so no
# other timing run shares the CPUs. Arguments go to bench/llamacpp_anchors.py (see its --help);
# JSON Lines are appended to out/anchors.jsonl, the table goes to stdout.
#   bench/anchors.sh [--pairs 5] [--threads 1,2] [--files q4_1,q8_0,q4_k_m]
set -euo pipefail
cd "$(dirname "$0")/.."
# llama.cpp comes from PyPI's llama-cpp-python source distribution, built on this machine into
# out/oracle/venv by scripts/oracle/setup.sh (once, about ten minutes), never into uhlm itself.
py=${UHLM_ORACLE_PYTHON:-out/oracle/venv/bin/python}
if ! "$py" -c 'import llama_cpp' 2>/dev/null; then
  if [ -n "${UHLM_ORACLE_PYTHON:-}" ]; then
    echo "anchors.sh: $py cannot import llama_cpp" >&2
    exit 1
  fi
  scripts/oracle/setup.sh out/oracle
fi
if [ ! -x build/uhlm ]; then
  echo "anchors.sh: build/uhlm not found (scripts/build.sh release)" >&2
  exit 1
fi
exec flock /tmp/uhlm-bench.lock "$py" bench/llamacpp_anchors.py "$@"
