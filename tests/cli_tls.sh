#!/usr/bin/env bash
# TLS 1.3 on the device-server link (docs/deploy-tls.md). A throwaway CA and server
# certificates are made with the openssl CLI in a temporary folder at test time (no key is ever
# committed). Checks: `run --tls-ca` against `serve --tls-cert/--tls-key` gives exactly the
# in-process tokens (same seed) in uhlm, hlm and llm modes, by name and by IP address, and
# `eval --tls-ca` the in-process per-prompt results; a wrong
# CA and a certificate for another name fail with OpenSSL's reason and exit 1 with
# --require-server; a plain device at a TLS server and a TLS device at a plain server both fail
# with a message that says so, well within the connect timeout; --tls-insecure works and warns;
# bad certificate/key files are named, a key that does not match is caught; the insecure-bind
# rule (0.0.0.0 without TLS or token refused, with the message; with --insecure, or with both,
# it starts); a TLS server keeps serving while clients stall mid-handshake, and closes those at
# its handshake timeout; a TLS server that stops mid-run is named (SHUTTING_DOWN), one
# killed and restarted is reconnected to and resynchronised; the server's bad-input cases and a random-bytes fuzz over TLS
# (tests/tls_raw.py), after which it still serves; HAProxy terminating TLS (TCP mode) in front
# of a plain backend, with `run --tls-ca` (SKIP of that part when haproxy is missing).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
src=$(cd "${UHLM_SOURCE_DIR:-$(dirname "$0")/..}" && pwd)
export UHLM_MODELS=$(cd "${UHLM_MODELS:-$src/../shared/models}" 2>/dev/null && pwd)
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
pids=()
at_exit 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done'
P="Once upon a time, there was a little girl"

if ! command -v openssl >/dev/null; then
  echo "SKIP: no openssl CLI (Debian: openssl) to make test certificates"; exit 0
fi
for m in stories-slm-0.28M.bin stories-llm-2.76M.bin tokenizer.bin; do
  [ -f "$UHLM_MODELS/$m" ] || { echo "SKIP: $m not found under $UHLM_MODELS"; exit 0; }
done

# ---- a throwaway CA; server certificates for localhost + 127.0.0.1, and for another name
cd "$tmp" || exit 1
mkcert() { # NAME SAN CA_PREFIX
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" \
    -out "$1.csr" -subj "/CN=$1" 2>/dev/null &&
  printf 'subjectAltName=%s\n' "$2" >"$1.ext" &&
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -out "$1.pem" \
    -days 2 -extfile "$1.ext" 2>/dev/null
}
mkca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
           -keyout "$1.key" -out "$1.pem" -days 2 -subj "/CN=$1" 2>/dev/null; }
mkca ca && mkca otherca && mkcert srv "DNS:localhost,IP:127.0.0.1" ca &&
  mkcert elsewhere "DNS:elsewhere.example" ca ||
  { echo "FAIL: cannot make test certificates with openssl"; exit 1; }
echo sesame >"$tmp/tok"

# start_server NAME [ARGS...] and stop_server PID
. "$(dirname "${BASH_SOURCE[0]}")/serve_helpers.sh"
now() { date +%s.%N; }
# took START LIMIT: 0 when less than LIMIT seconds passed since START
took() { "$py" -c "import sys; sys.exit(0 if $(now) - $1 < $2 else 1)"; }

# same_tokens LABEL ARGS...: in-process and remote (ARGS name the server) give the same tokens
same_tokens() {
  local label=$1; shift
  local mode=$1; shift
  "$bin" run "${TS_PAIR[@]}" --mode "$mode" -p "$P" -n 24 --seed 7 -t 1 --json >"$tmp/a.json" 2>"$tmp/a.err" ||
    { bad "$label in-process: $(cat "$tmp/a.err")"; return; }
  "$bin" run "${TS_PAIR[@]}" --mode "$mode" -p "$P" -n 24 --seed 7 -t 1 --json --require-server "$@" \
    >"$tmp/b.json" 2>"$tmp/b.err" || { bad "$label over TLS: $(cat "$tmp/b.err")"; return; }
  "$py" - "$tmp/a.json" "$tmp/b.json" <<'EOF' && ok || bad "$label: TLS run differs from in-process"
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
assert a["tokens"] and a["tokens"] == b["tokens"], (a["tokens"], b["tokens"])
assert a["text"] == b["text"]
for k in ("transmitted_tokens", "skipped_tokens", "accepted", "rejected", "unverified_tokens"):
    assert a[k] == b[k], (k, a[k], b[k])
assert b["unverified_tokens"] == 0
assert b["remote"]["connects"] == 1 and b["remote"]["losses"] == 0, b["remote"]
EOF
}

