"""The target journal: which release (and digest) of which project is installed for which environment.

It lives on the target itself (``~/.ferry/journal.json``), as Octopus's Tentacle keeps its deployment
journal: a re-run skips targets already at the release's digest, and rollback knows what was there.
"""

from __future__ import annotations

import json
from typing import Any

from steps.transports.protocol import Transport

JOURNAL_FILE = ".ferry/journal.json"
"""Relative to the target's home (the deploy user's home over SSH, the root of a local target)."""
HISTORY = 10


def journal_key(project: str, environment: str) -> str:
    return f"{project}/{environment}"


def _load(transport: Transport) -> dict[str, Any]:
    try:
        return json.loads(transport.read_file(JOURNAL_FILE) or b"{}")
    except json.JSONDecodeError:  # a damaged journal is treated as empty: the target gets redeployed
        return {}


def read(transport: Transport, project: str, environment: str) -> dict[str, Any] | None:
    """The journal entry for this project and environment on the target, or None."""
    return _load(transport).get(journal_key(project, environment))


def write(transport: Transport, project: str, environment: str, entry: dict[str, Any]) -> None:
    """Record what is installed now, keeping the previous entries as history (newest first)."""
    journal = _load(transport)
    key = journal_key(project, environment)
    previous = journal.get(key)
    history = [{k: v for k, v in previous.items() if k != "history"}, *previous.get("history", [])] if previous else []
    journal[key] = {**entry, "history": history[:HISTORY]}
    transport.write_file(JOURNAL_FILE, json.dumps(journal, indent=1, sort_keys=True).encode())
