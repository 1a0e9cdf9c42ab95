"""Fixed script text shared by the bash transports. Values never appear here: scripts read them from the
JSON document whose path is in ``FERRY_DATA``."""

BASH_PREAMBLE = r"""
# --- ferry preamble: variables are read from $FERRY_DATA, never pasted into this script ---
ferry_var() {
  python3 - "$1" <<'FERRY_PY'
import json, os, sys
data = json.load(open(os.environ["FERRY_DATA"])) if os.environ.get("FERRY_DATA") else {}
variables = {k.casefold(): v for k, v in data.get("variables", {}).items()}
value = variables.get(sys.argv[1].casefold())
if value is None:
    sys.exit(f"ferry_var: unknown variable {sys.argv[1]!r}")
sys.stdout.write(value)
FERRY_PY
}
get_octopusvariable() { ferry_var "$1"; }
# Output variables: one line on stdout that the transport takes out of the log (steps.transports.service_messages);
# name and value travel as base64, so no value can break the line.
ferry_set() {
  if [ "$#" -lt 2 ] || [ "$#" -gt 3 ] || [ -z "$1" ]; then
    echo "ferry_set: expected NAME VALUE [-sensitive], got $# argument(s)" >&2; return 2
  fi
  local ferry_sensitive=False
  case "${3-}" in
    "") ;;
    -sensitive|--sensitive|-Sensitive) ferry_sensitive=True ;;
    *) echo "ferry_set: unknown option '$3' (expected -sensitive)" >&2; return 2 ;;
  esac
  if [ -z "${FERRY_SERVICE_TOKEN-}" ]; then
    echo "ferry_set: output variables can be set only by a step's script" >&2; return 2
  fi
  printf "##ferry[setVariable name='%s' value='%s' sensitive='%s' token='%s']\n" \
    "$(printf '%s' "$1" | base64 | tr -d '\n')" "$(printf '%s' "$2" | base64 | tr -d '\n')" \
    "$ferry_sensitive" "$FERRY_SERVICE_TOKEN"
}
set_octopusvariable() { ferry_set "$@"; }
set -o pipefail
# --- end of preamble ---
"""
