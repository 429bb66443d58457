#!/usr/bin/env bash
# CLI behaviour of `uhlm serve`: help, usage errors (exit 2), runtime errors (exit 1), the
# listening log line and --port-file, the plain-text stats port, a raw HELLO answered with
# WELCOME and garbage answered with ERROR BAD_MAGIC, a device refused for a wrong auth token,
# graceful exit 0 on SIGTERM and on SIGINT, and `uhlm bench serve` / `bench soak` JSON. When the
# device client exists (`uhlm run --server`), a remote run must equal the in-process run.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
spid=
at_exit '[ -n "$spid" ] && kill "$spid" 2>/dev/null'

expect_rc 0 "$bin" serve --help
grep -q "usage: uhlm serve" "$tmp/out" && ok || bad "serve --help text"
for args in "--bogus" "--port" "--port 70000" "--max-sessions 0" "--max-ctx -1" \
            "--batch-window-us x" "--idle-timeout -2" "-t abc" "--handshake-timeout 0" \
            "--request-idle-timeout -1" "--max-pending 0" "--max-conns-per-addr x" \
            "--stats-max-conns 0" "--step-tokens 0" "--max-conns 70000"; do
  # shellcheck disable=SC2086
  expect_rc 2 "$bin" serve "${TS_LLM[@]}" $args
done
expect_rc 1 "$bin" serve -m /nonexistent.bin --port 0
grep -q "/nonexistent.bin" "$tmp/err" && ok || bad "missing model is named"
expect_rc 1 "$bin" serve "${TS_LLM[@]}" --auth-token-file /nonexistent.token --port 0
: >"$tmp/empty.tok"
expect_rc 1 "$bin" serve "${TS_LLM[@]}" --auth-token-file "$tmp/empty.tok" --port 0

# start a server on a kernel-chosen port, wait for its port file
printf 'sesame\n' >"$tmp/tok"
start() {
  rm -f "$tmp/port"
  "$bin" serve "${TS_LLM[@]}" --port 0 --port-file "$tmp/port" --stats-port 0 --auth-token-file "$tmp/tok" \
    --idle-timeout 5 -t 1 "$@" 2>"$tmp/log" &
  spid=$!
  for _ in $(seq 100); do [ -s "$tmp/port" ] && grep -q "event=listening" "$tmp/log" && break; sleep 0.1; done
  port=$(cat "$tmp/port" 2>/dev/null)
  sport=$(sed -n 's/.*event=listening.* stats_port=\([0-9]*\).*/\1/p' "$tmp/log" | head -1)
}
start
[ -n "$port" ] && [ -n "$sport" ] && ok || bad "no port file or listening line: $(cat "$tmp/log")"
grep -q "event=listening .*port=$port " "$tmp/log" && ok || bad "listening line lacks port=$port"

# the stats port answers plain text
if exec 3<>"/dev/tcp/127.0.0.1/$sport"; then
  printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
  timeout 5 cat <&3 >"$tmp/metrics"
  exec 3<&-
  grep -q "^HTTP/1.0 200" "$tmp/metrics" && grep -q "^uhlm_server_sessions_max 16" "$tmp/metrics" && \
    grep -q "uhlm_server_request_latency_seconds" "$tmp/metrics" && ok || bad "stats text: $(head -c 300 "$tmp/metrics")"
else
  bad "cannot connect to the stats port $sport"
fi

# raw protocol: HELLO with the right token gets WELCOME; a wrong token gets ERROR AUTH;
# garbage gets ERROR BAD_MAGIC
"$py" - "$port" <<'PY' >"$tmp/raw" 2>&1 && ok || bad "raw protocol: $(cat "$tmp/raw")"
import socket, struct, sys
port = int(sys.argv[1])
def frame(t, payload):
    return b"UHLM" + struct.pack("<HHI", 1, t, len(payload)) + payload
def recv(s):
    h = b""
    while len(h) < 12:
        c = s.recv(12 - len(h))
        if not c: raise SystemExit("EOF")
        h += c
    assert h[:4] == b"UHLM", h
    _, t, n = struct.unpack("<HHI", h[4:])
    p = b""
    while len(p) < n:
        p += s.recv(n - len(p))
    return t, p
def hello(tok):
    return frame(1, struct.pack("<HHQI", 1, 0, 0, 512) + struct.pack("<H", len(tok)) + tok + struct.pack("<H", 3) + b"cli")
