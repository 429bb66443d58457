#!/usr/bin/env bash
# `uhlm run --listen`, the OpenAI-compatible endpoint (docs/openai.md), driven with curl:
# completions and chat completions, streamed and not, give `uhlm run`'s text for the same
# prompt, seed and sampling, and usage numbers equal to `run --json`'s statistics; stop
# sequences cut the text (also while streaming); /health and /v1/models; every error (400 bad
# JSON, bad types and ranges, n > 1, no chat template, prompt over the context; 404, 405, 413,
# 503 busy and shutting down, 502 when the verification server is gone under
# --require-server); a client that leaves mid-stream stops its generation; SIGTERM ends the
# listener with exit 0; the remote verifier (`uhlm serve` + `run --listen --server`) gives the
# in-process text. With SmolLM2-135M-Instruct (models/, fetched by scripts/setup.sh) also chat
# through its ChatML template, and the `openai` Python package (out/pyenv, made by
# scripts/setup.sh) as a real client (tests/openai_client.py). Skips what it lacks.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
if ! command -v curl >/dev/null; then
  echo "SKIP: curl is not installed"; exit 0
fi
for f in stories-slm-0.28M.bin stories-llm-2.76M.bin tok512.bin; do
  if [ ! -f "$UHLM_MODELS/$f" ]; then echo "SKIP: $UHLM_MODELS/$f not found"; exit 0; fi
done
pids=()
at_exit 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done'

# start NAME ARGS...: `uhlm run --listen 0` in the background; sets lpid and base
start() {
  local name=$1; shift
  rm -f "$tmp/$name.port"
  "$bin" run "${TS_PAIR[@]}" -t 1 --listen 0 --port-file "$tmp/$name.port" "$@" 2>"$tmp/$name.log" &
  lpid=$!
  pids+=("$lpid")
  for _ in $(seq 1 300); do
    [ -s "$tmp/$name.port" ] && break
    kill -0 "$lpid" 2>/dev/null || break
    sleep 0.05
  done
  base=http://127.0.0.1:$(cat "$tmp/$name.port" 2>/dev/null)
  [ -s "$tmp/$name.port" ] || { bad "listener $name did not start: $(cat "$tmp/$name.log")"; return 1; }
}
# req METHOD PATH [CURL ARGS...]: the body in $tmp/out, the status in $code
req() {
  local m=$1 p=$2; shift 2
  code=$(curl -s -o "$tmp/out" -w '%{http_code}' -X "$m" "$base$p" "$@")
}
post() { req POST "$1" -H 'Content-Type: application/json' --data-binary "$2"; }
# expect_error STATUS CODE-OR-PARAM PATH JSON: an error in OpenAI's shape
expect_error() {
  local want=$1 what=$2 path=$3 body=$4
  post "$path" "$body"
  [ "$code" = "$want" ] || { bad "$path $body: status $code, want $want: $(head -c 300 "$tmp/out")"; return; }
  $py - "$tmp/out" "$what" <<'EOF' && ok || bad "$path $body: not an OpenAI error naming $what: $(head -c 300 "$tmp/out")"
import json, sys
e = json.load(open(sys.argv[1]))["error"]
assert isinstance(e["message"], str) and e["message"] and e["type"], e
assert sys.argv[2] in (e["code"], e["param"]), e
EOF
}
# stream_text FILE: the concatenated deltas of an event stream, checked for its shape
stream_text() {
  $py - "$1" <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().split("\n\n")
assert lines[-1] == "" and lines[-2] == "data: [DONE]", lines[-3:]
events = [json.loads(l[len("data: "):]) for l in lines[:-2]]
text, finish = "", None
for e in events:
    for c in e["choices"]:
        assert finish is None, "a choice after the finish"
        text += c["delta"].get("content") or "" if "delta" in c else c["text"]
        finish = c["finish_reason"]
assert finish in ("stop", "length"), finish
fin = [e for e in events if e["choices"] and e["choices"][0]["finish_reason"]][0]
assert "uhlm" in fin and fin["uhlm"]["generated_tokens"] >= 1, fin
assert len({e["id"] for e in events}) == 1
print(json.dumps({"text": text, "finish": finish, "uhlm": fin["uhlm"],
                  "usage": events[-1].get("usage"), "first": events[0]}))
EOF
}
# same_as_run API.json RUN.json: text and statistics agree
same_as_run() {
  $py - "$1" "$2" <<'EOF'
import json, sys
a, r = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
c = a["choices"][0]
text = c["message"]["content"] if "message" in c else c["text"]
assert text == r["text"], (text, r["text"])
u = a["usage"]
assert u["prompt_tokens"] == r["prompt_tokens"], (u, r["prompt_tokens"])
assert u["completion_tokens"] == r["generated_tokens"], (u, r["generated_tokens"])
assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
for k in ("generated_tokens", "transmitted_tokens", "skipped_tokens", "unverified_tokens",
          "catchup_tokens", "accepted", "rejected", "uplink_bits", "uplink_bytes", "downlink_bits"):
    assert u["uhlm"][k] == r[k], (k, u["uhlm"][k], r[k])
assert c["finish_reason"] == ("stop" if r["stop"] == "eos" else "length"), (c, r["stop"])
EOF
}

