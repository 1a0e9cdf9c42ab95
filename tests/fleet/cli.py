"""In-process ``ferry`` for the fleet and certificate tests: the bad-input catalogue's runner (no subprocess)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.bad_inputs.test_bad_inputs import BASE_ENV, _run_inprocess


def ferry(home: Path, *args: str, env: Mapping[str, str | None] | None = None) -> Any:
    """Run ``ferry ARGS`` with ``FERRY_HOME=home``; returns the outcome (exit code, stdout, stderr)."""
    return _run_inprocess(list(args), {**BASE_ENV, "FERRY_HOME": str(home), **(env or {})})


def ferry_json(home: Path, *args: str, env: Mapping[str, str | None] | None = None) -> Any:
    """The ferry/v1 document of ``ferry ARGS --json``; for a list command, its ``items``."""
    outcome = ferry(home, *args, "--json", env=env)
    assert outcome.code == 0, outcome
    doc = json.loads(outcome.stdout)
    assert doc["schema"] == "ferry/v1", doc
    return doc.get("items", doc)
