"""What a deployment leaves in the Prefect UI: a summary table (target, step, result, duration, a link to
the step's log), the release notes rolled up since the environment's previous release, and the project's
dashboard (``ferry-<project>-dashboard``: environments × releases, state, when, who), updated after every
deployment. The live per-target progress table is ``progress_board``. Everything a deployment wrote passes
through its masker first."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.engine.dashboard import dashboard
from snapshots.store import records
from snapshots.variables.masking import Masker
from snapshots.workspace import Workspace


def _key(*parts: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def _seconds(started: str | None, finished: str | None) -> str:
    if not started or not finished:
        return ""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return f"{(datetime.strptime(finished, fmt) - datetime.strptime(started, fmt)).total_seconds():.2f}s"


def summary_table(project: str, environment: str, results: list[dict[str, Any]], masker: Masker,
                  log_links: dict[tuple[str, str], str] | None = None) -> None:
    """``log_links``: (step, target) → the page of the task run that holds that step's log lines."""
    links = log_links or {}
    rows = [{"target": r["target"] or "—", "step": r["step"], "result": r["state"], "attempts": r["attempts"],
             "duration": _seconds(r["started_at"], r["finished_at"]), "message": r["message"] or "",
             "log": links.get((r["step"], r["target"] or ""), "")}
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


def dashboard_key(project: str) -> str:
    return _key("ferry", project, "dashboard")


def dashboard_table(ctx: Workspace, project: str) -> None:
    """The Octopus dashboard as one table artifact under a stable key, so the UI's artifact page for
    ``ferry-<project>-dashboard`` is the dashboard: a row per release (newest first), a column per environment
    in lifecycle order, each cell the state of that release's latest deployment there, when and by whom."""
    board = dashboard(ctx, project)
    envs: list[str] = board["environments"]
    with ctx.store.read() as conn:
        history = [d for d in records.list_deployments(conn, project, limit=1000) if d.kind == records.DEPLOYMENT]
    cells: dict[tuple[str, str], str] = {}
    for d in history:  # newest first: the first seen is the latest
        when = (d.finished_at or d.started_at or d.created_at or "")[:16].replace("T", " ")
        cells.setdefault((d.version, d.environment), f"{d.shown_state} · {when} · {d.created_by} · #{d.id}")
    rows = [{"release": "current", **{e: board["current"].get(e, {}).get("release", "") for e in envs}}]
    rows += [{"release": r["release"], **{e: cells.get((r["release"], e), "") for e in envs}}
             for r in board["releases"]]
    create_table_artifact(rows, key=dashboard_key(project),
                          description=f"{project}: the dashboard — environments × releases (state · when · who)")
