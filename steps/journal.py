"""The target journal: which release (and digest) of which project is installed for which environment.

It lives on the target itself (``~/.ferry/journal.json``), as Octopus's Tentacle keeps its deployment
journal: a re-run skips targets already at the release's digest, and rollback knows what was there.

While a unit (a rolling step's children) runs on a target, its entry also carries an ``in_progress``
marker — which release, which unit, which of its steps are done — written before the first step and after
each one, and removed when the unit ends well. A run killed between "remove from the load balancer" and
"add back" leaves the marker behind, so the next run knows the unit is unfinished even when the installed
release is already current (a ``--force`` redeploy or a rollback that was cut off), and runs what is left.
"""

from __future__ import annotations

import copy
import json
from typing import Any
from weakref import WeakKeyDictionary

from steps.transports.protocol import Transport

JOURNAL_FILE = ".ferry/journal.json"
"""Relative to the target's home (the deploy user's home over SSH, the root of a local target)."""
HISTORY = 10


def journal_key(project: str, environment: str) -> str:
    return f"{project}/{environment}"


_held: WeakKeyDictionary[Transport, dict[str, Any] | None] = WeakKeyDictionary()


def hold(transport: Transport) -> None:
    """Keep this connection's copy of the journal in memory from its next read on, so each later marker or
    entry is one write instead of a read and a write (measured: the engine updates it up to six times per
    target and unit). Only for a deployment's own connections: it holds the target's concurrency slot, so no
    other ferry run writes that journal meanwhile. A failed write forgets the copy."""
    _held.setdefault(transport, None)


def _load(transport: Transport) -> dict[str, Any]:
    held = _held.get(transport)
    if held is not None:
        return copy.deepcopy(held)
    try:
        journal = json.loads(transport.read_file(JOURNAL_FILE) or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):  # damaged: treated as empty, the target gets redeployed
        journal = {}
    loaded = {k: v for k, v in journal.items() if isinstance(v, dict)} if isinstance(journal, dict) else {}
    if transport in _held:
        _held[transport] = copy.deepcopy(loaded)
    return loaded


def installed(transport: Transport) -> dict[str, dict[str, Any]]:
    """What the target holds, per ``project/environment``: release, deployment id, when (``ferry target check``)."""
    return {key: {k: entry.get(k) for k in ("release", "deployment_id", "installed_at") if entry.get(k) is not None}
            for key, entry in _load(transport).items() if entry.get("release")}


def read(transport: Transport, project: str, environment: str) -> dict[str, Any] | None:
    """The journal entry for this project and environment on the target, or None."""
    return _load(transport).get(journal_key(project, environment))


def _save(transport: Transport, journal: dict[str, Any]) -> None:
    try:
        transport.write_file(JOURNAL_FILE, json.dumps(journal, indent=1, sort_keys=True).encode())
    except BaseException:
        if transport in _held:
            _held[transport] = None  # what the target holds now is unknown: read it again next time
        raise
    if transport in _held:
        _held[transport] = copy.deepcopy(journal)


def write(transport: Transport, project: str, environment: str, entry: dict[str, Any]) -> None:
    """Record what is installed now, keeping the previous entries as history (newest first). Any
    ``in_progress`` marker goes: the unit it described has finished."""
    journal = _load(transport)
    key = journal_key(project, environment)
    previous = journal.get(key) or {}
    installed = {k: v for k, v in previous.items() if k not in ("history", IN_PROGRESS)}
    history = [installed] if installed.get("release") else []
    journal[key] = {**entry, "history": [*history, *previous.get("history", [])][:HISTORY]}
    _save(transport, journal)


IN_PROGRESS = "in_progress"


def mark(transport: Transport, project: str, environment: str, marker: dict[str, Any]) -> None:
    """Record (or update) the unit running now on this target: ``{"deployment_id", "release", "digest",
    "variables_revision", "unit", "done": [step indices]}``. The installed release's fields stay as they are."""
    journal = _load(transport)
    key = journal_key(project, environment)
    journal[key] = {**(journal.get(key) or {}), IN_PROGRESS: marker}
    _save(transport, journal)


def clear(transport: Transport, project: str, environment: str) -> None:
    """The unit ended well: remove its ``in_progress`` marker."""
    journal = _load(transport)
    key = journal_key(project, environment)
    entry = journal.get(key)
    if entry is None or IN_PROGRESS not in entry:
        return
    entry.pop(IN_PROGRESS)
    if entry:
        journal[key] = entry
    else:
        journal.pop(key)
    _save(transport, journal)
