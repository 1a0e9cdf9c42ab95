"""``ferry status``: the Octopus dashboard as data — environments in lifecycle order × releases."""

from __future__ import annotations

from typing import Any

from snapshots import releases
from snapshots.projects import require_infrastructure, require_project
from snapshots.store import records
from snapshots.workspace import Workspace


def dashboard(ctx: Workspace, project: str, recent: int = 10) -> dict[str, Any]:
    with ctx.store.read() as conn:
        revision = require_project(conn, project)
        infra = require_infrastructure(conn)
        lifecycle = infra.lifecycle(revision.document["lifecycle"])
        envs = [e for p in lifecycle.phases for e in p.environments] if lifecycle else \
            [e.name for e in infra.environments]
        history = [d for d in records.list_deployments(conn, project, limit=1000)
                   if d.kind == records.DEPLOYMENT]  # a runbook run changes no release an environment holds
        versions = releases.newest_first(conn, project)[:recent]  # not every release's snapshot: this runs at
        # the end of every deployment, and a project's releases only grow
    current: dict[str, Any] = {}
    latest: dict[str, Any] = {}
    cells: dict[str, dict[str, str]] = {v: {} for v in versions}
    for d in history:  # newest first
        latest.setdefault(d.environment, {"release": d.version, "state": d.state, "no_change": d.no_change,
                                          "id": d.id, "summary": f"#{d.id} {d.version} {d.shown_state}"})
        if d.state == records.SUCCESS:
            current.setdefault(d.environment, {"release": d.version, "id": d.id, "at": d.finished_at})
        if d.version in cells:
            cells[d.version].setdefault(d.environment, d.shown_state)  # "Success (no change)": nothing ran
    return {"project": project, "environments": envs, "current": current, "latest": latest,
            "releases": [{"release": v, "cells": cells[v]} for v in versions]}
