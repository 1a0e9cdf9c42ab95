#!/usr/bin/env bash
# Run after `current` points at this release: restart the app gracefully on the new code.
# The old process finishes its in-flight requests (SIGTERM → shutdown) while the target is out of the
# load balancer; the new one starts from `current`.
set -euo pipefail
app_dir="$(cd "$(dirname "$0")" && pwd)"
state_dir="${FERRY_APP_STATE:-$(dirname "$(dirname "$app_dir")")}"
pidfile="$state_dir/octofx.pid"
if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  old="$(cat "$pidfile")"
  kill -TERM "$old"
  for _ in $(seq 1 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.05; done
fi
nohup python3 "$state_dir/current/octofx.py" --bind "${OCTOFX_BIND:-127.0.0.1}" --port "${OCTOFX_PORT:-8080}" \
  --pidfile "$pidfile" >"$state_dir/octofx.log" 2>&1 < /dev/null &
for _ in $(seq 1 100); do
  if python3 - "${OCTOFX_BIND:-127.0.0.1}" "${OCTOFX_PORT:-8080}" <<'PY' 2>/dev/null; then exit 0; fi
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.2).close()
PY
  sleep 0.05
done
echo "OctoFX did not start listening" >&2
exit 1
