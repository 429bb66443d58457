#!/usr/bin/env bash
# The CLI's default models (issue 10, item 5): --help names the SmolLM2 pair and the default
# chat prompt; `uhlm run` with no model options, started in the checkout, runs that pair on the
# default user turn (SKIP when the files are not here: scripts/setup.sh fetches them); a missing
# default model is a clear error, not a crash; the TinyStories pair by name still runs, with or
# without -z, and starts from BOS without -p (no chat template); the drafter's SHA-256 check of
# scripts/check_sha256.sh and scripts/demo.sh.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
SLM=smollm2-drafter.gguf LLM=SmolLM2-135M-Instruct.Q4_1.gguf
ASK="Write a haiku about autumn leaves."
TS=(-m stories-slm-0.28M.bin --llm stories-llm-2.76M.bin)

# --help names the defaults
"$bin" run --help >"$tmp/h" 2>&1 || bad "run --help rc"
grep -q "(default $SLM)" "$tmp/h" && grep -q "(default $LLM)" "$tmp/h" && ok \
  || bad "run --help does not show the default pair: $(grep -A2 -e '--slm\|--llm' "$tmp/h")"
tr -s ' \n' ' ' <"$tmp/h" | grep -qF "\"$ASK\"" && ok || bad "run --help does not show the default prompt"
for c in eval calibrate; do
  "$bin" $c --help 2>&1 | grep -q "(default $SLM)" && ok || bad "$c --help: no default SLM"
done
for c in serve generate; do
  "$bin" $c --help 2>&1 | tr -s ' \n' ' ' | grep -qF "(default $LLM)" && ok || bad "$c --help: no default LLM"
done

# the default prompt is not an evaluation prompt (the first 100 Alpaca records)
alpaca=$src/../shared/data/alpaca-200.jsonl
if [ -f "$alpaca" ]; then
  $py - "$alpaca" "$ASK" <<'EOF' && ok || bad "the default prompt is one of the evaluation prompts"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][:100]
assert all(r.get("instruction", "").strip() != sys.argv[2] for r in recs)
EOF
fi

# a missing default model: which file, where it was looked for, what to do; exit 1
mkdir -p "$tmp/empty"
(cd "$tmp/empty" && UHLM_MODELS="$tmp/empty" "$bin" run -n 8 >"$tmp/out" 2>"$tmp/err"); rc=$?
[ "$rc" = 1 ] && ok || bad "missing default SLM: rc $rc"
for want in "$SLM" "not found" "UHLM_MODELS = $tmp/empty" "$tmp/empty/models" "scripts/setup.sh" \
            "-m stories-slm-0.28M.bin --llm stories-llm-2.76M.bin -z tok512.bin"; do
  grep -qF -- "$want" "$tmp/err" && ok || bad "missing-model message lacks '$want': $(cat "$tmp/err")"
done
[ "$(wc -l <"$tmp/err")" = 1 ] && [ ! -s "$tmp/out" ] && ok || bad "missing-model output: $(cat "$tmp/out" "$tmp/err")"
(cd "$tmp/empty" && env -u UHLM_MODELS "$bin" serve --port 0 >"$tmp/out" 2>"$tmp/err"); rc=$?
[ "$rc" = 1 ] && grep -qF "$LLM" "$tmp/err" && grep -qF "(unset)" "$tmp/err" \
  && grep -qF -- "-m stories-llm-2.76M.bin -z tok512.bin" "$tmp/err" && ok \
  || bad "serve without the default LLM: rc $rc: $(cat "$tmp/err")"

# the TinyStories pair by name, from a folder without models/: with -z, and without (the
# default tokenizer of a llama2.c file); without -p it starts from BOS (no chat template)
(cd "$tmp/empty" && "$bin" run "${TS[@]}" -z tok512.bin -p "Once" -n 8 --seed 1 -t 1 >"$tmp/a" 2>"$tmp/err"); rc=$?
[ "$rc" = 0 ] && grep -q "^Once" "$tmp/a" && ok || bad "TinyStories pair with -z: rc $rc: $(cat "$tmp/err")"
(cd "$tmp/empty" && "$bin" run "${TS[@]}" -p "Once" -n 8 --seed 1 -t 1 >"$tmp/b" 2>/dev/null) \
  && cmp -s "$tmp/a" "$tmp/b" && ok || bad "TinyStories pair without -z differs"
(cd "$tmp/empty" && "$bin" run "${TS[@]}" -n 8 --seed 1 -t 1 --json >"$tmp/j" 2>"$tmp/err"); rc=$?
[ "$rc" = 0 ] && ! grep -q "no -p/-f" "$tmp/err" && $py -c '
import json, sys
o = json.load(open(sys.argv[1]))
assert o["prompt"] == "" and "chat_template" not in o and 0 < o["generated_tokens"] <= 8, o' "$tmp/j" \
  && ok || bad "TinyStories pair without -p: rc $rc: $(cat "$tmp/err")"