# ---- usage: TLS options need their partners
"$bin" run "${TS_PAIR[@]}" -p x -n 1 --tls-ca ca.pem >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" = 2 ] && grep -q -- "--tls-ca needs --server" "$tmp/err" && ok || bad "--tls-ca without --server: rc $rc $(cat "$tmp/err")"
"$bin" run "${TS_PAIR[@]}" -p x -n 1 --server 127.0.0.1:9 --tls-ca ca.pem --tls-insecure >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" = 2 ] && ok || bad "--tls-ca with --tls-insecure: rc $rc"
"$bin" serve "${TS_LLM[@]}" --port 0 --tls-cert srv.pem >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" = 2 ] && grep -q -- "--tls-cert needs --tls-key" "$tmp/err" && ok || bad "--tls-cert alone: rc $rc $(cat "$tmp/err")"
"$bin" eval --help | grep -q -- "--tls-ca" && ok || bad "eval has no --tls-ca"

# ---- bad certificate and key files: named; a key that is not the certificate's
serve_fails() { # WANT_TEXT ARGS...
  local want=$1; shift
  timeout 30 "$bin" serve "${TS_LLM[@]}" -t 1 --port 0 "$@" >/dev/null 2>"$tmp/err"; local rc=$?
  [ "$rc" = 1 ] && grep -qF -- "$want" "$tmp/err" && ok || bad "serve $*: rc $rc, want '$want': $(cat "$tmp/err")"
}
serve_fails "TLS certificate nope.pem: No such file" --tls-cert nope.pem --tls-key srv.key
serve_fails "TLS key nope.key: No such file" --tls-cert srv.pem --tls-key nope.key
serve_fails "TLS key elsewhere.key does not match the certificate srv.pem" --tls-cert srv.pem --tls-key elsewhere.key
serve_fails "TLS certificate srv.ext: not a usable PEM certificate" --tls-cert srv.ext --tls-key srv.key
serve_fails "TLS key srv.pem: not a usable PEM private key" --tls-cert srv.pem --tls-key srv.pem

# ---- the insecure-bind rule
serve_fails "refusing to listen on 0.0.0.0, which is not a loopback address, without TLS and without an auth token" --host 0.0.0.0
grep -q -- "--insecure" "$tmp/err" && grep -q -- "--tls-cert FILE --tls-key FILE and --auth-token-file FILE" "$tmp/err" && ok || bad "refusal does not say how: $(cat "$tmp/err")"
serve_fails "without an auth token" --host 0.0.0.0 --tls-cert srv.pem --tls-key srv.key
serve_fails "without TLS:" --host 0.0.0.0 --auth-token-file "$tmp/tok"
if start_server open --host 0.0.0.0 --port 0 --insecure; then ok; stop_server "$spid"; fi
if start_server locked --host 0.0.0.0 --port 0 --tls-cert srv.pem --tls-key srv.key --auth-token-file "$tmp/tok"; then
  grep -q "tls=on" "$tmp/locked.log" && ok || bad "listening line without tls=on"
  stop_server "$spid"
fi

# ---- a TLS server: the same tokens as in process, by name and by address
start_server tls --port 0 --tls-cert srv.pem --tls-key srv.key --auth-token-file "$tmp/tok" \
  --handshake-timeout 4 || exit 1
tls_pid=$spid; tls_port=$sport
for mode in uhlm hlm llm; do
  same_tokens "$mode via localhost" "$mode" --server "localhost:$tls_port" --tls-ca ca.pem \
    --auth-token-file "$tmp/tok"
done
same_tokens "uhlm via 127.0.0.1" uhlm --server "127.0.0.1:$tls_port" --tls-ca ca.pem \
  --auth-token-file "$tmp/tok"

# eval over TLS: the same per-prompt results as in process
printf '%s\n' '{"id": "a", "prompt": "Once upon a time, there was a little dog named Max."}' \
  '{"id": "b", "prompt": "Lily and mom went to the park."}' >"$tmp/p2.jsonl"
eargs=(eval "${TS_PAIR[@]}" --prompts "$tmp/p2.jsonl" -n 12 --snr 0 --sweep none --uth 0.3 --modes uhlm -t 1)
if "$bin" "${eargs[@]}" -o "$tmp/ei" >/dev/null 2>"$tmp/err" &&
   "$bin" "${eargs[@]}" -o "$tmp/et" --server "localhost:$tls_port" --tls-ca ca.pem \
     --auth-token-file "$tmp/tok" >/dev/null 2>"$tmp/err"; then
  cmp -s "$tmp/ei/per_prompt.csv" "$tmp/et/per_prompt.csv" && ok ||
    bad "eval over TLS: per_prompt.csv differs: $(diff "$tmp/ei/per_prompt.csv" "$tmp/et/per_prompt.csv" | head -5)"
else
  bad "eval over TLS: $(cat "$tmp/err")"
fi

