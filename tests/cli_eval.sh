#!/usr/bin/env bash
# CLI behaviour of `uhlm calibrate`, `uhlm eval` and `uhlm embed`: usage errors (exit 2),
# bad input (exit 1, a clear message), a tiny calibrate (with the budget rule read back by
# `uhlm run`) and a tiny eval end to end (3 prompts, two SNRs) whose CSV/JSON/Markdown are
# well formed, the PNG plots drawn from them, and `uhlm eval --server` against a `uhlm serve`
# on a kernel-chosen port giving the in-process tokens (skipped without `uhlm serve`).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
spid=
at_exit '[ -n "$spid" ] && kill "$spid" 2>/dev/null'
# start_server NAME [ARGS...] (sets spid and sport); its array of servers goes unused here
pids=()
. "$(dirname "${BASH_SOURCE[0]}")/serve_helpers.sh"

cat >"$tmp/p.jsonl" <<'J'
{"id": "a", "prompt": "Once upon a time, there was a little dog named Max."}
{"id": "b", "prompt": "Lily and mom went to the park."}
{"id": "c", "prompt": "Tom had a red ball."}
J
printf '[{"instruction": "Tell a story about a cat.", "input": "", "output": "x"},{"instruction": "Continue:", "input": "The sun was hot.", "output": "y"}]' >"$tmp/alpaca.json"
printf '{"id": "a", "prompt": "x"}\n{"id": "b" "prompt": "y"}\n' >"$tmp/broken.jsonl"

# usage and input errors
for c in calibrate eval embed; do
  expect_rc 0 "$bin" $c --help
  grep -q "usage: uhlm $c" "$tmp/out" && ok || bad "$c --help"
  expect_rc 2 "$bin" $c --bogus
done
expect_rc 2 "$bin" calibrate "${TS_PAIR[@]}" -o "$tmp/c.json"
grep -q "required" "$tmp/err" && ok || bad "calibrate names the required options"
expect_rc 2 "$bin" calibrate "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -o "$tmp/c.json" --split 1
expect_rc 2 "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl"
expect_rc 2 "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -o "$tmp/e" --modes slm,fast
expect_rc 2 "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -o "$tmp/e" --snr 1,,2
expect_rc 2 "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -o "$tmp/e" --calib "$tmp/c.json"
expect_rc 2 "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -o "$tmp/e" --sweep-methods vibes
expect_rc 2 "$bin" embed "${TS_LLM[@]}"
expect_rc 1 "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/broken.jsonl" -o "$tmp/e"
grep -q "broken.jsonl: line 2: invalid JSON" "$tmp/err" && ok || bad "malformed prompt file message: $(cat "$tmp/err")"
expect_rc 1 "$bin" calibrate "${TS_PAIR[@]}" --prompts "$tmp/nope.jsonl" -o "$tmp/c.json"
grep -q "nope.jsonl" "$tmp/err" && ok || bad "missing prompt file is named"
expect_rc 1 "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -o "$tmp/e" --calib "$tmp/nope.json" --risk averse
expect_rc 1 "$bin" run "${TS_PAIR[@]}" --calib "$tmp/nope.json" --risk prone -n 2
expect_rc 2 "$bin" run "${TS_PAIR[@]}" --calib "$tmp/nope.json" -n 2
for r in budget:2 budget:x budget: bold; do
  expect_rc 2 "$bin" run "${TS_PAIR[@]}" --calib "$tmp/nope.json" --risk "$r" -n 2
  expect_rc 2 "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -o "$tmp/e" --calib "$tmp/nope.json" --risk "$r"
done
expect_rc 2 "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -o "$tmp/e" --server nocolon
expect_rc 2 "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -o "$tmp/e" --auth-token-file /dev/null
expect_rc 2 "$bin" calibrate "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -o "$tmp/c.json" --budget 1.5

