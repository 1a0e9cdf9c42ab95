"""The target journal: which release (and digest) of which project is installed for which environment.

It lives on the target itself (``~/.ferry/journal.json``), as Octopus's Tentacle keeps its deployment
journal: a re-run skips targets already at the release's digest, and rollback knows what was there.
"""

from __future__ import annotations

import json
from typing import Any

from snapshots.errors import TransportError
from steps.transport import Transport

_READ = r"""
python3 - <<'FERRY_PY'
import json, os
path = os.path.join(os.environ["HOME"], ".ferry", "journal.json")
try:
    print(json.dumps(json.load(open(path))))
except FileNotFoundError:
    print("{}")
FERRY_PY
"""

_WRITE = r"""
python3 - <<'FERRY_PY'
import json, os
data = json.load(open(os.environ["FERRY_DATA"]))
folder = os.path.join(os.environ["HOME"], ".ferry")
os.makedirs(folder, exist_ok=True)
path = os.path.join(folder, "journal.json")
try:
    journal = json.load(open(path))
except FileNotFoundError:
    journal = {}
key, entry = data["key"], data["entry"]
previous = journal.get(key)
history = ([previous] + previous.get("history", []))[:10] if previous else []
if previous:
    previous.pop("history", None)
journal[key] = {**entry, "history": history}
tmp = path + ".tmp"
with open(tmp, "w") as fh:
    json.dump(journal, fh, indent=1, sort_keys=True)
os.replace(tmp, path)
FERRY_PY
"""


def journal_key(project: str, environment: str) -> str:
    return f"{project}/{environment}"


def read(transport: Transport, project: str, environment: str) -> dict[str, Any] | None:
    """The journal entry for this project and environment on the target, or None."""
    lines: list[str] = []
    result = transport.run(_READ, on_line=lines.append, timeout=60)
    if not result.ok:
        raise TransportError(f"cannot read the journal: {' '.join(result.output_tail)[-300:]}",
                             target=transport.target, operation="journal")
    try:
        return json.loads("".join(lines) or "{}").get(journal_key(project, environment))
    except json.JSONDecodeError:
        return None


def write(transport: Transport, project: str, environment: str, entry: dict[str, Any]) -> None:
    result = transport.run(_WRITE, data={"key": journal_key(project, environment), "entry": entry}, timeout=60)
    if not result.ok:
        raise TransportError(f"cannot write the journal: {' '.join(result.output_tail)[-300:]}",
                             target=transport.target, operation="journal")