P="Once upon a time, there was a little girl"

# ---- usage errors of the command line
"$bin" run "${TS_PAIR[@]}" --listen 0 -p hi >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" = 2 ] && grep -q -- "--listen takes its prompts over HTTP" "$tmp/err" && ok || bad "--listen with -p: rc $rc $(cat "$tmp/err")"
"$bin" run "${TS_PAIR[@]}" --port-file "$tmp/x" -n 1 >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" = 2 ] && ok || bad "--port-file without --listen: rc $rc"
"$bin" run "${TS_PAIR[@]}" --listen 70000 >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" = 2 ] && grep -q "invalid value for --listen" "$tmp/err" && ok || bad "--listen 70000: rc $rc $(cat "$tmp/err")"

# ---- the TinyStories pair, in process
start tiny -t 2 || exit 1  # (-t 2: the pools' threads must leave SIGTERM to the listener)
req GET /health
[ "$code" = 200 ] && ok || bad "/health: $code"
jcheck "$tmp/out" 'd["status"] == "ok"'
req GET /v1/models
jcheck "$tmp/out" 'd["object"] == "list" and d["data"][0]["id"] == "stories-slm-0.28M.bin"'

"$bin" run "${TS_PAIR[@]}" -p "$P" -n 40 -s 7 --temp 0.8 -t 1 --json >"$tmp/run.json" 2>/dev/null || bad "run"
post /v1/completions "{\"prompt\": \"$P\", \"max_tokens\": 40, \"seed\": 7, \"temperature\": 0.8, \"model\": \"echo-me\", \"frobnicate\": [1]}"
cp "$tmp/out" "$tmp/api.json"
[ "$code" = 200 ] && ok || bad "completions: $code $(head -c 300 "$tmp/out")"
same_as_run "$tmp/api.json" "$tmp/run.json" && ok || bad "completions differ from uhlm run"
jcheck "$tmp/api.json" 'd["object"] == "text_completion" and d["model"] == "echo-me" and d["id"].startswith("cmpl-")'

# streamed: the same text, [DONE], the stats in the final event and the usage event
post /v1/completions "{\"prompt\": \"$P\", \"max_tokens\": 40, \"seed\": 7, \"temperature\": 0.8, \"stream\": true, \"stream_options\": {\"include_usage\": true}}"
[ "$code" = 200 ] && ok || bad "stream: $code"
if stream_text "$tmp/out" >"$tmp/s.json"; then
  $py - "$tmp/s.json" "$tmp/api.json" <<'EOF' && ok || bad "stream differs from the non-streamed answer"
import json, sys
s, a = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert s["text"] == a["choices"][0]["text"], (s["text"], a["choices"][0]["text"])
assert s["finish"] == a["choices"][0]["finish_reason"]
for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
    assert s["usage"][k] == a["usage"][k], k
for k in ("transmitted_tokens", "skipped_tokens", "unverified_tokens", "uplink_bits"):
    assert s["uhlm"][k] == a["usage"]["uhlm"][k] == s["usage"]["uhlm"][k], k
EOF
else bad "stream shape: $(head -c 600 "$tmp/out")"; fi

# greedy, and a prompt of the list form
"$bin" run "${TS_PAIR[@]}" -p "$P" -n 30 --temp 0 -t 1 --json >"$tmp/run0.json" 2>/dev/null
post /v1/completions "{\"prompt\": [\"$P\"], \"max_tokens\": 30, \"temperature\": 0}"
same_as_run "$tmp/out" "$tmp/run0.json" && ok || bad "greedy completions differ from uhlm run"

