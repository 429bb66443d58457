#!/usr/bin/env bash
# Starts a local uhlm cluster on loopback: N `uhlm serve` backends (default 3), each with its
# stats port (GET /health, GET /metrics), behind HAProxy in TCP mode with `balance leastconn`
# and HTTP health checks on each backend's real /health. Devices connect to the one frontend
# address: `uhlm run --server 127.0.0.1:FRONT`. The generated haproxy.cfg, the logs, the pid and
# port files live in the cluster folder (default out/cluster, or --dir D). Everything runs
# unprivileged (no chroot, no user switch, no syslog); ports are chosen free by the kernel
# (backends) or given.
#
#   scripts/cluster.sh start [-n N] [--dir D] [--port P] [--admin-port P] [--sessions S]
#                            [--bin UHLM] [--timeout S] [-- SERVE-ARGS...]
#       starts the backends and HAProxy, waits until HAProxy's health checks report every
#       backend up, prints the frontend address, and returns (the processes keep running).
#       SERVE-ARGS go to every `uhlm serve` (the model: -m LLM [-z TOKENIZER], --auth-token-file,
#       -t THREADS, ...; the defaults find the TinyStories LLM through $UHLM_MODELS).
#       A failed start stops whatever it had started.
#   scripts/cluster.sh run   [same options]   start, then stay in the foreground until Ctrl-C
#       or SIGTERM, and stop everything on the way out
#   scripts/cluster.sh stop [--dir D]      SIGTERM to the backends (they drain: queued requests
#       are answered, devices get SHUTTING_DOWN) and HAProxy, SIGKILL after --timeout
#   scripts/cluster.sh status [--dir D]    the frontend, each backend's pid, ports and HAProxy
#       state; exit 0 when every backend is up, 1 otherwise
#   scripts/cluster.sh wait [--dir D] [--timeout S]   until HAProxy reports every backend up
#   scripts/cluster.sh kill I [--signal SIG] [--dir D] [--timeout S]   signals backend I (1..N;
#       SIGKILL by default, TERM drains it), for failure drills; after KILL, TERM or INT it
#       returns once the process is gone
#   scripts/cluster.sh restart I [--dir D] [--timeout S]   starts backend I again on its own
#       ports (it must not be running) and waits until HAProxy reports it up
#
# Admission limits: through HAProxy every device comes from one address (HAProxy's), so each
# backend gets --max-sessions S (default 32) and --max-conns / --max-conns-per-addr 2*S+8, and
# HAProxy never sends a backend more than that many connections (`maxconn`: it queues the rest).
# See docs/deploy.md for real hosts. Needs: haproxy (Debian `haproxy`; found in PATH or in
# /usr/sbin, where Debian puts it outside an unprivileged PATH; $HAPROXY overrides), python3, the
# uhlm binary.
set -euo pipefail

prog=$(basename "$0")
root=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "$prog: $*" >&2; exit 1; }
# usage STATUS: the header above, on stdout for --help (0), on stderr for a usage error
usage() {
  if [ "$1" = 0 ]; then sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  else sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; fi
  exit "$1"
}

cmd=${1:-}
[ -n "$cmd" ] || usage 2
shift
case "$cmd" in -h|--help|help) usage 0 ;; esac

dir=$root/out/cluster
n=3
front_port=0
admin_port=0
sessions=32
bin=${UHLM_BIN:-$root/build/uhlm}
timeout_s=30
signal=KILL
index=""
serve_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--servers) n=${2:?$1 needs a value}; shift 2 ;;
    --dir) dir=${2:?--dir needs a folder}; shift 2 ;;
    --port) front_port=${2:?--port needs a port}; shift 2 ;;
    --admin-port) admin_port=${2:?--admin-port needs a port}; shift 2 ;;
    --sessions) sessions=${2:?--sessions needs a number}; shift 2 ;;
    --bin) bin=${2:?--bin needs the uhlm binary}; shift 2 ;;
    --timeout) timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
    --signal) signal=${2:?--signal needs a signal name}; shift 2 ;;
    --) shift; serve_args=("$@"); break ;;
    -h|--help) usage 0 ;;
    -*) die "unknown option '$1' (see $prog --help)" ;;
    *) [ -z "$index" ] || die "unexpected argument '$1'"; index=$1; shift ;;
  esac
done
isint() { [[ "$1" =~ ^[0-9]+$ ]]; }
isint "$n" && [ "$n" -ge 1 ] && [ "$n" -le 64 ] || die "-n: '$n' is not a number of servers in 1..64"
isint "$front_port" && [ "$front_port" -le 65535 ] || die "--port: '$front_port' is not a port"
isint "$admin_port" && [ "$admin_port" -le 65535 ] || die "--admin-port: '$admin_port' is not a port"
isint "$sessions" && [ "$sessions" -ge 1 ] && [ "$sessions" -le 4096 ] \
  || die "--sessions: '$sessions' is not in 1..4096"
