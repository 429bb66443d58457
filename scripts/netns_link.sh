#!/usr/bin/env bash
# Runs `uhlm serve` and `uhlm run --server` across a real rate-limited link: two network
# namespaces joined by a veth pair, each end shaped by `tc netem rate ... delay ...` (DESIGN
# §4). The server lives in one namespace, the device in the other, and the device's wall time
# then pays a real link rather than the modelled one.
#
# usage: scripts/netns_link.sh [--rate R] [--up-rate R] [--down-rate R] [--delay D]
#                              [--bin PATH] [--serve-args "ARGS"] [--require-netem]
#                              [--] [uhlm run ARGS...]
#   --rate R        both directions, tc syntax (default 1mbit)
#   --up-rate R     device -> server only;  --down-rate R: server -> device only
#   --delay D       one-way delay per direction, tc syntax (default 5ms; netem only)
#   --bin PATH      the uhlm binary (default build/uhlm)
#   --serve-args A  extra arguments for `uhlm serve` (word-split)
#   --require-netem skip rather than fall back to tbf where netem is missing
# Everything after the options goes to `uhlm run` (which gets --server ADDR:PORT added).
# Prints the run's stdout; its stderr and the server's log go to stderr.
#
# Needs root, iproute2 (`ip`, `tc`) and network-namespace support. Where any is missing it
# prints "SKIP: <why>" and exits 77, changing nothing. Where the kernel has no netem qdisc
# (sch_netem not built or not loaded) it shapes the rate with tbf instead, without the
# delay, and says so; --require-netem makes that a skip. Namespaces, links and the server are
# removed on exit, whatever happens.
set -u
cd "$(dirname "$0")/.."

rate=1mbit; up_rate=; down_rate=; delay=5ms; bin=build/uhlm; serve_args=; require_netem=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --up-rate) up_rate=$2; shift 2 ;;
    --down-rate) down_rate=$2; shift 2 ;;
    --delay) delay=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --serve-args) serve_args=$2; shift 2 ;;
    --require-netem) require_netem=1; shift ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
up_rate=${up_rate:-$rate}; down_rate=${down_rate:-$rate}

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces and tc); run it with sudo"
command -v ip >/dev/null 2>&1 || skip "'ip' (iproute2) not found"
command -v tc >/dev/null 2>&1 || skip "'tc' (iproute2) not found"
[ -x "$bin" ] || skip "no uhlm binary at $bin (build first, or pass --bin)"
"$bin" serve --help >/dev/null 2>&1 || skip "$bin has no 'serve' command"

id=$$
ns_s=uhlm_srv_$id; ns_d=uhlm_dev_$id
# interface names: at most 15 bytes
if_s=uhs$((id % 100000)); if_d=uhd$((id % 100000))
addr_s=10.77.0.1; addr_d=10.77.0.2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/uhlm_netns.XXXXXX")
spid=
cleanup() {
  [ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
  ip netns del "$ns_s" 2>/dev/null
  ip netns del "$ns_d" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$ns_s" 2>"$tmp/e" || skip "cannot create a network namespace: $(cat "$tmp/e")"
ip netns add "$ns_d" 2>"$tmp/e" || skip "cannot create a network namespace: $(cat "$tmp/e")"
ip link add "$if_s" type veth peer name "$if_d" 2>"$tmp/e" || skip "cannot create a veth pair: $(cat "$tmp/e")"
fail() { echo "netns_link: $*" >&2; exit 1; }
ip link set "$if_s" netns "$ns_s" && ip link set "$if_d" netns "$ns_d" || fail "moving the veth ends"
ip -n "$ns_s" addr add "$addr_s/24" dev "$if_s" && ip -n "$ns_d" addr add "$addr_d/24" dev "$if_d" \
  || fail "addressing the veth ends"
for ns in "$ns_s" "$ns_d"; do ip -n "$ns" link set lo up || fail "lo up in $ns"; done
ip -n "$ns_s" link set "$if_s" up && ip -n "$ns_d" link set "$if_d" up || fail "veth up"

# Egress shaping on each end: the device's end shapes the uplink, the server's the downlink.
shape() { # NS IF RATE
  if ip netns exec "$1" tc qdisc add dev "$2" root netem rate "$3" delay "$delay" 2>"$tmp/e"; then
    echo "netns_link: $2: netem rate $3 delay $delay" >&2
    return 0
  fi
  grep -qi "unknown" "$tmp/e" || fail "tc netem on $2: $(cat "$tmp/e")"
  [ "$require_netem" = 1 ] && skip "the kernel has no netem qdisc (sch_netem)"
  # tbf: a token bucket of one MTU-ish burst gives the same long-run rate; no delay
  ip netns exec "$1" tc qdisc add dev "$2" root tbf rate "$3" burst 4kb latency 2s 2>"$tmp/e" \
    || skip "neither netem nor tbf is available: $(cat "$tmp/e")"
  echo "netns_link: $2: no netem in this kernel; tbf rate $3 (no delay)" >&2
}
shape "$ns_d" "$if_d" "$up_rate"
shape "$ns_s" "$if_s" "$down_rate"

# shellcheck disable=SC2086
ip netns exec "$ns_s" "$bin" serve --host "$addr_s" --insecure --port 0 --port-file "$tmp/port" $serve_args \
  2>"$tmp/serve.log" &
spid=$!
for _ in $(seq 1 200); do
  [ -s "$tmp/port" ] && break
  kill -0 "$spid" 2>/dev/null || break
  sleep 0.05
done
[ -s "$tmp/port" ] || fail "the server did not start: $(cat "$tmp/serve.log")"
port=$(cat "$tmp/port")
echo "netns_link: server $addr_s:$port in $ns_s, device in $ns_d" >&2

ip netns exec "$ns_d" "$bin" run --server "$addr_s:$port" "$@"
rc=$?
kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; spid=
sed 's/^/netns_link: server: /' "$tmp/serve.log" | tail -n 5 >&2
exit "$rc"
