"""What a deployment leaves in the Prefect UI: a progress artifact updated as targets finish, a summary
table (target, step, result, duration), and the release notes rolled up since the environment's
previous release. Everything passes through the deployment's masker first."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from snapshots.variables.masking import Masker


def _key(*parts: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def start_progress(project: str, environment: str) -> UUID | None:
    # Prefect's async_dispatch types the call as "UUID or coroutine"; called from sync code it is the UUID
    artifact = create_progress_artifact(0.0, key=_key("ferry", project, environment, "progress"),
                                        description=f"{project} → {environment}: targets done")
    return artifact  # type: ignore[return-value]  # sync call: a UUID (see above)


def update_progress(artifact_id: UUID | None, percent: float) -> None:
    if artifact_id is not None:
        update_progress_artifact(artifact_id, percent)


def _seconds(started: str | None, finished: str | None) -> str:
    if not started or not finished:
        return ""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return f"{(datetime.strptime(finished, fmt) - datetime.strptime(started, fmt)).total_seconds():.2f}s"


def summary_table(project: str, environment: str, results: list[dict[str, Any]], masker: Masker) -> None:
    rows = [{"target": r["target"] or "—", "step": r["step"], "result": r["state"], "attempts": r["attempts"],
             "duration": _seconds(r["started_at"], r["finished_at"]), "message": r["message"] or ""}
            for r in results]
    create_table_artifact(masker.mask_obj(rows), key=_key("ferry", project, environment, "summary"),
                          description=f"{project} → {environment}: every step on every target")


def release_notes(project: str, environment: str, notes: list[tuple[str, str]], masker: Masker) -> None:
    """``notes``: (version, notes) of every release since the environment's previous one, newest first."""
    if not notes:
        return
    body = "\n\n".join(f"## {version}\n\n{text.strip() or '_no notes_'}" for version, text in notes)
    create_markdown_artifact(masker.mask(f"# Changes deployed to {environment}\n\n{body}"),
                             key=_key("ferry", project, environment, "release-notes"),
                             description=f"{project}: release notes since {environment}'s previous release")