s = socket.create_connection(("127.0.0.1", port)); s.sendall(hello(b"sesame"))
t, p = recv(s); assert t == 2, t
assert struct.unpack("<I", p[12:16])[0] == 512  # vocab
s = socket.create_connection(("127.0.0.1", port)); s.sendall(hello(b"open-sesame"))
t, p = recv(s); assert t == 12 and struct.unpack("<H", p[:2])[0] == 11, (t, p)  # AUTH
s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"\x00garbage garbage")
t, p = recv(s); assert t == 12 and struct.unpack("<H", p[:2])[0] == 2, (t, p)  # BAD_MAGIC
assert s.recv(10) == b""
print("ok")
PY
grep -q "code=AUTH" "$tmp/log" && grep -q "code=BAD_MAGIC" "$tmp/log" && ok || bad "error log lines"

# optional: the device client of the same issue, if present
if "$bin" run --help 2>/dev/null | grep -q -- "--server"; then
  for mode in hlm uhlm llm; do
    a=$("$bin" run "${TS_PAIR[@]}" --mode "$mode" -p "Once upon a time" -n 24 --seed 5 2>/dev/null)
    b=$("$bin" run "${TS_PAIR[@]}" --mode "$mode" -p "Once upon a time" -n 24 --seed 5 --server "127.0.0.1:$port" \
        --auth-token-file "$tmp/tok" 2>/dev/null)
    [ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "run --server --mode $mode differs from in-process"
  done
fi

kill -TERM "$spid"; wait "$spid"; rc=$?; spid=
[ "$rc" = 0 ] && ok || bad "SIGTERM exit status $rc"
grep -q "event=stopped" "$tmp/log" && ok || bad "no stopped line"
start --no-batching --max-sessions 2
[ -n "$port" ] && ok || bad "second start"
kill -INT "$spid"; wait "$spid"; rc=$?; spid=
[ "$rc" = 0 ] && ok || bad "SIGINT exit status $rc"

# the benchmark prints one JSON line per run
"$bin" bench serve "${TS_LLM[@]}" --devices 1,2 --seconds 0.2 >"$tmp/bench" 2>"$tmp/berr" && ok || bad "bench serve: $(cat "$tmp/berr")"
[ "$(grep -c '"verifications_per_s"' "$tmp/bench")" = 4 ] && ok || bad "bench serve lines: $(cat "$tmp/bench")"
# contexts: every run reports the range its devices cycle through; a range past the model's
# context is refused before anything starts
[ "$(grep -c '"ctx_min":8,"ctx_max":230' "$tmp/bench")" = 4 ] && ok || bad "bench serve ctx range: $(cat "$tmp/bench")"
for list in "" "1,2," "1,,2" "0" "$(seq -s, 33)"; do
    "$bin" bench serve "${TS_LLM[@]}" --devices "$list" --seconds 0.2 >/dev/null 2>"$tmp/berr"; rc=$?
    [ "$rc" = 2 ] && grep -q "invalid value for --devices" "$tmp/berr" && ok || bad "bench serve --devices '$list': rc $rc"
done
"$bin" bench serve "${TS_LLM[@]}" --devices 1 --seconds 0.2 --ctx-max 256 >/dev/null 2>"$tmp/berr"; rc=$?
[ "$rc" = 2 ] && grep -q "ctx-max" "$tmp/berr" && ok || bad "bench serve --ctx-max 256: rc $rc $(cat "$tmp/berr")"

# the soak benchmark prints one JSON object; the honest devices lose no token to the attackers
"$bin" bench soak "${TS_LLM[@]}" --devices 4 --seconds 0.3 --idle 6 --pipeliners 1 --garbage 1 >"$tmp/soak" 2>"$tmp/serr" \
  && ok || bad "bench soak: $(cat "$tmp/serr")"
"$py" - "$tmp/soak" <<'PY' && ok || bad "bench soak output: $(cat "$tmp/soak")"
import json, sys
o = json.load(open(sys.argv[1]))
assert o["bench"] == "soak" and o["devices"] == 4, o
assert o["honest_unverified_tokens"] == 0, o
assert o["baseline"]["verifications"] > 0 and o["attack"]["verifications"] > 0, o
assert o["attack"]["garbage_frames_answered"] > 0, o
PY
"$bin" bench soak "${TS_LLM[@]}" --devices 0 >/dev/null 2>&1; [ $? = 2 ] && ok || bad "bench soak --devices 0 accepted"

finish
