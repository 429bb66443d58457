#!/usr/bin/env bash
# The cluster test (issue 13): scripts/cluster.sh starts 3 `uhlm serve` backends behind HAProxy
# (TCP, leastconn, health checks on /health); D devices (48; 12 in the sanitizer build, whose
# binaries are several times slower) run `uhlm run --server HAPROXY` at once, in hlm, uhlm and
# llm mode over a shaped link, each with its own seed. Once every device has opened its session,
# one backend is killed with SIGKILL, and restarted a second later; W more devices (6) then
# start, and leastconn sends them to the restarted backend; then backend 1 is drained
# (SIGTERM: its devices get SHUTTING_DOWN and move to the others) and restarted. Every
# device must finish
# (exit 0) with exactly the tokens and text of the in-process run with the same seed (none
# lost, none duplicated) and zero unverified tokens: the fallback window (--fallback-after)
# turns the lost backend into a reconnect through HAProxy and a resync on another backend.
# Prints the per-backend counts scraped from /metrics and the devices' unverified counts.
# Needs haproxy (skips without it) and the TinyStories pair in $UHLM_MODELS.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
t_start=$(date +%s.%N)

# Debian installs haproxy in /usr/sbin, outside an unprivileged user's PATH
HAPROXY=${HAPROXY:-$(command -v haproxy || true)}
for f in /usr/sbin/haproxy /usr/local/sbin/haproxy; do
  [ -n "$HAPROXY" ] || { [ -x "$f" ] && HAPROXY=$f; }
done
[ -n "$HAPROXY" ] || { echo "SKIP: haproxy is not installed (scripts/setup.sh installs it)"; exit 0; }
export HAPROXY
slm=$UHLM_MODELS/stories-slm-0.28M.bin; llm=$UHLM_MODELS/stories-llm-2.76M.bin; tok=$UHLM_MODELS/tok512.bin
for f in "$slm" "$llm" "$tok"; do
  [ -f "$f" ] || { echo "SKIP: $f not found (set UHLM_MODELS)"; exit 0; }
done
"$bin" serve --help >/dev/null 2>&1 || { echo "SKIP: this build has no 'uhlm serve'"; exit 0; }

if grep -q __asan_init "$bin" 2>/dev/null; then D=12; NTOK=64; else D=48; NTOK=96; fi
D=${UHLM_CLUSTER_DEVICES:-$D}
W=6
dir=$tmp/cluster
cluster=("$src/scripts/cluster.sh")
dev_pids=()
cleanup() {
  for p in "${dev_pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  "${cluster[@]}" stop --dir "$dir" --timeout 5 >/dev/null 2>&1
}
at_exit cleanup

M=(--slm "$slm" --llm "$llm" -z "$tok")
prompts=("Once upon a time, there was a little girl" "The dog ran to the park" "Tom and Sam were friends"
         "One day, a big bird" "Lily wanted to play")
modes=(hlm uhlm llm)
dev_args() { # I: the options of device I (the same for its reference run)
  local i=$1
  echo "--mode ${modes[$((i % 3))]} --seed $((1000 + i)) -n $NTOK"
}
dev_prompt() { echo "${prompts[$(($1 % ${#prompts[@]}))]}"; }

# ---- the in-process references, two at a time (the machine has two cores)
ref_one() {
  local i=$1
  # shellcheck disable=SC2046
  "$bin" run "${M[@]}" $(dev_args "$i") -p "$(dev_prompt "$i")" -t 1 --json >"$tmp/ref$i.json" 2>"$tmp/ref$i.err"
}
for i in $(seq 1 $((D + W))); do
  ref_one "$i" &
  if [ $((i % 2)) = 0 ]; then wait; fi
done
wait

# ---- the cluster
"${cluster[@]}" start --dir "$dir" --bin "$bin" --timeout 60 -- -m "$llm" -z "$tok" -t 1 >"$tmp/start.out" 2>&1 \
  || { cat "$tmp/start.out" >&2; bad "cluster.sh start failed"; finish; }
ok
# shellcheck disable=SC1091
. "$dir/cluster.env"
front=127.0.0.1:$FRONT_PORT
"${cluster[@]}" status --dir "$dir" >"$tmp/status" 2>&1 && [ "$(grep -c "UP L7OK" "$tmp/status")" = 3 ] \
  && ok || bad "status after start: $(cat "$tmp/status")"
stats_port() { awk '{ print $2 }' "$dir/s$1.ports"; }
metric() { # BACKEND NAME: the value of uhlm_server_NAME on its /metrics (empty if unreachable)
  $py - "$(stats_port "$1")" "$2" <<'EOF'
import sys, urllib.request
try:
    body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=3).read().decode()
except Exception:
    sys.exit(0)
for line in body.splitlines():
    if line.startswith("uhlm_server_%s " % sys.argv[2]):
        print(int(float(line.split()[1])))
EOF
}

# ---- D devices at once through HAProxy; the shaped link (40 ms per message) makes each run
# last seconds, so the kill lands mid-run
start_dev() {
  # shellcheck disable=SC2046
  "$bin" run "${M[@]}" $(dev_args "$1") -p "$(dev_prompt "$1")" -t 1 --server "$front" \
    --channel shaped --latency 0.04 --json >"$tmp/dev$1.json" 2>"$tmp/dev$1.err" &
  dev_pids+=($!)
}
for i in $(seq 1 "$D"); do start_dev "$i"; done
# kill backend 2 once every device has opened its session (the backends' sessions_total),
# not after a guessed delay
opened=0
for _ in $(seq 1 600); do
  opened=0
  for b in 1 2 3; do v=$(metric "$b" sessions_total); opened=$((opened + ${v:-0})); done
  [ "$opened" -ge "$D" ] && break
  sleep 0.05
