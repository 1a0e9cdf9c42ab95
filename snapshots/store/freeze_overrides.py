"""The deployment record keeps who overrode which deployment freeze: a scheduled deployment may meet a freeze
only when it starts (the request said ``--override-freeze``; the record learns the freeze then)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, select, update

from snapshots.canonical import canonical_json
from snapshots.store import audit
from snapshots.store.tables import deployments


def note_override(conn: Connection, deployment_id: int, window: dict[str, Any], actor: str) -> None:
    """Add ``freeze_override`` (the freeze window and who) to the record's parameters, once, and audit it."""
    row = conn.execute(select(deployments.c.parameters, deployments.c.project)
                       .where(deployments.c.id == deployment_id)).first()
    if row is None:
        return
    params = json.loads(row.parameters) if row.parameters else {}
    if params.get("freeze_override", {}).get("freeze") == window.get("freeze"):
        return
    params["freeze_override"] = {**window, "by": actor}
    conn.execute(update(deployments).where(deployments.c.id == deployment_id)
                 .values(parameters=canonical_json(params)))
    audit.record(conn, actor, "deployment.override-freeze", f"project/{row.project}/deployment/{deployment_id}",
                 freeze=window.get("freeze"))
