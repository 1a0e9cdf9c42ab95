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
# running and not a zombie (an exited app waits for init to reap it; `kill -0` would still see it)
alive() { local s; s="$(sed -n 's/.*) \(.\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)"; [[ -n "$s" && "$s" != Z ]]; }

if [[ -f "$pidfile" ]] && alive "$(cat "$pidfile")"; then
  old="$(cat "$pidfile")"
  echo "stopping OctoFX (pid $old)"
  kill -TERM "$old"
  for _ in $(seq 1 500); do alive "$old" || break; sleep 0.02; done
  if alive "$old"; then echo "pid $old did not stop in 10s; killing it"; kill -KILL "$old"; fi
fi

nohup python3 "$release/octofx.py" --bind "$bind" --port "$port" --pidfile "$pidfile" \
  >>"$state/octofx.log" 2>&1 </dev/null &
for _ in $(seq 1 500); do
  if (exec 3<>"/dev/tcp/$bind/$port") 2>/dev/null; then
    echo "OctoFX $(cat "$release/VERSION") listening on $bind:$port (pid $(cat "$pidfile"))"
    exit 0
  fi
  sleep 0.02
done
echo "OctoFX did not start listening on $bind:$port; the end of its log:" >&2
tail -n 20 "$state/octofx.log" >&2 || true
exit 1