[[ "$timeout_s" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--timeout: '$timeout_s' is not a number of seconds"
mkdir -p "$dir" 2>/dev/null || die "cannot create the cluster folder $dir"
dir=$(cd "$dir" && pwd)
state=$dir/cluster.env

# A zombie (dead, not yet reaped by whoever inherited it) is not alive.
alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
  local st
  st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 0
  [ "$st" != Z ]
}
pid_of() { cat "$dir/$1.pid" 2>/dev/null || true; }
now() { date +%s.%N; }
elapsed_over() { awk -v a="$1" -v b="$(now)" -v t="$2" 'BEGIN { exit !(b - a > t) }'; }

load_state() {
  [ -f "$state" ] || die "no cluster in $dir (run '$prog start' first)"
  # shellcheck disable=SC1090
  . "$state"
}

# A free loopback port, from the kernel (closed again at once; HAProxy binds it right after).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# http_get PORT PATH: the body of GET http://127.0.0.1:PORT/PATH (HTTP/1.0), or fails.
http_get() {
  python3 - "$1" "$2" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]), timeout=3) as r:
        sys.stdout.write(r.read().decode("utf-8", "replace"))
except Exception as e:
    sys.stderr.write("%s\n" % e)
    sys.exit(1)
EOF
}

# Prints "NAME STATUS CHECK" for each backend server, from HAProxy's stats CSV.
haproxy_states() {
  http_get "$ADMIN_PORT" "/;csv" 2>/dev/null | awk -F, '
    NR == 1 { for (i = 1; i <= NF; i++) { h = $i; sub(/^# /, "", h); col[h] = i }; next }
    $1 == "uhlm_servers" && $2 != "BACKEND" && $2 != "FRONTEND" {
      print $2, $col["status"], $col["check_status"] }'
}

# Starts backend i (ports 0 = kernel-chosen), waits for its listening line, records its ports.
start_backend() {
  local i=$1 port=$2 sport=$3 log=$dir/s$1.log
  local before
  before=$(grep -c "event=listening" "$log" 2>/dev/null || true)
  [ -n "$before" ] || before=0
  local max_conns=$((2 * SESSIONS + 8))
  # setsid: the backend outlives this script and a Ctrl-C in its terminal; stop ends it
  setsid "$BIN" serve --host 127.0.0.1 --port "$port" --stats-port "$sport" \
    --max-sessions "$SESSIONS" --max-conns "$max_conns" --max-conns-per-addr "$max_conns" \
    "${SERVE_ARGS[@]}" >>"$log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/s$i.pid"
  local t0 line=""
  t0=$(now)
  while :; do
    line=$(grep "event=listening" "$log" 2>/dev/null | sed -n "$((before + 1))p")
    [ -n "$line" ] && break
    alive "$pid" || { echo "$prog: backend s$i exited while starting; its log $log ends:" >&2
                      tail -n 5 "$log" >&2; return 1; }
    elapsed_over "$t0" "$TIMEOUT" && { echo "$prog: backend s$i did not listen within $TIMEOUT s (log $log)" >&2; return 1; }
    sleep 0.05
  done
  local p sp
  p=$(sed -n 's/.* port=\([0-9]*\) .*/\1/p' <<<"$line")
  sp=$(sed -n 's/.* stats_port=\([0-9]*\) .*/\1/p' <<<"$line")
  [ -n "$p" ] && [ -n "$sp" ] && [ "$sp" != -1 ] || { echo "$prog: backend s$i: cannot read its ports from: $line" >&2; return 1; }
  echo "$p $sp" >"$dir/s$i.ports"
}

write_haproxy_cfg() {
  local cfg=$dir/haproxy.cfg max_conns=$((2 * SESSIONS + 8))
  {
    echo "# generated by scripts/cluster.sh on $(date -u +%FT%TZ); do not edit, it is rewritten on start"
    echo "global"
    echo "    # no maxconn: HAProxy derives it from this user's descriptor limit"
    echo "    # unprivileged: no chroot, no user switch, no syslog; the admin socket is this user's"
    echo "    stats socket $dir/haproxy.sock mode 600 level admin"
    echo "defaults"
    echo "    mode tcp"
    echo "    # a device holds its connection for whole sessions, silent while it drafts"
    echo "    timeout connect 2s"
    echo "    timeout client 1h"
    echo "    timeout server 1h"
    echo "    timeout queue 10s"
    echo "    timeout check 2s"
    echo "    # a backend that refuses the connection is tried again, on another server"
    echo "    retries 3"
    echo "    option redispatch 1"
    echo "frontend uhlm"
    echo "    bind 127.0.0.1:$FRONT_PORT"
    echo "    default_backend uhlm_servers"
    echo "backend uhlm_servers"
    echo "    balance leastconn"
    echo "    # the backends' own health endpoint: 200 while they accept sessions, 503 while draining"
    echo "    option httpchk"
    echo "    http-check send meth GET uri /health"
    echo "    http-check expect status 200"
    echo "    default-server check inter 500ms fastinter 250ms downinter 500ms rise 1 fall 2 maxconn $max_conns"
    local i p sp
    for i in $(seq 1 "$N"); do
      read -r p sp <"$dir/s$i.ports"
      echo "    server s$i 127.0.0.1:$p check port $sp"
    done
    echo "listen admin"
    echo "    mode http"
    echo "    bind 127.0.0.1:$ADMIN_PORT"
    echo "    # HAProxy's own counters for Prometheus (the backends' are on their stats ports)"
    echo "    http-request use-service prometheus-exporter if { path /metrics }"
    echo "    stats enable"
    echo "    stats uri /"
  } >"$cfg"
}

start_haproxy() {
  "$HAPROXY" -c -q -f "$dir/haproxy.cfg" >"$dir/haproxy.check" 2>&1 \
    || { echo "$prog: haproxy rejects $dir/haproxy.cfg:" >&2; cat "$dir/haproxy.check" >&2; return 1; }
  # -db: stays in the foreground of its own session, so its pid is ours to signal
  setsid "$HAPROXY" -db -f "$dir/haproxy.cfg" >>"$dir/haproxy.log" 2>&1 </dev/null &
  echo $! >"$dir/haproxy.pid"
}

# Waits until HAProxy answers and reports the named backends (all when none named) up.
wait_up() {
  local t0 want
  t0=$(now)
  want=("$@")
  [ ${#want[@]} -gt 0 ] || mapfile -t want < <(seq 1 "$N" | sed 's/^/s/')
  while :; do
    local states ok=1 w
    states=$(haproxy_states || true)
    for w in "${want[@]}"; do
      grep -q "^$w UP L7OK" <<<"$states" || ok=0
    done
    [ "$ok" = 1 ] && return 0
    alive "$(pid_of haproxy)" || { echo "$prog: haproxy exited; $dir/haproxy.log ends:" >&2
                                  tail -n 5 "$dir/haproxy.log" >&2; return 1; }
    if elapsed_over "$t0" "$TIMEOUT"; then
      echo "$prog: backends not all up within $TIMEOUT s; HAProxy reports:" >&2
      echo "${states:-  (no answer on its admin port $ADMIN_PORT)}" >&2
      return 1
    fi
    sleep 0.1
  done
}

# Stops every process of the cluster: SIGTERM (the backends drain), SIGKILL after the timeout.
stop_all() {
  local pids=() f pid
  for f in "$dir"/s*.pid "$dir"/haproxy.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    alive "$pid" && { kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); }
  done
  local t0
  t0=$(now)
  for pid in "${pids[@]}"; do
    while alive "$pid"; do
      if elapsed_over "$t0" "$TIMEOUT"; then
        echo "$prog: pid $pid did not stop within $TIMEOUT s: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.05
    done
  done
  rm -f "$dir"/s*.pid "$dir"/haproxy.pid "$dir"/haproxy.sock
}

start_failed() {
  local rc=$?
  if [ "$rc" != 0 ]; then TIMEOUT=5 stop_all; fi
}

cluster_start() {
  HAPROXY=${HAPROXY:-$(command -v haproxy || true)}
  for f in /usr/sbin/haproxy /usr/local/sbin/haproxy; do
    [ -n "$HAPROXY" ] || { [ -x "$f" ] && HAPROXY=$f; }
  done
  [ -n "$HAPROXY" ] && [ -x "$HAPROXY" ] \
    || die "haproxy ${HAPROXY:+at $HAPROXY }not found (Debian: apt-get install haproxy; scripts/setup.sh installs it)"
  command -v python3 >/dev/null || die "python3 is needed (free ports, HAProxy's stats)"
  [ -x "$bin" ] || die "no uhlm binary at $bin (build it with scripts/build.sh release, or give --bin)"
  local f
  for f in "$dir"/s*.pid "$dir"/haproxy.pid; do
    [ -f "$f" ] && alive "$(cat "$f")" && die "a cluster is already running in $dir ($prog stop --dir $dir)"
  done
  rm -f "$dir"/s*.pid "$dir"/s*.ports "$dir"/s*.log "$dir"/haproxy.* "$state"
  N=$n
  SESSIONS=$sessions
  BIN=$bin
  TIMEOUT=$timeout_s
  SERVE_ARGS=("${serve_args[@]}")
  [ "$front_port" != 0 ] && FRONT_PORT=$front_port || FRONT_PORT=$(free_port)
  [ "$admin_port" != 0 ] && ADMIN_PORT=$admin_port || ADMIN_PORT=$(free_port)
  [ "$FRONT_PORT" != "$ADMIN_PORT" ] || die "--port and --admin-port must differ"
  for f in "${SERVE_ARGS[@]}"; do
    case "$f" in
      --quiet) die "--quiet: the backends must log (their listening line names their ports)" ;;
      --port|--port=*|--stats-port|--stats-port=*|--host|--host=*|--port-file|--port-file=*)
        die "$f: the script sets the backends' addresses (--port/--admin-port are HAProxy's)" ;;
      --max-sessions|--max-sessions=*|--max-conns|--max-conns=*|--max-conns-per-addr|--max-conns-per-addr=*)
        die "$f: use the script's --sessions S (it sets these and HAProxy's maxconn together)" ;;
    esac
  done
  # a failed start leaves nothing running
  trap start_failed EXIT
  local i
  for i in $(seq 1 "$N"); do start_backend "$i" 0 0 || exit 1; done
  write_haproxy_cfg
  {
    echo "N=$N"; echo "SESSIONS=$SESSIONS"; echo "FRONT_PORT=$FRONT_PORT"; echo "ADMIN_PORT=$ADMIN_PORT"
    printf 'BIN=%q\n' "$BIN"; printf 'TIMEOUT=%q\n' "$TIMEOUT"
    printf 'SERVE_ARGS=('; printf '%q ' "${SERVE_ARGS[@]}"; printf ')\n'
  } >"$state"
  start_haproxy || exit 1
  wait_up || exit 1
  trap - EXIT
  echo "cluster up: $N backends behind 127.0.0.1:$FRONT_PORT (HAProxy stats: http://127.0.0.1:$ADMIN_PORT/; folder $dir)"
  echo "devices: uhlm run --server 127.0.0.1:$FRONT_PORT"
}

case "$cmd" in
  start)
    cluster_start ;;
  run)
    cluster_start
    trap 'stop_all; echo "cluster stopped" >&2' EXIT
    trap 'exit 0' INT TERM
    while sleep 1; do :; done ;;
  stop)
    load_state
    TIMEOUT=$timeout_s
    stop_all
    echo "cluster in $dir stopped" ;;
  status)
    load_state
    echo "frontend 127.0.0.1:$FRONT_PORT, HAProxy stats http://127.0.0.1:$ADMIN_PORT/ (pid $(pid_of haproxy), $(alive "$(pid_of haproxy)" && echo running || echo stopped))"
    states=$(haproxy_states || true)
    all=0
    for i in $(seq 1 "$N"); do
      read -r p sp <"$dir/s$i.ports"
      pid=$(pid_of "s$i")
      st=$(awk -v s="s$i" '$1 == s { print $2, $3 }' <<<"$states")
      printf 's%d pid %s (%s) port %s stats %s haproxy %s\n' "$i" "${pid:--}" \
        "$(alive "$pid" && echo running || echo stopped)" "$p" "$sp" "${st:-unknown}"
      [[ "$st" == "UP L7OK" ]] || all=1
    done
    exit $all ;;
  wait)
    load_state
    TIMEOUT=$timeout_s
    wait_up ;;
  kill)
    load_state
    isint "$index" && [ "$index" -ge 1 ] && [ "$index" -le "$N" ] || die "kill: which backend? (1..$N)"
    pid=$(pid_of "s$index")
    alive "$pid" || die "backend s$index is not running"
    kill -s "$signal" "$pid" || die "cannot send SIG$signal to s$index (pid $pid)"
    case "${signal#SIG}" in
      KILL|9|TERM|15|INT|2)
        t0=$(now)  # gone when this returns (TERM: drained), so a restart can follow at once
        while alive "$pid"; do
          elapsed_over "$t0" "$timeout_s" && die "backend s$index (pid $pid) still there $timeout_s s after SIG$signal"
          sleep 0.02
        done ;;
    esac
    echo "sent SIG$signal to backend s$index (pid $pid)" ;;
  restart)
    load_state
    TIMEOUT=$timeout_s
    isint "$index" && [ "$index" -ge 1 ] && [ "$index" -le "$N" ] || die "restart: which backend? (1..$N)"
    alive "$(pid_of "s$index")" && die "backend s$index is still running (pid $(pid_of "s$index"))"
    read -r p sp <"$dir/s$index.ports"
    start_backend "$index" "$p" "$sp" || exit 1
    wait_up "s$index" || exit 1
    echo "backend s$index is back on port $p (stats $sp)" ;;
  *)
    die "unknown command '$cmd' (start, run, stop, status, wait, kill, restart; see $prog --help)" ;;
esac