done
[ "$opened" -ge "$D" ] && ok || bad "only $opened of $D sessions opened"
s2_before=$(metric 2 sessions_open)
alive=0; for p in "${dev_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
[ "$alive" = "$D" ] && ok || bad "only $alive of $D devices still running at the kill (runs too short?)"
s2_ver=$(metric 2 verifications_total); s2_gen=$(metric 2 generated_tokens_total)
"${cluster[@]}" kill 2 --dir "$dir" >/dev/null || bad "cluster.sh kill 2"
t_kill=$(date +%s.%N)
sleep 1
"${cluster[@]}" restart 2 --dir "$dir" >"$tmp/restart.out" 2>&1 && ok || bad "restart: $(cat "$tmp/restart.out")"
t_back=$(date +%s.%N)
# the second wave: leastconn's least loaded backend is the restarted one
s2_sessions_restart=$(metric 2 sessions_total)
for i in $(seq $((D + 1)) $((D + W))); do start_dev "$i"; done
# drain backend 1 while the first wave still runs on it
s1_ver=$(metric 1 verifications_total); s1_gen=$(metric 1 generated_tokens_total)
s1_open=$(metric 1 sessions_open)
alive=0; for p in "${dev_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
"${cluster[@]}" kill 1 --signal TERM --dir "$dir" >/dev/null && grep -q "event=stopped" "$dir/s1.log" \
  && ok || bad "drain of backend 1: $(tail -n 3 "$dir/s1.log")"
t_drain=$(date +%s.%N)
"${cluster[@]}" restart 1 --dir "$dir" >"$tmp/restart1.out" 2>&1 && ok || bad "restart 1: $(cat "$tmp/restart1.out")"

rcs=()
for p in "${dev_pids[@]}"; do wait "$p"; rcs+=($?); done
dev_pids=()
t_end=$(date +%s.%N)
for i in $(seq 1 $((D + W))); do
  [ "${rcs[$((i - 1))]}" = 0 ] || bad "device $i: exit ${rcs[$((i - 1))]}: $(tail -n 3 "$tmp/dev$i.err")"
done

# ---- the per-backend counts (backend 2: its first life up to the kill, then the restarted one)
echo "backends (from /metrics): verifications, generated tokens, sessions"
for b in 1 2 3; do
  echo "  s$b: $(metric "$b" verifications_total) verifications, $(metric "$b" generated_tokens_total) generated, $(metric "$b" sessions_total) sessions"
done
echo "  s2 before the SIGKILL: ${s2_ver:-?} verifications, ${s2_gen:-?} generated, ${s2_before:-?} sessions open"
echo "  s1 before the drain: ${s1_ver:-?} verifications, ${s1_gen:-?} generated, ${s1_open:-?} sessions open ($alive devices running)"
s2_sessions=$(metric 2 sessions_total)
[ "${s2_sessions:-0}" -gt "${s2_sessions_restart:-0}" ] && ok \
  || bad "the restarted backend got no session of the second wave ($s2_sessions_restart -> $s2_sessions)"

$py - "$tmp" $((D + W)) "$t_start" "$t_kill" "$t_back" "$t_end" "$t_drain" <<'EOF' && ok || bad "devices differ from their in-process runs"
import json, sys
tmp, D = sys.argv[1], int(sys.argv[2])
t_start, t_kill, t_back, t_end, t_drain = map(float, sys.argv[3:8])
bad = []
unv, losses, resyncs, toks = [], 0, 0, 0
for i in range(1, D + 1):
    try:
        o = json.load(open("%s/dev%d.json" % (tmp, i)))
        r = json.load(open("%s/ref%d.json" % (tmp, i)))
    except Exception as e:
        bad.append("device %d: no JSON (%s)" % (i, e)); continue
    if o["tokens"] != r["tokens"] or o["text"] != r["text"]:
        k = next((j for j, (a, b) in enumerate(zip(o["tokens"], r["tokens"])) if a != b),
                 min(len(o["tokens"]), len(r["tokens"])))
        bad.append("device %d (%s): tokens differ from position %d (%d vs %d tokens)"
                   % (i, o["mode"], k, len(o["tokens"]), len(r["tokens"])))
    unv.append(o["unverified_tokens"])
    if o["unverified_tokens"]:
        bad.append("device %d: %d unverified tokens" % (i, o["unverified_tokens"]))
    rem = o["remote"]
    losses += rem["losses"]; resyncs += rem["resyncs"]; toks += o["generated_tokens"]
print("devices: %d finished, %d tokens, unverified per device: %s (total %d)"
      % (D, toks, ",".join(map(str, unv)), sum(unv)))
print("devices that lost their backend (killed or drained): losses %d, resyncs %d" % (losses, resyncs))
print("wall: %.1f s in all; the kill at %.1f s, backend 2 back at %.1f s, backend 1 drained "
      "at %.1f s, devices done at %.1f s" % (t_end - t_start, t_kill - t_start, t_back - t_start,
                                             t_drain - t_start, t_end - t_start))
if losses < 1 or resyncs < 1:
    bad.append("no device lost its backend: the kill did not hit a session")
for b in bad:
    print("  " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF

# the cluster is healthy again, and stops cleanly (SIGTERM: the backends drain)
"${cluster[@]}" status --dir "$dir" >"$tmp/status" 2>&1 && ok || bad "status at the end: $(cat "$tmp/status")"
"${cluster[@]}" stop --dir "$dir" >/dev/null 2>&1 && ok || bad "cluster.sh stop"
for b in 1 2 3; do
  grep -q "event=stopped" "$dir/s$b.log" && ok || bad "backend s$b did not stop gracefully: $(tail -n 2 "$dir/s$b.log")"
done
finish
