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
set -o pipefail
# --- end of preamble ---
"""
