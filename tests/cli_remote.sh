#!/usr/bin/env bash
# `uhlm run --server` against `uhlm serve` over loopback: the same tokens and verdict counts as
# the in-process run for every mode (and greedy, topk); auth; an unreachable server (SLM alone,
# every token unverified, no uplink charged); a server whose context (--max-ctx 1) cannot hold
# the prompt (SLM alone, with a warning); llm mode without a server (an error: exit 1, never
# SLM text) and a server that stops (SHUTTING_DOWN, named); the fallback test (kill -9 the server
# mid-run, restart it on the same port: the run completes, counts unverified tokens, reconnects
# and resynchronises, and the restarted server's context matches the device's); a stalled
# server (read and connect timeouts); the shaped channel (wall time pays the link time, the
# tokens do not change); the fallback window (--fallback-after: a closed port falls back after
# the window, a server restarted within it costs no unverified token, in hlm and llm mode).
# The cases written before the window existed pin the immediate fallback with --fallback-after 0.
# Servers listen on kernel-chosen ports (--port 0 --port-file).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
pids=()
at_exit 'for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done'
P="Once upon a time, there was a little girl"

if ! "$bin" serve --help >/dev/null 2>&1; then
  echo "SKIP: this build has no 'uhlm serve'"; exit 0
fi

# start_server NAME [ARGS...] and stop_server PID
. "$(dirname "${BASH_SOURCE[0]}")/serve_helpers.sh"

# ---- usage errors
for args in "--server nocolon" "--server host:0" "--server host:99999" "--channel warp" \
            "--auth-token-file /dev/null" "--connect-timeout 0" "--read-timeout x" \
            "--fallback-after -1" "--fallback-after x" "--fallback-after 1e9"; do
  # shellcheck disable=SC2086
  "$bin" run "${TS_PAIR[@]}" $args -n 1 >/dev/null 2>"$tmp/err"; rc=$?
  [ "$rc" = 2 ] && ok || bad "rc $rc (want 2) for run $args: $(cat "$tmp/err")"
done

start_server main --port 0 || exit 1
main_pid=$spid; main_port=$sport
S=127.0.0.1:$main_port

# ---- loopback equality, every mode; the JSON tokens and the verdict counts agree
compare() { # LABEL ARGS...: in-process vs remote
  local label=$1; shift
  "$bin" run "${TS_PAIR[@]}" "$@" -t 1 --json >"$tmp/a.json" 2>"$tmp/a.err" || { bad "$label in-process: $(cat "$tmp/a.err")"; return; }
  "$bin" run "${TS_PAIR[@]}" "$@" -t 1 --json --server "$S" >"$tmp/b.json" 2>"$tmp/b.err" || { bad "$label remote: $(cat "$tmp/b.err")"; return; }
  $py - "$tmp/a.json" "$tmp/b.json" <<'EOF' && ok || bad "$label: remote differs from in-process"
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
assert a["tokens"] and a["tokens"] == b["tokens"], (a["tokens"], b["tokens"])
assert a["text"] == b["text"]
# (llm_forward_calls may differ by the prefill: the server reuses a cached prompt prefix
# across sessions, a fresh in-process verifier cannot)
for k in ("generated_tokens", "transmitted_tokens", "skipped_tokens", "accepted", "rejected",
          "accepted_outright", "catchup_tokens", "uplink_bits", "unverified_tokens"):
    assert a[k] == b[k], (k, a[k], b[k])
assert "remote" not in a
if a["mode"] != "slm":  # slm mode never talks to a verifier
    assert b["remote"]["losses"] == 0 and b["remote"]["connects"] == 1, b["remote"]
assert abs(a["mean_beta"] - b["mean_beta"]) < 1e-5 if a["mean_beta"] is not None else True
EOF
}
for mode in slm llm hlm rand uhlm; do
  compare "mode $mode" --mode "$mode" -p "$P" -n 60 --seed 11
