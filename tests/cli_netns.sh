#!/usr/bin/env bash
# scripts/netns_link.sh: `uhlm run --server` across a real rate-limited veth link between two
# network namespaces. The tokens equal the in-process run's, and the round trip of a 2 KB f32
# VERIFY pays the 1 Mbit/s link (about 16 ms). Skips (exit 0, with a SKIP line) where the
# script cannot run (not root, no iproute2, no namespaces); the skip path itself is tested by
# faking a non-root `id`.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
script=$src/scripts/netns_link.sh

# the skip path: a non-root user gets SKIP and 77, and nothing is created
mkdir -p "$tmp/fakebin"
printf '#!/bin/sh\necho 1000\n' >"$tmp/fakebin/id"; chmod +x "$tmp/fakebin/id"
PATH="$tmp/fakebin:$PATH" bash "$script" --bin "$bin" -- -n 1 >"$tmp/out" 2>&1
rc=$?
[ "$rc" = 77 ] && grep -q "^SKIP: needs root" "$tmp/out" && ok || bad "non-root skip: rc $rc: $(cat "$tmp/out")"

args=("${TS_PAIR[@]}" --mode hlm -p "Once upon a time" -n 30 --seed 3 -t 1 --json)
bash "$script" --bin "$bin" --serve-args "-m stories-llm-2.76M.bin" --rate 1mbit --delay 2ms -- "${args[@]}" >"$tmp/net.json" 2>"$tmp/net.err"
rc=$?
if [ "$rc" = 77 ]; then
  echo "$(cat "$tmp/net.json")"
  echo "$pass passed, $fail failed (the link test skipped)"
  [ "$fail" = 0 ]; exit
fi
[ "$rc" = 0 ] && ok || bad "netns run: rc $rc: $(cat "$tmp/net.err")"
"$bin" run "${args[@]}" >"$tmp/local.json" 2>/dev/null || bad "in-process run"
$py - "$tmp/net.json" "$tmp/local.json" <<'EOF' && ok || bad "netns results: $(cat "$tmp/net.err")"
import json, sys
n, l = (json.load(open(f)) for f in sys.argv[1:3])
assert n["tokens"] == l["tokens"] and len(n["tokens"]) == 30
r = n["remote"]
assert r["connects"] == 1 and r["losses"] == 0 and n["unverified_tokens"] == 0, r
rtt = r["rtt_seconds"] / r["requests"]
# a VERIFY carries 512 f32 = 2 KB: >= 16 ms at 1 Mbit/s (the token bucket lets a few through
# faster, so the mean is checked with slack)
assert rtt >= 0.010, rtt
EOF
ip netns list 2>/dev/null | grep -q "uhlm_\(srv\|dev\)_" && bad "namespaces left behind: $(ip netns list)" || ok
finish
