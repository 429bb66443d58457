#!/usr/bin/env bash
# The stats port as a load balancer and Prometheus see it: GET /health is 200 "ok" while the
# server takes sessions and 503 from the stop request until the exit; GET /metrics is the
# Prometheus text (checked with `promtool check metrics` when promtool is installed, else
# SKIP); another path is 404, another method 405, a request line that does not parse 400.
# Requests go through curl when it is installed, else through bash's /dev/tcp.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
spid=
at_exit '[ -n "$spid" ] && kill "$spid" 2>/dev/null'

rm -f "$tmp/port"
"$bin" serve "${TS_LLM[@]}" --port 0 --port-file "$tmp/port" --stats-port 0 -t 1 2>"$tmp/log" &
spid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && grep -q "event=listening" "$tmp/log" && break; sleep 0.1; done
sport=$(sed -n 's/.*event=listening.* stats_port=\([0-9]*\).*/\1/p' "$tmp/log" | head -1)
[ -n "$sport" ] || { echo "FAIL: server did not start: $(cat "$tmp/log")" >&2; exit 1; }

# raw METHOD PATH: the whole response (head and body) into $tmp/resp
raw() {
  exec 3<>"/dev/tcp/127.0.0.1/$sport" || { : >"$tmp/resp"; return; }
  printf '%s %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$1" "$2" >&3
  timeout 5 cat <&3 >"$tmp/resp"
  exec 3<&-
}
# METHOD PATH: the status code on stdout, the body into $tmp/body
req() {
  if command -v curl >/dev/null; then
    curl -s -o "$tmp/body" -w '%{http_code}' -X "$1" --max-time 5 "http://127.0.0.1:$sport$2"
  else
    raw "$1" "$2"
    sed -n '1s/^HTTP\/1\.[01] \([0-9]*\).*/\1/p' "$tmp/resp" | tr -d '\r'
    sed '1,/^\r\{0,1\}$/d' "$tmp/resp" >"$tmp/body"
  fi
}
expect() { # CODE METHOD PATH [BODY-REGEX]
  local code; code=$(req "$2" "$3")
  [ "$code" = "$1" ] && { [ -z "${4:-}" ] || grep -qE "$4" "$tmp/body"; } && ok ||
    bad "$2 $3: status '$code' (want $1), body: $(head -c 200 "$tmp/body")"
}

expect 200 GET /health '^ok$'
expect 200 GET '/health?verbose=1' '^ok$'
expect 200 GET /metrics '^uhlm_server_sessions_max [0-9]+$'
expect 404 GET /nope 'not found'
expect 404 GET / 'not found'
expect 404 GET /metricsx
expect 405 POST /health
expect 405 DELETE /metrics
raw GET /metrics
grep -q $'^Content-Type: text/plain; version=0.0.4\r$' "$tmp/resp" && ok || bad "metrics content type: $(head -5 "$tmp/resp")"
raw POST /health
grep -q $'^Allow: GET\r$' "$tmp/resp" && ok || bad "405 without Allow: $(head -5 "$tmp/resp")"
# a request line that does not parse
exec 3<>"/dev/tcp/127.0.0.1/$sport" && { printf 'hello\r\n\r\n' >&3; timeout 5 cat <&3 >"$tmp/resp"; exec 3<&-; }
grep -q '^HTTP/1.0 400' "$tmp/resp" && ok || bad "garbage request: $(head -c 200 "$tmp/resp")"

# the scrape passes Prometheus's own checker
req GET /metrics >/dev/null
if command -v promtool >/dev/null; then
  promtool check metrics <"$tmp/body" >"$tmp/prom" 2>&1 && ok || bad "promtool check metrics: $(cat "$tmp/prom")"
else
  echo "SKIP: promtool not installed (Debian package prometheus): /metrics not checked with it"
fi

# while stopping: a reader that connected before the stop and one that connects after it both
# get 503 (the stop is seen in the log before either request ends; the first reader's open
# request keeps the server stopping, not stopped, for up to its 1 s close grace)
exec 4<>"/dev/tcp/127.0.0.1/$sport"
printf 'GET /health HTTP/1.0\r\n' >&4
kill -TERM "$spid"
for _ in $(seq 50); do grep -q "event=stopping" "$tmp/log" && break; sleep 0.02; done
raw GET /health
grep -q '^HTTP/1.0 503' "$tmp/resp" && grep -q '^stopping' "$tmp/resp" && ok ||
  bad "new reader's health while stopping: $(head -c 200 "$tmp/resp")"
printf '\r\n' >&4
timeout 5 cat <&4 >"$tmp/resp"
exec 4<&-
grep -q '^HTTP/1.0 503' "$tmp/resp" && grep -q '^stopping' "$tmp/resp" && ok ||
  bad "health while stopping: $(head -c 200 "$tmp/resp")"
wait "$spid"; rc=$?; spid=
[ "$rc" = 0 ] && ok || bad "exit status after SIGTERM: $rc"
grep -q "event=stopped" "$tmp/log" && ok || bad "no event=stopped: $(tail -3 "$tmp/log")"

finish
