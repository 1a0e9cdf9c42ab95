"""The live progress of a deployment in the Prefect UI: one table artifact (``ferry-<project>-<env>-progress``)
with a row per target — its state, current (or last) step, elapsed time — and the window and the counts
done / failed / remaining in its description, updated in place (PATCH) as targets move.

The engine tells the board what happens (a step starts, a result is recorded); the board only talks to
Prefect when told to flush, which the engine throttles to once a second at most."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

PENDING, RUNNING, DONE, FAILED, NOT_STARTED = "pending", "running", "done", "failed", "not started"


def progress_key(project: str, environment: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"ferry-{project}-{environment}-progress".lower()).strip("-")


@dataclass
class _Row:
    state: str = PENDING
    step: str = ""
    first: float | None = None
    last: float | None = None


@dataclass
class ProgressBoard:
    project: str
    environment: str
    targets: list[str]
    last_steps: dict[str, str] = field(default_factory=dict)
    """target → the last step it runs: a result of that step (not a failure) means the target is done."""
    rows: dict[str, _Row] = field(init=False)
    window: str = ""
    artifact_id: UUID | None = None
    task_runs: dict[tuple[str, str], str] = field(default_factory=dict)
    """(step, target) → the Prefect task run that ran it last: where its log lines are in the UI."""
    finished: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.rows = {t: _Row() for t in self.targets}

    # ------------------------------------------------------------------ what the engine tells the board
    def unit(self, name: str, window: object) -> None:
        """A unit (step or rolling parent) starts on its targets, ``window`` at a time (a ramp: a list)."""
        shown = " then ".join(map(str, window)) if isinstance(window, list) else str(window)
        with self._lock:
            self.window = f"{name}: {shown} at a time"

    def started(self, target: str, step: str) -> None:
        from prefect.runtime import task_run

        run_id = task_run.id
        with self._lock:
            if run_id:
                self.task_runs[(step, target)] = str(run_id)
            row = self.rows.setdefault(target, _Row())
            row.first = row.first or time.monotonic()
            row.last = None
            if row.state != FAILED:
                row.state, row.step = RUNNING, step

    def recorded(self, target: str | None, step: str, state: str) -> None:
        if target is None or target not in self.rows:
            return
        with self._lock:
            row = self.rows[target]
            row.last = time.monotonic()
            if row.state == FAILED:
                return
            row.step = step
            if state == "failed":
                row.state = FAILED
            elif state == "NotStarted":
                row.state = NOT_STARTED
            elif self.last_steps.get(target) == step:
                row.state = DONE

    # ------------------------------------------------------------------ what the UI shows
    def table(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            out = []
            for name, row in self.rows.items():
                elapsed = f"{(row.last or now) - row.first:.1f}s" if row.first is not None else ""
                out.append({"target": name, "state": row.state, "step": row.step, "elapsed": elapsed})
            return out

    def counts(self) -> dict[str, int]:
        rows = self.table()
        done = sum(r["state"] == DONE for r in rows)
        failed = sum(r["state"] == FAILED for r in rows)
        return {"done": done, "failed": failed, "remaining": len(rows) - done - failed}

    def description(self) -> str:
        c = self.counts()
        head = (f"{self.project} → {self.environment}: {c['done']} done, {c['failed']} failed, "
                f"{c['remaining']} remaining")
        return head + (f" · window {self.window}" if self.window else "") + (" · finished" if self.finished else "")

    def log_links(self) -> dict[tuple[str, str], str]:
        """(step, target) → the UI page of the task run that holds its log lines (none without a UI URL)."""
        from flows.client.http import prefect_ui_url

        ui = prefect_ui_url()
        return {key: f"{ui}/runs/task-run/{run}" for key, run in self.task_runs.items()} if ui else {}

    # ------------------------------------------------------------------ Prefect
    def flush(self) -> None:
        """Create the artifact on first use, then update it in place; a failure only logs (the UI is no
        reason to fail a deployment)."""
        try:
            self._flush()
        except Exception:
            logging.getLogger("ferry").warning("could not update the progress artifact", exc_info=True)

    def _flush(self) -> None:
        from prefect.artifacts import create_table_artifact
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import ArtifactUpdate

        rows, description = self.table(), self.description()
        if self.artifact_id is None:
            created = create_table_artifact(rows, key=progress_key(self.project, self.environment),
                                            description=description)
            self.artifact_id = created  # type: ignore[assignment]  # sync call: a UUID
            return
        with get_client(sync_client=True) as client:
            client.update_artifact(self.artifact_id, ArtifactUpdate(data=json.dumps(rows), description=description))

    def finish(self) -> None:
        self.finished = True
        self.flush()


__all__ = ["ProgressBoard", "progress_key"]
