"""What the store knows of, for ``ferry project list`` and ``ferry environment list`` (locally and through the
ferry server API): projects with their current revision and lifecycle, environments with their targets."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection

from snapshots.projects import latest_infrastructure, latest_project, project_names


def projects(conn: Connection) -> list[dict[str, Any]]:
    """Every applied project, by name: its current revision, lifecycle and description."""
    out: list[dict[str, Any]] = []
    for name in project_names(conn):
        revision = latest_project(conn, name)
        if revision is None:
            continue
        document = revision.document
        out.append({"name": name, "revision": revision.revision, "lifecycle": document.get("lifecycle", "Default"),
                    "description": document.get("description", ""), "applied_at": str(revision.created_at)})
    return out


def environments(conn: Connection) -> list[dict[str, Any]]:
    """The applied infrastructure's environments in declared order, each with its targets and roles."""
    found = latest_infrastructure(conn)
    if found is None:
        return []
    infra = found[1]
    return [{"name": env.name, "description": env.description, "guided_failure": env.guided_failure,
             "targets": [{"name": t.name, "roles": list(t.roles), "transport": t.transport.kind}
                         for t in infra.targets_in(env.name)]}
            for env in infra.environments]


def answers(conn: Connection, project: str, deployment_id: int) -> list[dict[str, Any]]:
    """Who answered a deployment's pauses (manual steps, guided failures) and when, from the audit log: an
    approval is reported apart from when the deployment started."""
    from snapshots.store import audit

    subject = f"project/{project}/deployment/{deployment_id}"
    out = []
    for entry in audit.entries(conn, subject):
        if entry["subject"] != subject or entry["action"] != "deployment.answer":
            continue
        detail = entry["detail"]
        if isinstance(detail, str):
            detail = json.loads(detail or "{}")
        out.append({"at": str(entry["at"]), "by": entry["actor"], "action": detail.get("answer"),
                    "notes": detail.get("notes") or ""})
    return out