# stop sequences: the text ends before the first one, streamed or not
stop=$($py -c "import json; t=json.load(open('$tmp/api.json'))['choices'][0]['text']; print(t.split()[3])")
post /v1/completions "{\"prompt\": \"$P\", \"max_tokens\": 40, \"seed\": 7, \"temperature\": 0.8, \"stop\": [\"zzz\", \"$stop\"]}"
cp "$tmp/out" "$tmp/stop.json"
$py - "$tmp/stop.json" "$tmp/api.json" "$stop" <<'EOF' && ok || bad "stop sequence: $(head -c 400 "$tmp/stop.json")"
import json, sys
s, a, stop = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
full = a["choices"][0]["text"]
assert s["choices"][0]["text"] == full[:full.index(stop)], (s["choices"][0]["text"], stop)
assert s["choices"][0]["finish_reason"] == "stop"
assert s["usage"]["completion_tokens"] < a["usage"]["completion_tokens"]
EOF
post /v1/completions "{\"prompt\": \"$P\", \"max_tokens\": 40, \"seed\": 7, \"temperature\": 0.8, \"stop\": \"$stop\", \"stream\": true}"
stream_text "$tmp/out" >"$tmp/ss.json" && jcheck "$tmp/ss.json" "d['text'] == json.load(open('$tmp/stop.json'))['choices'][0]['text'] and d['finish'] == 'stop'" || bad "streamed stop: $(head -c 300 "$tmp/out")"

# four clients at once: they queue for the one model, and each answer is its own run's
cpids=()
for i in 1 2 3 4; do
  curl -s "$base/v1/completions" -d "{\"prompt\": \"Once upon a time $i\", \"max_tokens\": 24, \"seed\": $i}" >"$tmp/par$i.json" &
  cpids+=($!)
done
wait "${cpids[@]}"
for i in 1 2 3 4; do
  "$bin" run "${TS_PAIR[@]}" -p "Once upon a time $i" -n 24 -s $i -t 1 --json >"$tmp/parrun$i.json" 2>/dev/null
  same_as_run "$tmp/par$i.json" "$tmp/parrun$i.json" && ok || bad "parallel request $i differs from its run: $(head -c 300 "$tmp/par$i.json")"
done
# a stop sequence across two tokens ("X Y" around a space: SentencePiece pieces start with
# the space) is held back while it could still match, so no part of it is ever streamed
stop2=$($py -c "import json; t=json.load(open('$tmp/api.json'))['choices'][0]['text']; k=[i for i, ch in enumerate(t) if ch == ' '][4]; print(t[k-1:k+2])")
post /v1/completions "{\"prompt\": \"$P\", \"max_tokens\": 40, \"seed\": 7, \"temperature\": 0.8, \"stop\": \"$stop2\", \"stream\": true}"
if stream_text "$tmp/out" >"$tmp/ss2.json"; then
  $py - "$tmp/ss2.json" "$tmp/api.json" "$stop2" <<'EOF' && ok || bad "stop across tokens ('$stop2'): $(head -c 300 "$tmp/ss2.json")"
import json, sys
s, a, stop = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
full = a["choices"][0]["text"]
assert s["text"] == full[:full.index(stop)] and s["finish"] == "stop", (s["text"], stop)
EOF
else bad "streamed stop across tokens: $(head -c 300 "$tmp/out")"; fi

# errors, in OpenAI's shape
expect_error 400 invalid_json /v1/completions '{"prompt": "a",'
expect_error 400 invalid_json /v1/completions '[1, 2]'
expect_error 400 temperature /v1/completions '{"prompt": "a", "temperature": "hot"}'
expect_error 400 temperature /v1/completions '{"prompt": "a", "temperature": 3}'
expect_error 400 top_p /v1/completions '{"prompt": "a", "top_p": 0}'
expect_error 400 max_tokens /v1/completions '{"prompt": "a", "max_tokens": 0}'
expect_error 400 max_tokens /v1/completions '{"prompt": "a", "max_tokens": 2.5}'
expect_error 400 seed /v1/completions '{"prompt": "a", "seed": -1}'
expect_error 400 n /v1/completions '{"prompt": "a", "n": 2}'
expect_error 400 stop /v1/completions '{"prompt": "a", "stop": 5}'
expect_error 400 stop /v1/completions '{"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}'
expect_error 400 stream /v1/completions '{"prompt": "a", "stream": "yes"}'
expect_error 400 prompt /v1/completions '{"max_tokens": 3}'
expect_error 400 prompt /v1/completions '{"prompt": 42}'
expect_error 400 model /v1/completions '{"prompt": "a", "model": 1}'
expect_error 400 no_chat_template /v1/chat/completions '{"messages": [{"role": "user", "content": "hi"}]}'
expect_error 400 messages /v1/chat/completions '{"messages": "hi"}'
long=$($py -c "print(' '.join(['little'] * 400))")
expect_error 400 context_length_exceeded /v1/completions "{\"prompt\": \"$long\"}"
req GET /v1/nothing
[ "$code" = 404 ] && jcheck "$tmp/out" 'd["error"]["code"] == "not_found"' || bad "404: $code"
req GET /v1/completions
[ "$code" = 405 ] && ok || bad "GET /v1/completions: $code"
req POST /health -d '{}'
[ "$code" = 405 ] && ok || bad "POST /health: $code"
head -c $((1100 * 1024)) /dev/zero | tr '\0' ' ' >"$tmp/big"
req POST /v1/completions --data-binary @"$tmp/big"
[ "$code" = 413 ] && jcheck "$tmp/out" 'd["error"]["code"] == "request_too_large"' || bad "413 (Content-Length): $code"
req POST /v1/completions -H 'Transfer-Encoding: chunked' --data-binary @"$tmp/big"
[ "$code" = 413 ] && ok || bad "413 (chunked): $code"
# and it still serves after all that
post /v1/completions '{"prompt": "Once", "max_tokens": 3}'
[ "$code" = 200 ] && ok || bad "after the errors: $code"
kill -TERM "$lpid"; wait "$lpid"; rc=$?
[ "$rc" = 0 ] && ok || bad "SIGTERM: exit $rc: $(tail -3 "$tmp/tiny.log")"
grep -q "SIGTERM: stopping the listener" "$tmp/tiny.log" && ok || bad "no stop line: $(tail -3 "$tmp/tiny.log")"