# embed: a text is identical to itself
expect_rc 0 "$bin" embed "${TS_LLM[@]}" --cosine -p "The dog ran." -p "The dog ran." -p "A cat sat."
[ "$(head -1 "$tmp/out")" = "1.000000" ] && ok || bad "embed self-cosine: $(cat "$tmp/out")"
expect_rc 0 "$bin" embed "${TS_LLM[@]}" -p "Hello"
$py -c "import json,sys; v=json.loads(open('$tmp/out').read()); assert len(v)==192" && ok || bad "embed vector"

# calibrate (Alpaca input works too) and run --calib
# (a two-prompt fit may come out flat: exit 1 then, but the file is still written)
"$bin" calibrate "${TS_PAIR[@]}" --prompts "$tmp/alpaca.json" -n 32 --split 0.1 -o "$tmp/ca.json" >/dev/null 2>"$tmp/err"
$py -c "import json; d=json.load(open('$tmp/ca.json')); assert d['split']['train_prompts'] + d['split']['test_prompts'] == 2" && ok || bad "calibrate on Alpaca JSON: $(cat "$tmp/err")"
expect_rc 0 "$bin" calibrate "${TS_PAIR[@]}" --prompts "$src/data/prompts/stories.jsonl" --limit 12 -n 24 -o "$tmp/c.json" --csv "$tmp/c.csv"
$py - "$tmp/c.json" "$tmp/c.csv" <<'PY' && ok || bad "calib.json / csv"
import json, sys, csv
d = json.load(open(sys.argv[1]))
assert d["fit"]["a"] > 0 and 0 <= d["fit"]["r2"] <= 1
t = d["thresholds"]; assert t["risk_prone"] > t["risk_averse"]
assert d["split"]["train_prompts"] + d["split"]["test_prompts"] == 12
assert sum(b["count"] for b in d["bins"]) == d["split"]["train_tokens"]
for k in ("risk_averse", "risk_prone", "budget"):
    for part in ("train", "test"):
        r = d["risk"][k][part]; assert r["predicted_risk"] <= r["predicted_risk_loose"] + 1e-12
        assert r["bound"] == r["predicted_risk"]  # the old name, kept one release
b = d["budget"]; u = t["budget"]
assert b["R"] == 0.02 and b["u_th"] == u and b["confidence"] == 0.95
cu, cb, co = b["curve_u"], b["curve_upper"], b["curve_observed"]
assert len(cu) == len(cb) == len(co) == len(b["curve_predicted"]) > 0
assert cu == sorted(set(cu)) and cb == sorted(cb) and all(x <= y for x, y in zip(co, cb))
assert u in cu or u in (-1, 1)
# the rule's promise on its own tokens: observed share <= its upper limit <= R
assert d["risk"]["budget"]["train"]["observed_reject"] <= b["R"] + 1e-12
nxt = [x for x, y in zip(cu, cb) if x > u]
assert not nxt or cb[cu.index(nxt[0])] > b["R"]  # and it is the largest such knot
rows = list(csv.DictReader(open(sys.argv[2])))
assert len(rows) == d["split"]["train_tokens"] + d["split"]["test_tokens"]
assert all(0 <= float(r["u"]) <= 1 and 0 <= float(r["beta"]) <= 1 for r in rows)
PY
expect_rc 0 "$bin" run "${TS_PAIR[@]}" --calib "$tmp/c.json" --risk prone -p "Once" -n 4 --json
$py -c "import json; a=json.load(open('$tmp/c.json'))['thresholds']['risk_prone']; b=json.load(open('$tmp/out'))['u_th']; assert abs(a-b)<1e-12" && ok || bad "run --calib sets u_th"
for r in budget budget:0.02; do
  expect_rc 0 "$bin" run "${TS_PAIR[@]}" --calib "$tmp/c.json" --risk $r -p "Once" -n 4 --json
  $py -c "import json; a=json.load(open('$tmp/c.json'))['thresholds']['budget']; b=json.load(open('$tmp/out'))['u_th']; assert a == b" && ok || bad "run --risk $r sets u_th"
done
expect_rc 0 "$bin" run "${TS_PAIR[@]}" --calib "$tmp/c.json" --risk budget:1 -p "Once" -n 4 --json
$py -c "import json; assert json.load(open('$tmp/out'))['u_th'] == 1" && ok || bad "budget:1 skips everything"

