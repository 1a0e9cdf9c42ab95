"""Recorded target health checks (issue 15 item 1): what ``ferry target check`` and the served health check
found, so ``ferry target list`` shows the last health without connecting and a deployment under a ``skip``
machine policy can leave out a target that was unreachable a moment ago."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)

from snapshots.store.tables import Timestamp, metadata

KEEP = 100
"""Checks kept per target (older ones are deleted when a new one is recorded)."""

target_health = Table(
    "target_health", metadata,
    Column("id", Integer, primary_key=True),
    Column("target", String(200), nullable=False),
    Column("checked_at", Timestamp, nullable=False),
    Column("reachable", Boolean, nullable=False),
    Column("latency_ms", Float),
    Column("free_bytes", BigInteger),
    Column("clock_skew_s", Float),
    Column("powershell", String(100)),
    Column("reason", Text),
    Column("holds", Text),
    Column("checked_by", String(200), nullable=False),
    Index("ix_target_health_target", "target", "checked_at"),
)


@dataclass
class HealthCheck:
    """One check of one target. ``holds``: the target journal's entries (``project/environment`` → release,
    deployment id, installed at), read during the check."""

    target: str
    checked_at: str
    reachable: bool
    latency_ms: float | None = None
    free_bytes: int | None = None
    clock_skew_s: float | None = None
    powershell: str | None = None
    reason: str | None = None
    holds: dict[str, dict[str, Any]] = field(default_factory=dict)
    checked_by: str = ""

    def age_seconds(self, at: datetime | None = None) -> float:
        moment = datetime.strptime(self.checked_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        return ((at or datetime.now(UTC)) - moment).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def record(conn: Connection, check: HealthCheck) -> None:
    conn.execute(insert(target_health).values(
        target=check.target, checked_at=check.checked_at, reachable=check.reachable, latency_ms=check.latency_ms,
        free_bytes=check.free_bytes, clock_skew_s=check.clock_skew_s, powershell=check.powershell,
        reason=check.reason, holds=json.dumps(check.holds, sort_keys=True), checked_by=check.checked_by))
    ids = [row.id for row in conn.execute(select(target_health.c.id).where(target_health.c.target == check.target)
                                          .order_by(target_health.c.id.desc()).offset(KEEP))]
    if ids:
        conn.execute(delete(target_health).where(target_health.c.id.in_(ids)))


def _check(row: Any) -> HealthCheck:
    holds = json.loads(row.holds) if row.holds else {}
    return HealthCheck(target=row.target, checked_at=row.checked_at, reachable=bool(row.reachable),
                       latency_ms=row.latency_ms, free_bytes=row.free_bytes, clock_skew_s=row.clock_skew_s,
                       powershell=row.powershell, reason=row.reason, holds=holds if isinstance(holds, dict) else {},
                       checked_by=row.checked_by)


def latest(conn: Connection, targets: list[str] | None = None) -> dict[str, HealthCheck]:
    """The newest check of each target (of ``targets`` when given)."""
    newest = select(target_health.c.target, func.max(target_health.c.id).label("id")) \
        .group_by(target_health.c.target).subquery()
    query = select(target_health).join(newest, newest.c.id == target_health.c.id)
    if targets is not None:
        query = query.where(target_health.c.target.in_(targets))
    return {row.target: _check(row) for row in conn.execute(query)}


def deployed(conn: Connection) -> dict[str, dict[str, dict[str, Any]]]:
    """What successful deployments installed on each target, from the deployment records (``target`` →
    ``project/environment`` → release, deployment id, when): the store's side of a target's journal."""
    from snapshots.store.tables import deployment_results, deployments, releases

    rows = conn.execute(
        select(deployment_results.c.target, deployments.c.project, deployments.c.environment, releases.c.version,
               deployments.c.id, deployments.c.finished_at)
        .join(deployments, deployments.c.id == deployment_results.c.deployment_id)
        .join(releases, releases.c.id == deployments.c.release_id)
        .where(deployment_results.c.state == "success", deployments.c.state == "Success",
               deployment_results.c.target.is_not(None))
        .order_by(deployments.c.id))
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row.target, {})[f"{row.project}/{row.environment}"] = {
            "release": row.version, "deployment_id": row.id, "installed_at": row.finished_at}
    return found