# ---- one model: a queue of one, 503 beyond; a client that leaves; SIGTERM mid-answer.
# Every token is verified over a slow shaped link (about 0.25 s each), so answers take long.
start slow --mode hlm --channel shaped --bandwidth 2e4 --max-queue 1 || exit 1
long_req='{"prompt": "Once", "max_tokens": 200, "stream": true}'
curl -sN --max-time 1.5 "$base/v1/completions" -d "$long_req" >"$tmp/cut.txt" 2>/dev/null
t0=$(date +%s.%N)
post /v1/completions '{"prompt": "Once", "max_tokens": 2}'
t1=$(date +%s.%N)
[ "$code" = 200 ] && ok || bad "after a disconnect: $code"
$py -c "import sys; sys.exit(0 if $t1 - $t0 < 5 else 1)" && ok || bad "the next request waited $t0..$t1: the left stream kept generating"
grep -q "data: " "$tmp/cut.txt" && ok || bad "nothing streamed before the disconnect"
grep -qE "POST /v1/completions \(stream\): cut after [0-9]+ tokens: client gone" "$tmp/slow.log" && ok || bad "no client-gone line: $(cat "$tmp/slow.log")"
curl -sN "$base/v1/completions" -d "$long_req" >"$tmp/a.txt" 2>/dev/null &
apid=$!
sleep 0.7
curl -s "$base/v1/completions" -d '{"prompt": "Once", "max_tokens": 2}' -o "$tmp/b.json" -w '%{http_code}' >"$tmp/b.code" 2>/dev/null &
bpid=$!
sleep 0.7
expect_error 503 server_busy /v1/completions '{"prompt": "Once", "max_tokens": 2}'
req GET /health
[ "$code" = 200 ] && ok || bad "/health while busy: $code"
kill -TERM "$lpid"
t0=$(date +%s)
wait "$lpid"; rc=$?
t1=$(date +%s)
[ "$rc" = 0 ] && [ $((t1 - t0)) -le 10 ] && ok || bad "SIGTERM mid-answer: exit $rc after $((t1 - t0)) s: $(tail -3 "$tmp/slow.log")"
wait "$bpid"
[ "$(cat "$tmp/b.code")" = 503 ] && jcheck "$tmp/b.json" 'd["error"]["code"] == "shutting_down"' || bad "queued request at shutdown: $(cat "$tmp/b.code") $(cat "$tmp/b.json")"
wait "$apid"
grep -q "data: " "$tmp/a.txt" && ok || bad "the stream cut by the shutdown sent nothing"

# ---- the remote verifier: `uhlm serve` behind run --listen --server
rm -f "$tmp/serve.port"
"$bin" serve "${TS_LLM[@]}" -t 1 --port 0 --port-file "$tmp/serve.port" 2>"$tmp/serve.log" &
spid=$!
pids+=("$spid")
for _ in $(seq 1 200); do [ -s "$tmp/serve.port" ] && break; sleep 0.05; done
S=127.0.0.1:$(cat "$tmp/serve.port")
start remote --server "$S" --require-server --connect-timeout 1 || exit 1
post /v1/completions "{\"prompt\": \"$P\", \"max_tokens\": 40, \"seed\": 7, \"temperature\": 0.8}"
[ "$code" = 200 ] && ok || bad "remote: $code $(head -c 300 "$tmp/out")"
same_as_run "$tmp/out" "$tmp/run.json" && ok || bad "remote completions differ from the in-process run"
jcheck "$tmp/out" "d['usage']['uhlm']['server'] == '$S'"
kill -9 "$spid"; wait "$spid" 2>/dev/null
expect_error 502 verifier_unavailable /v1/completions "{\"prompt\": \"$P\", \"max_tokens\": 10}"
grep -qF "$S" "$tmp/out" && ok || bad "502 does not name the server: $(cat "$tmp/out")"
kill -INT "$lpid"; wait "$lpid"; rc=$?
[ "$rc" = 0 ] && ok || bad "SIGINT: exit $rc"