# --tls-insecure: works, and says loudly what it gives up
same_tokens "--tls-insecure" uhlm --server "127.0.0.1:$tls_port" --tls-insecure --auth-token-file "$tmp/tok"
grep -q "WARNING: --tls-insecure" "$tmp/b.err" && ok || bad "--tls-insecure did not warn: $(cat "$tmp/b.err")"

# verification failures: OpenSSL's reason, exit 1, fast
t0=$(now)
"$bin" run "${TS_PAIR[@]}" -p "$P" -n 8 -t 1 --server "localhost:$tls_port" --tls-ca otherca.pem --require-server \
  --auth-token-file "$tmp/tok" --connect-timeout 10 >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" = 1 ] && grep -q "certificate verification failed: unable to get local issuer certificate" "$tmp/err" &&
  ok || bad "wrong CA: rc $rc: $(cat "$tmp/err")"
took "$t0" 5 && ok || bad "wrong CA took 5 s or more"
"$bin" run "${TS_PAIR[@]}" -p "$P" -n 8 -t 1 --server "localhost:$tls_port" --tls-ca otherca.pem \
  --auth-token-file "$tmp/tok" >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" = 1 ] && ok || bad "wrong CA without --require-server: rc $rc (a configuration error, not an outage)"

# ---- mismatches, both ways: clear, and at once (a hang would last the 10 s connect timeout)
t0=$(now)
"$bin" run "${TS_PAIR[@]}" -p "$P" -n 8 -t 1 --server "127.0.0.1:$tls_port" --auth-token-file "$tmp/tok" \
  --require-server --connect-timeout 10 >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" = 1 ] && grep -q "this server speaks TLS only: connect with --tls-ca" "$tmp/err" && ok ||
  bad "plain device, TLS server: rc $rc: $(cat "$tmp/err")"
took "$t0" 5 && ok || bad "plain device at a TLS server took 5 s or more"
start_server plain --port 0 || exit 1
plain_pid=$spid; plain_port=$sport
t0=$(now)
"$bin" run "${TS_PAIR[@]}" -p "$P" -n 8 -t 1 --server "127.0.0.1:$plain_port" --tls-ca ca.pem --require-server \
  --connect-timeout 10 >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" = 1 ] && grep -q "is not a TLS server (it answered in the plain uhlm protocol)" "$tmp/err" && ok ||
  bad "TLS device, plain server: rc $rc: $(cat "$tmp/err")"
took "$t0" 5 && ok || bad "TLS device at a plain server took 5 s or more"

# a certificate for another name
start_server other --port 0 --tls-cert elsewhere.pem --tls-key elsewhere.key || exit 1
other_pid=$spid
"$bin" run "${TS_PAIR[@]}" -p "$P" -n 8 -t 1 --server "localhost:$sport" --tls-ca ca.pem --require-server \
  >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" = 1 ] && grep -q "certificate verification failed: [Hh]ostname mismatch" "$tmp/err" && ok ||
  bad "wrong host name: rc $rc: $(cat "$tmp/err")"
stop_server "$other_pid"

# ---- clients stalled mid-handshake delay nobody, and are closed at the handshake timeout
"$py" "$src/tests/tls_raw.py" "$tls_port" ca.pem sesame stall 12 12 >"$tmp/stall" 2>&1 &
stall_pid=$!
pids+=("$stall_pid")
for _ in $(seq 1 100); do grep -q stalling "$tmp/stall" && break; sleep 0.05; done
t0=$(now)
same_tokens "uhlm beside stalled handshakes" uhlm --server "localhost:$tls_port" --tls-ca ca.pem \
  --auth-token-file "$tmp/tok"
# (a loop blocked by a stalled handshake would hold the run until its 4 s timeout)
took "$t0" 3 && ok || bad "a run beside stalled handshakes took 3 s or more"
wait "$stall_pid"; rc=$?
[ "$rc" = 0 ] && ok || bad "stalled handshakes were not closed: $(cat "$tmp/stall")"
grep -q "reason=tls_handshake_timeout" "$tmp/tls.log" && ok || bad "no tls_handshake_timeout in the log"

# ---- the bad-input cases and random bytes, over TLS; the server stays up and serves
"$py" "$src/tests/tls_raw.py" "$tls_port" ca.pem sesame badinput >"$tmp/raw" 2>&1 && ok ||
  bad "bad input over TLS: $(cat "$tmp/raw")"
"$py" "$src/tests/tls_raw.py" "$tls_port" ca.pem sesame fuzz 90 >"$tmp/fuzz" 2>&1 && ok ||
  bad "fuzz over TLS: $(cat "$tmp/fuzz")"
