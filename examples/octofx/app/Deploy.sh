#!/usr/bin/env bash
# Run by ferry's package step in the new release folder (its cwd), before `current` switches to it:
# restart OctoFX gracefully on the new code. By now the target is out of the load balancer, so the old
# process gets no new requests; SIGTERM lets it finish the ones in flight before the new one starts.
#   FERRY_APP_STATE    the package's folder on this target (holds `current`, the pid file and the log)
#   FERRY_RELEASE_DIR  this release's folder
#   OCTOFX_BIND/PORT   set by the server's environment (the lab's sshd); else App.Port via ferry_var
set -euo pipefail
state="${FERRY_APP_STATE:?set by the package step of ferry}"
release="${FERRY_RELEASE_DIR:-$PWD}"
bind="${OCTOFX_BIND:-127.0.0.1}"
port="${OCTOFX_PORT:-$(ferry_var App.Port)}"
pidfile="$state/octofx.pid"

if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  old="$(cat "$pidfile")"
  echo "stopping OctoFX (pid $old)"
  kill -TERM "$old"
  for _ in $(seq 1 200); do kill -0 "$old" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$old" 2>/dev/null; then echo "pid $old did not stop in 10s; killing it"; kill -KILL "$old"; fi
fi

nohup python3 "$release/octofx.py" --bind "$bind" --port "$port" --pidfile "$pidfile" \
  >>"$state/octofx.log" 2>&1 </dev/null &
for _ in $(seq 1 200); do
  if python3 - "$bind" "$port" <<'PY' 2>/dev/null; then
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.2).close()
PY
    echo "OctoFX $(cat "$release/VERSION") listening on $bind:$port (pid $(cat "$pidfile"))"
    exit 0
  fi
  sleep 0.05
done
echo "OctoFX did not start listening on $bind:$port; the end of its log:" >&2
tail -n 20 "$state/octofx.log" >&2 || true
exit 1