# a tiny eval end to end
expect_rc 0 "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -n 12 --snr 0,20 --sweep 0.5 --uth 0.3 -o "$tmp/e"
for f in results.csv results.json summary.md sweep.csv methods.csv bins.csv per_prompt.csv; do
  [ -s "$tmp/e/$f" ] && ok || bad "eval output $f missing"
done
$py - "$tmp/e" <<'PY' && ok || bad "eval outputs well formed"
import json, sys, csv
d = sys.argv[1]
rows = list(csv.DictReader(open(d + "/results.csv")))
assert len(rows) == 5 * 2, len(rows)
assert {r["mode"] for r in rows} == {"slm", "llm", "hlm", "rand", "uhlm"}
assert {float(r["snr_db"]) for r in rows} == {0.0, 20.0}
by = {(r["mode"], float(r["snr_db"])): r for r in rows}
for m in ("slm", "llm", "hlm", "rand", "uhlm"):
    lo, hi = float(by[(m, 0.0)]["throughput_tok_s"]), float(by[(m, 20.0)]["throughput_tok_s"])
    assert lo > 0 and hi >= lo, (m, lo, hi)
assert float(by[("hlm", 0.0)]["tr"]) == 1.0 and float(by[("slm", 0.0)]["tr"]) == 0.0
assert float(by[("hlm", 0.0)]["exact_match"]) == 1.0  # greedy hlm == greedy llm
assert float(by[("llm", 0.0)]["exact_match"]) == 1.0
assert 0 <= float(by[("uhlm", 0.0)]["tr"]) <= 1
j = json.load(open(d + "/results.json"))
assert j["config"]["n_prompts"] == 3 and len(j["results"]) == 10
assert len(j["sweep"]) == 2 and j["sweep"][0]["kind"] == "uhlm" and j["sweep"][1]["kind"] == "rand"
assert abs(j["sweep"][0]["skip_rate"] - j["sweep"][1]["skip_rate"]) < 0.35
assert j["methods"][0]["method"] == "perturb"
md = open(d + "/summary.md").read()
assert "| uhlm |" in md and "| hlm |" in md and "dB |" in md
pp = list(csv.DictReader(open(d + "/per_prompt.csv")))
assert sum(1 for r in pp if r["run"] == "hlm") == 3
# the hidden-state cosine is opt-in (--hidden-cosine): not measured by default
assert all(r["cos_sim"] == "nan" for r in rows), [r["cos_sim"] for r in rows]
PY
# with --hidden-cosine it is measured for every mode but llm's reference
expect_rc 0 "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -n 8 --snr 0 --sweep none --no-greedy --modes slm,hlm,llm --hidden-cosine -o "$tmp/eh"
$py - "$tmp/eh" <<'PY' && ok || bad "eval --hidden-cosine measures the cosine"
import csv, math, sys
rows = {r["mode"]: r for r in csv.DictReader(open(sys.argv[1] + "/results.csv"))}
for m in ("slm", "hlm", "llm"):
    v = float(rows[m]["cos_sim"])
    assert math.isfinite(v) and -1 <= v <= 1.000001, (m, v)
PY

# --seeds K: every run K times, per_prompt.csv gains the repetition, intervals.csv the
# bootstrap intervals; answers.jsonl the text of each run
expect_rc 2 "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" -o "$tmp/ek" --seeds 0
expect_rc 0 "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p.jsonl" --limit 2 -n 6 --snr 0 --sweep none --no-greedy --seeds 2 -o "$tmp/ek"
$py - "$tmp/ek" "$tmp/e" <<'PY' && ok || bad "eval --seeds outputs"
import csv, json, sys
d, one = sys.argv[1], sys.argv[2]
pp = list(csv.DictReader(open(d + "/per_prompt.csv")))
assert sorted({r["rep"] for r in pp}) == ["0", "1"] and sum(r["run"] == "uhlm" for r in pp) == 4
assert "rep" not in open(one + "/per_prompt.csv").readline()  # one seed: the old columns
iv = list(csv.DictReader(open(d + "/intervals.csv")))
hlm_tr = [r for r in iv if r["mode"] == "hlm" and r["metric"] == "tr"]
assert len(hlm_tr) == 1 and float(hlm_tr[0]["lo"]) == 1.0 and hlm_tr[0]["unit"] == "prompts"
tp = [r for r in iv if r["mode"] == "uhlm" and r["metric"] == "throughput_tok_s"]
assert len(tp) == 1 and float(tp[0]["lo"]) <= float(tp[0]["hi"])
ans = [json.loads(l) for l in open(d + "/answers.jsonl")]
assert len(ans) == len(pp) and all(isinstance(a["text"], str) for a in ans)
assert json.load(open(d + "/results.json"))["config"]["seeds"] == 2
PY