done
compare "greedy hlm" --mode hlm --temp 0 -p "$P" -n 60
compare "greedy llm" --mode llm --temp 0 -p "$P" -n 60
compare "uhlm topk" --mode uhlm --uth 0.3 --payload topk:16:16 -p "$P" -n 60 --seed 5
compare "rand f16 top-p" --mode rand --payload f16 --top-p 0.9 --top-k 40 -p "$P" -n 60 --seed 6
compare "uhlm empty prompt" --mode uhlm -n 60 --seed 8
# the text output (not JSON) is the same too, and the second stderr line reports the link
a=$("$bin" run "${TS_PAIR[@]}" --mode uhlm -p "$P" -n 40 --seed 3 -t 1 2>/dev/null)
b=$("$bin" run "${TS_PAIR[@]}" --mode uhlm -p "$P" -n 40 --seed 3 -t 1 --server "$S" 2>"$tmp/err")
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "text output differs"
grep -q "server $S: 0 unverified, 1 connects" "$tmp/err" && ok || bad "remote summary line: $(cat "$tmp/err")"

# ---- auth
printf 's3cret\n' >"$tmp/token"; printf 'wrong\n' >"$tmp/wrong"
start_server auth --port 0 --auth-token-file "$tmp/token" || exit 1
auth_pid=$spid
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 8 --server "127.0.0.1:$sport" --auth-token-file "$tmp/token" >/dev/null 2>"$tmp/err" \
  && ok || bad "right token refused: $(cat "$tmp/err")"
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 8 --server "127.0.0.1:$sport" --auth-token-file "$tmp/wrong" >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" = 1 ] && grep -q "AUTH" "$tmp/err" && ok || bad "wrong token: rc $rc: $(cat "$tmp/err")"
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 8 --server "127.0.0.1:$sport" >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" = 1 ] && grep -q "AUTH" "$tmp/err" && ok || bad "missing token: rc $rc: $(cat "$tmp/err")"
stop_server "$auth_pid"
# one token file serves both sides, whatever its first line holds (here a trailing space and
# a second line): server and device read it with the same function
printf 's3cret \nsecond line\n' >"$tmp/token2"
start_server auth2 --port 0 --auth-token-file "$tmp/token2" || exit 1
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 8 --server "127.0.0.1:$sport" --auth-token-file "$tmp/token2" >/dev/null 2>"$tmp/err" \
  && ok || bad "the server's own token file refused: $(cat "$tmp/err")"
stop_server "$spid"

