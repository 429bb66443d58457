# serve_helpers.sh: sourced by shell tests that run `uhlm serve` in the background, after
# testlib.sh (which gives $tmp, a scratch folder, and bad(), which records a failure). Needs,
# before the calls: $bin (the uhlm binary) and an array pids (killed by the test's at_exit).

# start_server NAME [ARGS...]: starts `uhlm serve` in the background; sets spid and sport.
start_server() {
  local name=$1; shift
  rm -f "$tmp/$name.port"
  "$bin" serve -m stories-llm-2.76M.bin -t 1 --port-file "$tmp/$name.port" "$@" 2>"$tmp/$name.log" &
  spid=$!
  pids+=("$spid")
  for _ in $(seq 1 200); do
    [ -s "$tmp/$name.port" ] && break
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.05
  done
  sport=$(cat "$tmp/$name.port" 2>/dev/null)
  [ -n "$sport" ] || { bad "server $name did not start: $(cat "$tmp/$name.log")"; return 1; }
}
stop_server() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
