"""What ``ferry runbook list|publish`` and the API show of runbooks and their snapshots (plain data)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from snapshots.canonical import canonical_json
from snapshots.projects import require_project
from snapshots.releases import Release
from snapshots.runbook_snapshots import snapshots_of


def snapshot_view(snapshot: Release) -> dict[str, Any]:
    data = snapshot.snapshot
    return {"project": data["project"], "runbook": data["runbook"], "snapshot": data["snapshot"],
            "project_revision": data["project_revision"], "environments": data.get("environments") or [],
            "packages": {p["id"]: p["version"] for p in data["packages"]}, "notes": data.get("notes", ""),
            "digest": snapshot.digest, "created_at": snapshot.created_at, "created_by": snapshot.created_by}


def runbook_list(conn: Connection, project: str) -> list[dict[str, Any]]:
    """Each runbook of the project's current revision with its newest snapshot; ``changed``: the recipe's
    runbook (process or environments) differs from that snapshot, so a run would not run what the YAML says
    until it is published again."""
    revision = require_project(conn, project)
    out = []
    for book in revision.model().runbooks:
        published = snapshots_of(conn, project, book.name)
        newest = published[-1] if published else None
        process = [item.model_dump(mode="json") for item in book.process]
        changed = newest is not None and (
            canonical_json(newest.snapshot["process"]) != canonical_json(process)
            or newest.snapshot.get("environments") != list(book.environments)
            or newest.snapshot.get("roles") != list(book.roles))
        out.append({"name": book.name, "description": book.description, "environments": list(book.environments),
                    "roles": list(book.roles), "snapshot": newest.snapshot["snapshot"] if newest else None,
                    "snapshots": len(published), "changed": changed,
                    "published_at": newest.created_at if newest else None,
                    "published_by": newest.created_by if newest else None})
    return out