# ---- SmolLM2-135M-Instruct: chat through its ChatML template, and the openai package
smol=$(find_model SmolLM2-135M-Instruct.Q4_1.gguf)
if [ -z "$smol" ]; then
  echo "SKIP: SmolLM2-135M-Instruct.Q4_1.gguf not found (scripts/setup.sh fetches it): chat not tested"
else
  Q="What is the capital of France?"
  "$bin" run --slm "$smol" --llm "$smol" --chat -p "$Q" -n 24 -s 3 --temp 0.7 -t 1 --json >"$tmp/crun.json" 2>/dev/null || bad "run --chat"
  "$bin" run --slm "$smol" --llm "$smol" --chat --system "Answer in one word." -p "$Q" -n 24 -s 3 --temp 0.7 -t 1 --json >"$tmp/csrun.json" 2>/dev/null || bad "run --chat --system"
  start smol --slm "$smol" --llm "$smol" || exit 1
  msg="{\"role\": \"user\", \"content\": \"$Q\"}"
  post /v1/chat/completions "{\"messages\": [$msg], \"max_tokens\": 24, \"seed\": 3, \"temperature\": 0.7}"
  cp "$tmp/out" "$tmp/chat.json"
  [ "$code" = 200 ] && ok || bad "chat: $code $(head -c 300 "$tmp/out")"
  same_as_run "$tmp/chat.json" "$tmp/crun.json" && ok || bad "chat differs from uhlm run --chat"
  jcheck "$tmp/chat.json" 'd["object"] == "chat.completion" and d["choices"][0]["message"]["role"] == "assistant" and d["id"].startswith("chatcmpl-")'
  post /v1/chat/completions "{\"messages\": [{\"role\": \"system\", \"content\": [{\"type\": \"text\", \"text\": \"Answer in one word.\"}]}, $msg], \"max_tokens\": 24, \"seed\": 3, \"temperature\": 0.7}"
  same_as_run "$tmp/out" "$tmp/csrun.json" && ok || bad "chat with a system message differs from run --chat --system"
  post /v1/chat/completions "{\"messages\": [$msg], \"max_tokens\": 24, \"seed\": 3, \"temperature\": 0.7, \"stream\": true}"
  if stream_text "$tmp/out" >"$tmp/cs.json"; then
    jcheck "$tmp/cs.json" "d['text'] == json.load(open('$tmp/chat.json'))['choices'][0]['message']['content'] and d['first']['object'] == 'chat.completion.chunk' and d['first']['choices'][0]['delta']['role'] == 'assistant'"
  else bad "chat stream shape: $(head -c 600 "$tmp/out")"; fi
  expect_error 400 messages /v1/chat/completions '{"messages": [{"role": "tool", "content": "x"}]}'
  expect_error 400 messages /v1/chat/completions '{"messages": []}'
  "$bin" run --slm "$smol" --llm "$smol" -p "The capital of France is" -n 12 -s 5 -t 1 --json >"$tmp/prun.json" 2>/dev/null || bad "run -p (smol)"
  pyenv=""
  for c in "${UHLM_PYTHON:-}" "$src/out/pyenv/bin/python"; do
    [ -n "$c" ] && "$c" -c "import openai" 2>/dev/null && { pyenv=$c; break; }
  done
  if [ -z "$pyenv" ]; then
    echo "SKIP: no Python with the openai package (scripts/setup.sh makes out/pyenv): client library not tested"
  else
    "$pyenv" "$src/tests/openai_client.py" "$base/v1" "$Q" "$tmp/crun.json" "$tmp/prun.json" >"$tmp/client.out" 2>&1 \
      && ok || bad "openai client: $(tail -20 "$tmp/client.out")"
  fi
  kill -TERM "$lpid"; wait "$lpid"; rc=$?
  [ "$rc" = 0 ] && ok || bad "SIGTERM (smol): exit $rc"
fi

finish cli_openai