# ---- an unreachable server: a port that was just freed
start_server gone --port 0 || exit 1
gone_port=$sport; stop_server "$spid"
t0=$(date +%s.%N)
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 30 --seed 2 --server "127.0.0.1:$gone_port" --fallback-after 0 --json >"$tmp/u.json" 2>"$tmp/err"
rc=$?
[ "$rc" = 0 ] && ok || bad "unreachable server: rc $rc: $(cat "$tmp/err")"
$py - "$tmp/u.json" "$t0" <<'EOF' && ok || bad "unreachable server stats"
import json, sys, time
o = json.load(open(sys.argv[1]))
assert o["generated_tokens"] == 30 and len(o["tokens"]) == 30, o
assert o["unverified_tokens"] == 30 and o["transmitted_tokens"] == 0, o
assert o["remote"]["connect_failures"] >= 1 and o["remote"]["connects"] == 0, o["remote"]
# nothing went out, so the stats show no uplink (they used to charge every unsent request)
assert o["uplink_bits"] == 0 and o["uplink_bytes"] == 0 and o["uplink_messages"] == 0, o
assert o["remote"]["bytes_sent"] == 0 and o["remote"]["requests"] == 0, o["remote"]
assert time.time() - float(sys.argv[2]) < 20  # never stalls per token
EOF
slm=$("$bin" run "${TS_PAIR[@]}" --mode slm -p "$P" -n 30 --seed 2 2>/dev/null)
got=$("$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 30 --seed 2 --server "127.0.0.1:$gone_port" --fallback-after 0 2>"$tmp/err")
[ "$got" = "$slm" ] && ok || bad "SLM-alone fallback text differs from slm mode"
grep -q "SLM alone" "$tmp/err" && ok || bad "no fallback message: $(cat "$tmp/err")"
# uhlm mode falls back too, with the warning (the same text as slm mode)
got=$("$bin" run "${TS_PAIR[@]}" --mode uhlm -p "$P" -n 30 --seed 2 --server "127.0.0.1:$gone_port" --fallback-after 0 2>"$tmp/err")
rc=$?
[ "$rc" = 0 ] && [ "$got" = "$slm" ] && grep -q "SLM alone" "$tmp/err" && grep -q " unverified," "$tmp/err" \
  && ok || bad "uhlm mode without a server: rc $rc: $(cat "$tmp/err")"
"$bin" run "${TS_PAIR[@]}" --mode uhlm -p "$P" -n 30 --seed 2 --server "127.0.0.1:$gone_port" --fallback-after 0 --require-server >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" = 1 ] && [ ! -s "$tmp/out" ] && ok || bad "uhlm mode, --require-server, no server: rc $rc: $(cat "$tmp/err")"
# llm mode with a server means the LLM's text: an unreachable server is an error naming the
# server and the reason, never SLM text and exit 0
got=$("$bin" run "${TS_PAIR[@]}" --mode llm -p "$P" -n 30 --seed 2 --server "127.0.0.1:$gone_port" --fallback-after 0 2>"$tmp/err")
rc=$?
[ "$rc" = 1 ] && [ -z "$got" ] && grep -q "the server 127.0.0.1:$gone_port cannot verify: connect to 127.0.0.1:$gone_port" "$tmp/err" \
  && grep -q "\-\-mode llm" "$tmp/err" && ! grep -q "SLM alone until" "$tmp/err" \
  && ok || bad "llm mode without a server: rc $rc, out '$got': $(cat "$tmp/err")"

# ---- a server whose context cannot hold the prompt (--max-ctx 1): the device used to take the
# server's context as its own and exit 1 on every prompt; now it goes on with the SLM alone
start_server tiny --port 0 --max-ctx 1 || exit 1
got=$("$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 30 --seed 2 --server "127.0.0.1:$sport" 2>"$tmp/err")
rc=$?
[ "$rc" = 0 ] && [ "$got" = "$slm" ] && ok || bad "server with n_ctx 1: rc $rc: $(cat "$tmp/err")"
grep -q "exceeds the server's 1; generating with the SLM alone" "$tmp/err" && grep -q "30 unverified" "$tmp/err" \
  && ok || bad "server with n_ctx 1: no warning: $(cat "$tmp/err")"
# --require-server turns each fallback into an error, and needs --server
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 30 --seed 2 --server "127.0.0.1:$sport" --require-server >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" = 1 ] && grep -q "exceeds the server's 1 (verification required" "$tmp/err" && ok || bad "require, n_ctx 1: rc $rc: $(cat "$tmp/err")"
stop_server "$spid"
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 30 --server "127.0.0.1:$gone_port" --fallback-after 0 --require-server >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" = 1 ] && grep -q "cannot verify: connect to 127.0.0.1:$gone_port" "$tmp/err" && ! grep -q "SLM alone until" "$tmp/err" \
  && ok || bad "require, unreachable: rc $rc: $(cat "$tmp/err")"
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 3 --require-server >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" = 2 ] && grep -q "needs --server" "$tmp/err" && ok || bad "require without server: rc $rc: $(cat "$tmp/err")"

# ---- fallback: kill -9 the server mid-run, restart it on the same port
# The shaped channel with 10 ms per message makes the run last seconds (about 25 ms a token).
start_server fb1 --port 0 || exit 1
fb_pid=$spid; fb_port=$sport
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 400 --seed 21 -t 1 --server "127.0.0.1:$fb_port" --fallback-after 0 \
  --channel shaped --latency 0.01 --json --events >"$tmp/fb.json" 2>"$tmp/fb.err" &
cpid=$!; pids+=("$cpid")
sleep 1.0
kill -0 "$cpid" 2>/dev/null && ok || bad "the fallback run ended before the kill (too fast?)"
kill -9 "$fb_pid"; wait "$fb_pid" 2>/dev/null
sleep 0.8
start_server fb2 --port "$fb_port" || exit 1
fb2_pid=$spid
wait "$cpid"; rc=$?
[ "$rc" = 0 ] && ok || bad "fallback run: rc $rc: $(cat "$tmp/fb.err")"
stop_server "$fb2_pid"
grep -q "lost the server" "$tmp/fb.err" && grep -q "reconnected" "$tmp/fb.err" && grep -q "resynchronised" "$tmp/fb.err" \
  && ok || bad "fallback log lines: $(cat "$tmp/fb.err")"
n_past=$(grep "event=session_end" "$tmp/fb2.log" | tail -1 | sed -n 's/.* n_past=\([0-9]*\).*/\1/p')
$py - "$tmp/fb.json" "${n_past:-0}" <<'EOF' && ok || bad "fallback stats: $(head -c 600 "$tmp/fb.json")"
import json, sys
o = json.load(open(sys.argv[1])); n_past = int(sys.argv[2])
n = o["generated_tokens"]
# the run completed: every position produced exactly one token
assert o["stop"] in ("context", "length") and n == len(o["tokens"]) == len(o["events"]) > 200, (o["stop"], n)
assert [e["pos"] for e in o["events"]] == list(range(o["prompt_tokens"], o["prompt_tokens"] + n))
assert n == o["transmitted_tokens"] + o["skipped_tokens"]
# some tokens went unverified while the server was down, and verification resumed after
assert o["unverified_tokens"] > 0 and o["skipped_tokens"] == o["unverified_tokens"], o
# uplink is charged only for requests that went through: none for an unverified token, and
# the total is the verified tokens' bits plus the prompt's
assert all(e["uplink_bits"] == 0 for e in o["events"] if not e["verified"]), "unsent uplink"
ev_bits = sum(e["uplink_bits"] for e in o["events"])
assert o["uplink_bits"] > ev_bits and (o["uplink_bits"] - ev_bits) % o["prompt_tokens"] == 0, o["uplink_bits"]
r = o["remote"]
assert r["losses"] >= 1 and r["reconnects"] >= 1 and r["resyncs"] >= 1 and r["resync_tokens"] > 0, r
ev = o["events"]
first_unv = min(i for i, e in enumerate(ev) if not e["verified"])
last_unv = max(i for i, e in enumerate(ev) if not e["verified"])
assert any(e["verified"] for e in ev[last_unv + 1:]), "never verified again"
assert all(e["verified"] for e in ev[:first_unv]) and first_unv > 0
# the restarted server's session holds exactly the device's context up to the last verdict:
# nothing lost, nothing duplicated by the resync
last_ver = max(e["pos"] for e in ev if e["verified"])
assert n_past == last_ver + 1, (n_past, last_ver)
EOF

# ---- llm mode, the server stopped mid-run (SIGTERM): the server sends SHUTTING_DOWN, the
# device says so with the frame's reason, and exits 1 naming the server (no SLM text in place)
start_server fb3 --port 0 || exit 1
fb_pid=$spid; fb_port=$sport
"$bin" run "${TS_PAIR[@]}" --mode llm -p "$P" -n 400 --seed 23 -t 1 --server "127.0.0.1:$fb_port" --fallback-after 0 \
  --channel shaped --latency 0.01 --json --events >"$tmp/fl.json" 2>"$tmp/fl.err" &
cpid=$!; pids+=("$cpid")
sleep 1.0
kill -0 "$cpid" 2>/dev/null && ok || bad "the llm run ended before the stop (too fast?)"
stop_server "$fb_pid"
wait "$cpid"; rc=$?
[ "$rc" = 1 ] && grep -q "the server 127.0.0.1:$fb_port is shutting down: server stopping" "$tmp/fl.err" \
  && grep -q "the server 127.0.0.1:$fb_port cannot verify: .*SHUTTING_DOWN: server stopping" "$tmp/fl.err" && ! grep -q "SLM alone" "$tmp/fl.err" \
  && ok || bad "llm mode, server stopped: rc $rc: $(cat "$tmp/fl.err")"
# hlm mode says so too, then goes on with the SLM alone (exit 0)
start_server fb4 --port 0 || exit 1
fb_pid=$spid; fb_port=$sport
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 400 --seed 23 -t 1 --server "127.0.0.1:$fb_port" --fallback-after 0 \
  --channel shaped --latency 0.01 --json >"$tmp/fh.json" 2>"$tmp/fh.err" &
cpid=$!; pids+=("$cpid")
sleep 1.0
stop_server "$fb_pid"
wait "$cpid"; rc=$?
[ "$rc" = 0 ] && grep -q "the server 127.0.0.1:$fb_port is shutting down: server stopping" "$tmp/fh.err" \
  && grep -q "SLM alone" "$tmp/fh.err" && ok || bad "hlm mode, server stopped: rc $rc: $(cat "$tmp/fh.err")"

# ---- a stalled server (SIGSTOP): the read timeout, then connect timeouts, then recovery
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 400 --seed 22 -t 1 --server "$S" --read-timeout 0.3 \
  --connect-timeout 0.3 --fallback-after 0 --channel shaped --latency 0.01 --json >"$tmp/st.json" 2>"$tmp/st.err" &
cpid=$!; pids+=("$cpid")
sleep 0.8
kill -STOP "$main_pid"
sleep 1.2
kill -CONT "$main_pid"
wait "$cpid"; rc=$?
[ "$rc" = 0 ] && ok || bad "stalled server run: rc $rc: $(cat "$tmp/st.err")"
grep -q "read timeout" "$tmp/st.err" && ok || bad "no read timeout reported: $(cat "$tmp/st.err")"
$py - "$tmp/st.json" <<'EOF' && ok || bad "stalled server stats: $(head -c 600 "$tmp/st.json")"
import json, sys
o = json.load(open(sys.argv[1]))
r = o["remote"]
assert o["generated_tokens"] == len(o["tokens"]) > 200
assert o["unverified_tokens"] > 0 and r["losses"] >= 1 and r["resyncs"] >= 1, (o["unverified_tokens"], r)
assert o["transmitted_tokens"] > 0
EOF

# ---- the fallback window (--fallback-after S)
# a closed port: the run falls back after about S (not at once, not per token), every token
# unverified; with --require-server the error comes after S and names the window
t0=$(date +%s.%N)
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 30 --seed 2 --server "127.0.0.1:$gone_port" --fallback-after 0.5 \
  --json >"$tmp/w.json" 2>"$tmp/err"
rc=$?
$py - "$tmp/w.json" "$t0" "$rc" <<'EOF' && grep -q "no server within the fallback window of 0.5 s" "$tmp/err" \
  && ok || bad "closed port, --fallback-after 0.5: rc $rc: $(cat "$tmp/err")"
import json, sys, time
o = json.load(open(sys.argv[1])); took = time.time() - float(sys.argv[2])
assert sys.argv[3] == "0"
assert o["unverified_tokens"] == 30 and o["transmitted_tokens"] == 0, o
assert o["remote"]["connect_failures"] >= 2, o["remote"]  # it did retry within the window
assert 0.5 <= took < 5, took
EOF
t0=$(date +%s.%N)
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 30 --server "127.0.0.1:$gone_port" --fallback-after 0.5 --require-server \
  >"$tmp/out" 2>"$tmp/err"
rc=$?
took=$($py -c "import time,sys; print(time.time() - float(sys.argv[1]))" "$t0")
[ "$rc" = 1 ] && [ ! -s "$tmp/out" ] && grep -q "cannot verify: no server within the fallback window of 0.5 s: connect to" "$tmp/err" \
  && $py -c "import sys; assert 0.5 <= float(sys.argv[1]) < 5" "$took" \
  && ok || bad "require, closed port, --fallback-after 0.5: rc $rc after ${took}s: $(cat "$tmp/err")"

# a server that accepts but never answers (SIGSTOP): each attempt costs one connect timeout
# (TCP connect + HELLO/WELCOME), and the window ends after S plus at most one of them
start_server stopped --port 0 || exit 1
stopped_pid=$spid
kill -STOP "$stopped_pid"
t0=$(date +%s.%N)
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 5 --seed 2 --server "127.0.0.1:$sport" --connect-timeout 0.3 \
  --fallback-after 1 --json >"$tmp/ws.json" 2>"$tmp/err"
rc=$?
$py - "$tmp/ws.json" "$t0" "$rc" <<'EOF' && ok || bad "stopped server, --fallback-after 1: rc $rc: $(cat "$tmp/err")"
import json, sys, time
o = json.load(open(sys.argv[1])); took = time.time() - float(sys.argv[2])
assert sys.argv[3] == "0"
assert o["unverified_tokens"] == 5 and o["remote"]["connect_failures"] >= 3, o["remote"]
# first failure after 0.3 s, window of 1 s, a last attempt of 0.3 s: about 1.6 s
assert 1.3 <= took < 4, took
EOF
kill -9 "$stopped_pid"; kill -CONT "$stopped_pid" 2>/dev/null; wait "$stopped_pid" 2>/dev/null

# Ctrl-C during a wait in the window ends it at once (the cancel check is polled every 50 ms):
# exit 130 and the partial report, not a run held for the whole window. The SIGINT goes after
# the device has started (its first log line, plus a moment for the token loop's handler).
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 30 --server "127.0.0.1:$gone_port" --fallback-after 60 --json \
  >"$tmp/i.json" 2>"$tmp/i.err" &
ipid=$!; pids+=("$ipid")
for _ in $(seq 1 200); do grep -q "retrying for up to 60 s" "$tmp/i.err" && break; sleep 0.05; done
sleep 1
t0=$(date +%s.%N)
kill -INT "$ipid"; wait "$ipid"; rc=$?
$py - "$tmp/i.json" "$t0" "$rc" <<'EOF' && ok || bad "Ctrl-C in the window: rc $rc: $(cat "$tmp/i.err")"
import json, sys, time
took = time.time() - float(sys.argv[2])
assert sys.argv[3] == "130", sys.argv[3]
assert took < 5, took
o = json.load(open(sys.argv[1]))
assert o["interrupted"] is True and o["stop"] == "cancelled", o
EOF

# a server killed (SIGKILL) mid-run and restarted on its port within the window: no token goes
# unverified, the tokens equal the in-process run's, and the session was resynchronised. Two
# devices at once: hlm, and llm (which must not fail: the server came back in time).
start_server w1 --port 0 || exit 1
w_pid=$spid; w_port=$sport
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 300 --seed 31 -t 1 --json >"$tmp/wh_ref.json" 2>/dev/null
"$bin" run "${TS_PAIR[@]}" --mode llm -p "$P" -n 300 --seed 32 -t 1 --json >"$tmp/wl_ref.json" 2>/dev/null
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 300 --seed 31 -t 1 --server "127.0.0.1:$w_port" --fallback-after 10 \
  --channel shaped --latency 0.01 --json --events >"$tmp/wh.json" 2>"$tmp/wh.err" &
c1=$!; pids+=("$c1")
"$bin" run "${TS_PAIR[@]}" --mode llm -p "$P" -n 300 --seed 32 -t 1 --server "127.0.0.1:$w_port" --fallback-after 10 \
  --channel shaped --latency 0.01 --json >"$tmp/wl.json" 2>"$tmp/wl.err" &
c2=$!; pids+=("$c2")
# kill once both devices have sessions open (the server logs event=open), not after a guess
for _ in $(seq 1 200); do
  [ "$(grep -c "event=open" "$tmp/w1.log" 2>/dev/null)" -ge 2 ] && break; sleep 0.05
done
sleep 0.3
kill -0 "$c1" 2>/dev/null && kill -0 "$c2" 2>/dev/null && ok || bad "the window runs ended before the kill"
kill -9 "$w_pid"; wait "$w_pid" 2>/dev/null
sleep 1.0   # down for a second: the devices wait, they do not fall back
start_server w2 --port "$w_port" || exit 1
w2_pid=$spid
wait "$c1"; rc1=$?
wait "$c2"; rc2=$?
stop_server "$w2_pid"
[ "$rc1" = 0 ] && [ "$rc2" = 0 ] && ok || bad "window runs: rc $rc1/$rc2: $(cat "$tmp/wh.err" "$tmp/wl.err")"
grep -q "lost the server .*retrying for up to 10 s" "$tmp/wh.err" && grep -q "resynchronised" "$tmp/wh.err" \
  && ! grep -q "SLM alone until" "$tmp/wh.err" && ok || bad "window log lines: $(cat "$tmp/wh.err")"
$py - "$tmp/wh.json" "$tmp/wh_ref.json" "$tmp/wl.json" "$tmp/wl_ref.json" <<'EOF' && ok || bad "window runs: $(head -c 400 "$tmp/wh.json")"
import json, sys
for got, ref in ((sys.argv[1], sys.argv[2]), (sys.argv[3], sys.argv[4])):
    o, r = json.load(open(got)), json.load(open(ref))
    assert o["tokens"] == r["tokens"] and o["text"] == r["text"], (got, len(o["tokens"]), len(r["tokens"]))
    assert o["unverified_tokens"] == 0, (got, o["unverified_tokens"])
    rem = o["remote"]
    assert rem["losses"] >= 1 and rem["resyncs"] >= 1 and rem["reconnects"] >= 1, (got, rem)
    assert rem["unavailable_calls"] == 0, (got, rem)
o = json.load(open(sys.argv[1]))
assert all(e["verified"] for e in o["events"]), "an unverified event"
EOF

# ---- shaped channel: the wall clock pays the modelled link; the tokens stay the same
for where in "" "--server $S"; do
  # shellcheck disable=SC2086
  "$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 20 --seed 4 -t 1 --latency 0.02 --json $where >"$tmp/acc.json" 2>/dev/null
  # shellcheck disable=SC2086
  "$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 20 --seed 4 -t 1 --latency 0.02 --channel shaped --json $where >"$tmp/sh.json" 2>/dev/null
  $py - "$tmp/acc.json" "$tmp/sh.json" <<'EOF' && ok || bad "shaped channel ($where)"
import json, sys
a, s = (json.load(open(f)) for f in sys.argv[1:3])
assert a["tokens"] == s["tokens"] and a["link_seconds"] == s["link_seconds"]
assert a["channel"]["mode"] == "accounted" and s["channel"]["mode"] == "shaped"
link = s["link_seconds"]
assert link >= 0.8, link                      # 21 messages each way at >= 20 ms
assert s["wall_seconds"] >= link, (s["wall_seconds"], link)
assert a["wall_seconds"] < link / 2, (a["wall_seconds"], link)
EOF
done

stop_server "$main_pid"
finish