# and garbage below TLS (not a ClientHello at all)
"$py" - "$tls_port" <<'EOF' && ok || bad "raw garbage at the TLS port"
import random, socket, sys
rng = random.Random(5)
for i in range(30):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    s.sendall((b"\x16\x03\x01" if i % 2 else b"") + rng.randbytes(rng.randrange(1, 3000)))
    s.settimeout(2)
    try:
        while s.recv(4096):
            pass
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
EOF
kill -0 "$tls_pid" 2>/dev/null && ok || bad "the TLS server died"
same_tokens "uhlm after the fuzz" uhlm --server "localhost:$tls_port" --tls-ca ca.pem --auth-token-file "$tmp/tok"

# ---- a TLS server that stops mid-run says so (SHUTTING_DOWN through TLS); one killed and
# restarted on its port is reconnected to (a new TLS session) and the session resynchronised
start_server stop1 --port 0 --tls-cert srv.pem --tls-key srv.key || exit 1
s1_pid=$spid; s1_port=$sport
"$bin" run "${TS_PAIR[@]}" --mode llm -p "$P" -n 400 --seed 23 -t 1 --server "localhost:$s1_port" --tls-ca ca.pem \
  --channel shaped --latency 0.01 >/dev/null 2>"$tmp/fl.err" &
cpid=$!; pids+=("$cpid")
sleep 1.0
kill -0 "$cpid" 2>/dev/null && ok || bad "the llm run ended before the stop (too fast?)"
stop_server "$s1_pid"
wait "$cpid"; rc=$?
[ "$rc" = 1 ] && grep -q "the server localhost:$s1_port is shutting down: server stopping" "$tmp/fl.err" &&
  ok || bad "TLS server stopped under an llm run: rc $rc: $(cat "$tmp/fl.err")"
start_server kill1 --port 0 --tls-cert srv.pem --tls-key srv.key || exit 1
k_pid=$spid; k_port=$sport
"$bin" run "${TS_PAIR[@]}" --mode hlm -p "$P" -n 400 --seed 24 -t 1 --server "localhost:$k_port" --tls-ca ca.pem \
  --channel shaped --latency 0.01 --json >"$tmp/k.json" 2>"$tmp/k.err" &
cpid=$!; pids+=("$cpid")
sleep 1.0
kill -9 "$k_pid"; wait "$k_pid" 2>/dev/null
sleep 0.3
start_server kill2 --port "$k_port" --tls-cert srv.pem --tls-key srv.key
wait "$cpid"; rc=$?
[ "$rc" = 0 ] && "$py" - "$tmp/k.json" <<'EOF2' && ok || bad "TLS reconnect after kill -9: rc $rc: $(tail -3 "$tmp/k.err")"
import json, sys
r = json.load(open(sys.argv[1]))
assert len(r["tokens"]) > 100, len(r["tokens"])  # (the context ends it before 400)
rem = r["remote"]
assert rem["reconnects"] >= 1 and rem["resyncs"] >= 1, rem
EOF2
stop_server "$spid"

# ---- HAProxy terminating TLS in front of the plain backend
if ! command -v haproxy >/dev/null; then
  echo "SKIP: haproxy not installed (Debian: haproxy): TLS termination not tested"
else
  hport=$("$py" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
  cat srv.pem srv.key >haproxy.pem
  cat >haproxy.cfg <<EOF
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend uhlm_tls
  bind 127.0.0.1:$hport ssl crt $tmp/haproxy.pem ssl-min-ver TLSv1.3
  default_backend uhlm
backend uhlm
  server s1 127.0.0.1:$plain_port
EOF
  haproxy -f haproxy.cfg -db >"$tmp/haproxy.log" 2>&1 &
  hpid=$!
  pids+=("$hpid")
  up=0
  for _ in $(seq 1 100); do
    "$py" -c "import socket,sys; socket.create_connection(('127.0.0.1', $hport), timeout=1)" 2>/dev/null && { up=1; break; }
    kill -0 "$hpid" 2>/dev/null || break
    sleep 0.05
  done
  if [ "$up" = 1 ]; then
    ok
    for mode in uhlm llm; do
      same_tokens "$mode through HAProxy TLS" "$mode" --server "localhost:$hport" --tls-ca ca.pem
    done
    "$bin" run "${TS_PAIR[@]}" -p "$P" -n 8 -t 1 --server "localhost:$hport" --require-server >/dev/null 2>"$tmp/err"; rc=$?
    [ "$rc" = 1 ] && ok || bad "a plain device through the TLS frontend: rc $rc"
  else
    bad "haproxy did not start: $(cat "$tmp/haproxy.log")"
  fi
  kill "$hpid" 2>/dev/null; wait "$hpid" 2>/dev/null
fi

stop_server "$plain_pid"
kill -TERM "$tls_pid"; wait "$tls_pid"; rc=$?
[ "$rc" = 0 ] && ok || bad "TLS server exit status $rc after SIGTERM"

finish