# plots
if command -v gnuplot >/dev/null; then
  bash "$src/scripts/eval_plots.sh" "$tmp/e" 2>"$tmp/err" && ok || bad "eval_plots: $(cat "$tmp/err")"
  for p in u_vs_rejection throughput_snr sweep_uth frontier; do
    head -c 8 "$tmp/e/$p.png" 2>/dev/null | od -An -tx1 | tr -d ' \n' | grep -q '^89504e470d0a1a0a$' && ok || bad "$p.png is not a PNG"
  done
  bash "$src/scripts/eval_plots.sh" "$tmp/nodir" 2>/dev/null && bad "plots of a missing folder" || ok
else
  echo "gnuplot missing: plot checks skipped" >&2
fi

# --server: a 2-prompt eval against `uhlm serve` gives the in-process tokens. per_prompt.csv
# holds only token-level results (counts, uplink bytes, quality from the local LLM), so it
# must match byte for byte; results.csv's token-level columns too (not times, and not
# llm_calls: the server may reuse a cached prompt prefix across sessions).
if "$bin" serve --help >/dev/null 2>&1; then
  head -2 "$tmp/p.jsonl" >"$tmp/p2.jsonl"
  if start_server serve --port 0; then
    port=$sport
    args=(eval "${TS_PAIR[@]}" --prompts "$tmp/p2.jsonl" -n 12 --snr 0,20 --sweep 0.5 --uth 0.3)
    expect_rc 0 "$bin" "${args[@]}" -o "$tmp/ei"
    expect_rc 0 "$bin" "${args[@]}" -o "$tmp/er" --server "127.0.0.1:$port"
    cmp -s "$tmp/ei/per_prompt.csv" "$tmp/er/per_prompt.csv" && ok || bad "eval --server per_prompt.csv differs: $(diff "$tmp/ei/per_prompt.csv" "$tmp/er/per_prompt.csv" | head -5)"
    $py - "$tmp/ei" "$tmp/er" <<'PY' && ok || bad "eval --server results differ from in-process"
import csv, json, sys
a, b = (list(csv.DictReader(open(d + "/results.csv"))) for d in sys.argv[1:3])
assert len(a) == len(b) == 10
keys = ("mode", "snr_db", "generated", "tr", "tsr", "rejection_rate", "uplink_bytes",
        "catchup_tokens", "skip_prob", "cos_sim", "nll", "exact_match", "prefix_match")
for x, y in zip(a, b):
    for k in keys:
        assert x[k] == y[k], (x["mode"], k, x[k], y[k])
j = json.load(open(sys.argv[2] + "/results.json"))
assert j["config"]["server"].startswith("127.0.0.1:")
PY
    kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; spid=
    # the server is gone now: eval refuses rather than measuring the SLM alone
    expect_rc 1 "$bin" eval "${TS_PAIR[@]}" --prompts "$tmp/p2.jsonl" -n 4 --snr 0 -o "$tmp/eg" --server "127.0.0.1:$port" --connect-timeout 1
    grep -q "cannot reach the server" "$tmp/err" && ok || bad "unreachable server message: $(cat "$tmp/err")"
  fi
else
  echo "SKIP: this build has no 'uhlm serve': eval --server checks skipped" >&2
fi

finish cli_eval
