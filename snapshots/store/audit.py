"""The audit log: who did what to which object, append-only."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from snapshots.canonical import canonical_json
from snapshots.store.engine import now
from snapshots.store.tables import audit_log


def record(conn: Connection, actor: str, action: str, subject: str, **detail: Any) -> None:
    """Append one entry in the caller's transaction (so it lands exactly when the change does)."""
    conn.execute(insert(audit_log).values(at=now(), actor=actor, action=action, subject=subject,
                                          detail=canonical_json(detail)))


def entries(conn: Connection, subject_prefix: str = "") -> list[dict[str, Any]]:
    rows = conn.execute(select(audit_log).where(audit_log.c.subject.startswith(subject_prefix))
                        .order_by(audit_log.c.id))
    return [dict(row._mapping) for row in rows]