# one default model with another pair's other half: the mismatch says how to name a pair
if [ -e "$UHLM_MODELS/$LLM" ] || [ -e "$src/models/$LLM" ]; then
  (cd "$src" && "$bin" run -m stories-slm-0.28M.bin -n 1 >/dev/null 2>"$tmp/err"); rc=$?
  [ "$rc" = 1 ] && grep -q "vocabulary mismatch" "$tmp/err" && grep -qF "the LLM is the default $LLM" "$tmp/err" \
    && ok || bad "half-default pair: rc $rc: $(cat "$tmp/err")"
fi

# the drafter's SHA-256 record: scripts/check_sha256.sh, and scripts/demo.sh's use of it (which
# stops before setup and build, so a copy of the two scripts is enough)
mkdir -p "$tmp/demo/scripts" "$tmp/demo/models"
cp "$src/scripts/demo.sh" "$src/scripts/check_sha256.sh" "$tmp/demo/scripts/"
d=$tmp/demo/models/$SLM
printf 'not a model' >"$d"
(cd "$tmp/demo/models" && sha256sum "$SLM" >"$SLM.sha256")
"$src/scripts/check_sha256.sh" "$d" "$d.sha256" >"$tmp/out" 2>&1 && grep -q "sha256 ok" "$tmp/out" && ok \
  || bad "check_sha256 on a matching record: $(cat "$tmp/out")"
cut -d' ' -f1 "$d.sha256" >"$tmp/bare"
"$src/scripts/check_sha256.sh" "$d" "$tmp/bare" >/dev/null 2>&1 && ok || bad "check_sha256 on a bare hash"
printf 'not a model either' >"$d"
bash "$tmp/demo/scripts/demo.sh" >"$tmp/out" 2>&1; rc=$?
[ "$rc" = 1 ] && grep -q "has sha256 .*, but .*$SLM.sha256 says" "$tmp/out" && grep -q -- "--stories" "$tmp/out" \
  && ! grep -q "^setup:" "$tmp/out" && ok || bad "demo.sh with a changed drafter: rc $rc: $(cat "$tmp/out")"
rm "$d.sha256"
bash "$tmp/demo/scripts/demo.sh" >"$tmp/out" 2>&1; rc=$?
[ "$rc" = 1 ] && grep -q "$SLM.sha256 is missing" "$tmp/out" && ok || bad "demo.sh without the record: rc $rc: $(cat "$tmp/out")"
rm "$d"
bash "$tmp/demo/scripts/demo.sh" >"$tmp/out" 2>&1; rc=$?
[ "$rc" = 1 ] && grep -q "models/$SLM is missing" "$tmp/out" && ok || bad "demo.sh without the drafter: rc $rc: $(cat "$tmp/out")"

# the default pair, as `build/uhlm run` in the checkout finds it ($UHLM_MODELS, ./models)
found() { find_model "$1" >/dev/null; }
if found "$SLM" && found "$LLM"; then
  (cd "$src" && "$bin" run -n 8 --seed 1 -t 1 --json >"$tmp/j" 2>"$tmp/err"); rc=$?
  [ "$rc" = 0 ] && grep -qF "no -p/-f: the user turn \"$ASK\"" "$tmp/err" && $py - "$tmp/j" "$ASK" <<'EOF' && ok || bad "default pair run: rc $rc: $(cat "$tmp/err")"
import json, sys
o = json.load(open(sys.argv[1]))
assert o["prompt"] == sys.argv[2] and o["chat_template"] == "chatml", o
assert 0 < o["generated_tokens"] <= 8 and o["mode"] == "uhlm", o
EOF
  # -p without --chat stays plain text, as before
  (cd "$src" && "$bin" run -p "Autumn leaves" -n 4 --seed 1 -t 1 --json >"$tmp/j" 2>"$tmp/err"); rc=$?
  [ "$rc" = 0 ] && ! grep -q "no -p/-f" "$tmp/err" && $py -c '
import json, sys
o = json.load(open(sys.argv[1]))
assert o["prompt"] == "Autumn leaves" and "chat_template" not in o, o' "$tmp/j" && ok || bad "default pair with -p: rc $rc: $(cat "$tmp/err")"
else
  echo "SKIP: the default pair ($SLM, $LLM) is not in \$UHLM_MODELS ($UHLM_MODELS), $src/models or ../shared/models (scripts/setup.sh fetches it): its run is not checked"
fi

finish
