#!/usr/bin/env bash
# `uhlm convert --output-tokens FILE`: a drafter whose classifier scores only the listed tokens.
# The written file says so (`info`), generates only listed tokens, runs hybrid against the full
# LLM, and a Q8_0 conversion keeps the list; bad lists are refused with the line and the reason,
# and no file is written.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
P="Once upon a time"

# every token but the multiples of 4 above 13 (so the usual text tokens are partly missing)
{ echo "# draft vocabulary for the test"; for i in $(seq 0 511); do
    if [ "$i" -le 13 ] || [ $((i % 4)) != 0 ]; then echo "$i"; fi; done; } | sort -R --random-source=/dev/zero >"$tmp/ids"
n_ids=$(grep -vc '^#' "$tmp/ids")
"$bin" convert -m stories-slm-0.28M.bin -z tok512.bin --output-tokens "$tmp/ids" -o "$tmp/d.gguf" 2>"$tmp/err"
rc=$?
[ "$rc" = 0 ] && ok || bad "convert rc $rc: $(cat "$tmp/err")"
grep -q "keeps $n_ids of 512 tokens" "$tmp/err" && ok || bad "convert summary: $(cat "$tmp/err")"
"$bin" info -m "$tmp/d.gguf" --json >"$tmp/info" 2>/dev/null
grep -q "\"output_tokens\":$n_ids" "$tmp/info" && ok || bad "info --json: $(head -c 300 "$tmp/info")"
"$bin" info -m "$tmp/d.gguf" | grep -q "scores $n_ids of 512 tokens" && ok || bad "info text"

# sampled text uses listed tokens only
"$bin" generate -m "$tmp/d.gguf" -p "$P" -n 64 --seed 7 --json >"$tmp/g" 2>"$tmp/err" || bad "generate: $(cat "$tmp/err")"
python3 - "$tmp/g" <<'PY' && ok || bad "generated a token outside the draft vocabulary"
import json, sys
d = json.load(open(sys.argv[1]))
toks = d.get("generated_ids") or d.get("tokens") or d.get("token_ids")
assert toks, list(d)
bad = [t for t in toks if t > 13 and t % 4 == 0]
sys.exit(1 if bad else 0)
PY

# hybrid with the full LLM; q8_0 keeps the list
"$bin" run -m "$tmp/d.gguf" --llm stories-llm-2.76M.bin -z tok512.bin -p "$P" -n 32 --seed 1 --mode hlm >"$tmp/r" 2>"$tmp/err"
rc=$?
[ "$rc" = 0 ] && ok || bad "run hlm rc $rc: $(cat "$tmp/err")"
"$bin" convert -m "$tmp/d.gguf" --type q8_0 -o "$tmp/d8.gguf" 2>"$tmp/err" || bad "convert q8_0: $(cat "$tmp/err")"
"$bin" info -m "$tmp/d8.gguf" | grep -q "scores $n_ids of 512 tokens" && ok || bad "q8_0 keeps the list"

# refusals: each names the problem, exits 1, writes nothing
refuse() { # content expected-message
  printf "$1" >"$tmp/badids"
  "$bin" convert -m stories-slm-0.28M.bin -z tok512.bin --output-tokens "$tmp/badids" -o "$tmp/x.gguf" 2>"$tmp/err"
  rc=$?
  [ "$rc" = 1 ] && grep -q -- "$2" "$tmp/err" && [ ! -e "$tmp/x.gguf" ] && ok ||
    bad "refuse '$1': rc $rc, $(cat "$tmp/err")"
}
refuse '1 2 x\n' "line 1: 'x' is not a token id in \[0, 512)"
refuse '1\n2\n512\n' "line 3: '512' is not a token id"
refuse '1 -3\n' "'-3' is not a token id"
refuse '7 1 7\n' "lists token 7 twice"
refuse '# nothing\n\n' "lists no token ids"
refuse '99999999999999999999999999999999999\n' "too long"
"$bin" convert -m stories-slm-0.28M.bin -z tok512.bin --output-tokens "$tmp/none" -o "$tmp/x.gguf" 2>"$tmp/err"
[ $? = 1 ] && grep -q "cannot open --output-tokens" "$tmp/err" && ok || bad "missing file: $(cat "$tmp/err")"
"$bin" convert --random-shape 15M -z tok512.bin --vocab 512 --output-tokens "$tmp/ids" -o "$tmp/x.gguf" 2>"$tmp/err"
[ $? = 2 ] && grep -q "applies to -m MODEL" "$tmp/err" && ok || bad "random shape: $(cat "$tmp/err")"

finish cli_draft_vocab
