#!/usr/bin/env bash
# Run when a step of this release's installation failed. `current` still names the release that was
# live; if the failure left no app running, start that one again so a person can put the target back
# (ferry leaves it out of the load balancer either way).
set -uo pipefail
state="${FERRY_APP_STATE:?set by the package step of ferry}"
pidfile="$state/octofx.pid"
alive() { local s; s="$(sed -n 's/.*) \(.\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)"; [[ -n "$s" && "$s" != Z ]]; }
if [[ -f "$pidfile" ]] && alive "$(cat "$pidfile")"; then
  echo "OctoFX is still running (pid $(cat "$pidfile")); nothing to restore"
  exit 0
fi
if [[ ! -e "$state/current/octofx.py" ]]; then
  echo "no earlier release to restore"
  exit 0
fi
nohup python3 "$(readlink -f "$state/current")/octofx.py" --bind "${OCTOFX_BIND:-127.0.0.1}" \
  --port "${OCTOFX_PORT:-$(ferry_var App.Port)}" --pidfile "$pidfile" >>"$state/octofx.log" 2>&1 </dev/null &
echo "restarted the live release $(cat "$state/current/VERSION") (it stays out of the load balancer)"
