#!/usr/bin/env bash
# `uhlm serve` at its descriptor limit (the issue "Hardening the server and the loaders",
# finding 4). The server runs under `ulimit -n 20`, so 40 connections that say nothing run it
# out of descriptors: accept() fails with EMFILE while the listening socket stays readable.
# Before the fix the loop spun at 100% CPU and logged about 100k lines a second ("EMFILE ->
# 150k accept_failed lines in 1.5 s"). Now it must log the condition a bounded number of times,
# stay nearly idle, and serve a device again once the flood is gone.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/testlib.sh"
bin=${UHLM_BIN:?UHLM_BIN not set}
spid=
at_exit '[ -n "$spid" ] && kill "$spid" 2>/dev/null'

(ulimit -n 20; exec "$bin" serve "${TS_LLM[@]}" --port 0 --port-file "$tmp/port" -t 1 2>"$tmp/log") &
spid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
port=$(cat "$tmp/port" 2>/dev/null)
[ -n "$port" ] && ok || { bad "server did not start: $(cat "$tmp/log")"; finish; }

# 40 idle connections held for 1.5 s; the server's CPU time over that interval, in clock ticks
"$py" - "$port" "$spid" >"$tmp/flood" 2>&1 <<'PY' && ok || bad "flood: $(cat "$tmp/flood")"
import os, socket, struct, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
time.sleep(0.3)
c0, t0 = cpu(), time.time()
time.sleep(1.5)
used = (cpu() - c0) / os.sysconf("SC_CLK_TCK") / (time.time() - t0)
print(f"cpu {used:.2f}")
for s in socks: s.close()
time.sleep(0.3)
# a device gets in once the flood is gone
s = socket.create_connection(("127.0.0.1", port))
hello = struct.pack("<HHQI", 1, 0, 0, 512) + struct.pack("<H", 0) + struct.pack("<H", 3) + b"dev"
s.sendall(b"UHLM" + struct.pack("<HHI", 1, 1, len(hello)) + hello)
s.settimeout(10)
h = s.recv(12)
assert h[:4] == b"UHLM" and struct.unpack("<H", h[6:8])[0] == 2, h  # WELCOME
PY
cpu=$(sed -n 's/^cpu //p' "$tmp/flood")
lines=$(grep -c "event=accept_failed" "$tmp/log")
echo "EMFILE: server CPU ${cpu:-?} of a core, $lines accept_failed lines, $(wc -c <"$tmp/log") bytes of log"
[ "$lines" -ge 1 ] && ok || bad "the descriptor limit was never reached (no accept_failed line)"
[ "$lines" -le 10 ] && ok || bad "$lines accept_failed lines in about 2 s"
"$py" -c "import sys; sys.exit(0 if float('${cpu:-9}') < 0.3 else 1)" && ok || bad "server used ${cpu:-?} of a core while at the limit"
kill -TERM "$spid"; wait "$spid"; rc=$?; spid=
[ "$rc" = 0 ] && ok || bad "exit status $rc after SIGTERM"

finish
