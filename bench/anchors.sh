#!/usr/bin/env bash
# anchors.sh: uhlm against its two anchors, as interleaved pairs of fresh processes under the
# bench lock (so no other timing run shares the CPUs):
#   bench/anchors.sh [llamacpp] [ARGS]   llama.cpp (llama-cpp-python 0.3.36), prompt and
#       generation speed on the same GGUF files (bench/llamacpp_anchors.py --help: SmolLM2 by
#       default, --models for any GGUF, e.g. `uhlm convert --random-shape 110M` output);
#       JSON Lines appended to out/anchors.jsonl, the table on stdout.
#   bench/anchors.sh llama2c [ARGS]      llama2.c's run.c, greedy generation on the same
#       llama2.c checkpoints (bench/llama2c_anchor.py --help; run.c is not shipped: give its
#       path with --runc or UHLM_LLAMA2C_RUN_C, or the anchor is skipped with a message);
#       JSON Lines appended to out/anchors-llama2c.jsonl.
#   bench/anchors.sh all                 both, with their defaults.
# Each anchor is compiled or installed by these scripts only, never by the build or the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
what=llamacpp
case "${1:-}" in
  llamacpp|llama2c|all) what=$1; shift ;;
esac
if [ ! -x build/uhlm ]; then
  echo "anchors.sh: build/uhlm not found (scripts/build.sh release)" >&2
  exit 1
fi
# llama.cpp comes from PyPI's llama-cpp-python source distribution, built on this machine into
# out/oracle/venv by scripts/oracle/setup.sh (once, about ten minutes), never into uhlm itself.
# The llama2.c driver needs numpy from the same venv (to write its random checkpoints).
py=${UHLM_ORACLE_PYTHON:-out/oracle/venv/bin/python}
if ! "$py" -c 'import llama_cpp, numpy' 2>/dev/null; then
  if [ -n "${UHLM_ORACLE_PYTHON:-}" ]; then
    echo "anchors.sh: $py cannot import llama_cpp and numpy" >&2
    exit 1
  fi
  scripts/oracle/setup.sh out/oracle
fi
echo "anchors.sh: $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
rc=0
if [ "$what" = llamacpp ] || [ "$what" = all ]; then
  flock /tmp/uhlm-bench.lock "$py" bench/llamacpp_anchors.py "$@" || rc=$?
fi
if [ "$what" = llama2c ] || [ "$what" = all ]; then
  flock /tmp/uhlm-bench.lock "$py" bench/llama2c_anchor.py "$@" || rc=$?
fi
exit $rc
