"""Deployment records: one row per deployment (state, who, which release and variable revision, Prefect
flow run) and one row per (step, target) result. These rows change as a deployment runs, so they are not
append-only; the snapshots they point at are."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Select, and_, insert, select, update

from snapshots.canonical import canonical_json
from snapshots.errors import NotFoundError
from snapshots.store import audit, inserted_id, now
from snapshots.store.tables import deployment_results, deployments, releases

QUEUED, RUNNING, PAUSED, SUCCESS, FAILED, CANCELLED = "Queued", "Running", "Paused", "Success", "Failed", "Cancelled"
FINISHED = (SUCCESS, FAILED, CANCELLED)
DEPLOYMENT, RUNBOOK = "deployment", "runbook"
"""Kinds of record: a runbook run takes the same slots and is shown beside deployments, but never counts as
the release an environment holds."""


@dataclass(frozen=True)
class Deployment:
    id: int
    project: str
    release_id: int
    version: str
    environment: str
    variable_snapshot_id: int
    flow_run_id: str | None
    state: str
    parameters: dict[str, Any]
    error: str | None
    created_at: str
    created_by: str
    started_at: str | None
    finished_at: str | None
    kind: str = DEPLOYMENT
    """``deployment``, or ``runbook``: a run of a runbook snapshot (``version`` is the snapshot's name)."""
    runbook: str | None = None
    no_change: bool = False
    """Every target already had the release: nothing ran. The state stays ``Success`` (the targets have the
    release, so lifecycle progression, promote and status count it as one); ``shown_state`` tells it apart."""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def shown_state(self) -> str:
        """The state as people read it: ``Success (no change)`` for a redeploy that found nothing to do."""
        return shown_state(self.state, self.no_change)


def shown_state(state: str, no_change: bool | None) -> str:
    """``Success (no change)`` for a success that ran nothing, else the state as it is (for records and for the
    ``as_dict`` documents the server API hands to a remote CLI)."""
    return f"{state} (no change)" if no_change and state == SUCCESS else state


@dataclass(frozen=True)
class StepResult:
    step: str
    target: str | None
    state: str
    attempts: int
    message: str | None
    started_at: str | None
    finished_at: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _query() -> Select[Any]:
    return select(deployments, releases.c.version).join(releases, releases.c.id == deployments.c.release_id)


def _deployment(row: Row[Any]) -> Deployment:
    m = row._mapping
    return Deployment(m["id"], m["project"], m["release_id"], m["version"], m["environment"],
                      m["variable_snapshot_id"], m["flow_run_id"], m["state"], json.loads(m["parameters"]),
                      m["error"], m["created_at"], m["created_by"], m["started_at"], m["finished_at"],
                      m["kind"], m["runbook"], bool(m["no_change"]))


def create(conn: Connection, *, project: str, release_id: int, environment: str, variable_snapshot_id: int,
           parameters: dict[str, Any], actor: str, state: str = QUEUED, runbook: str | None = None) -> int:
    """A deployment record; with ``runbook``, a runbook run (``release_id``: the runbook snapshot's row)."""
    deployment_id = inserted_id(conn.execute(insert(deployments).values(
        project=project, release_id=release_id, environment=environment, variable_snapshot_id=variable_snapshot_id,
        state=state, parameters=canonical_json(parameters), created_at=now(), created_by=actor,
        kind=RUNBOOK if runbook else DEPLOYMENT, runbook=runbook)))
    audit.record(conn, actor, "runbook.run" if runbook else "deployment.create",
                 f"project/{project}/deployment/{deployment_id}", environment=environment, release_id=release_id,
                 **({"runbook": runbook} if runbook else {}))
    return deployment_id


def get(conn: Connection, deployment_id: int) -> Deployment:
    row = conn.execute(_query().where(deployments.c.id == deployment_id)).first()
    if row is None:
        raise NotFoundError(f"no deployment {deployment_id}")
    return _deployment(row)


def find_by_flow_run(conn: Connection, flow_run_id: str) -> Deployment | None:
    """The deployment a Prefect flow run carried out (the newest, should a re-run have reused the run)."""
    row = conn.execute(_query().where(deployments.c.flow_run_id == flow_run_id)
                       .order_by(deployments.c.id.desc()).limit(1)).first()
    return _deployment(row) if row else None


def list_deployments(conn: Connection, project: str | None = None, environment: str | None = None,
                     limit: int = 50) -> list[Deployment]:
    query = _query().order_by(deployments.c.id.desc()).limit(limit)
    if project:
        query = query.where(deployments.c.project == project)
    if environment:
        query = query.where(deployments.c.environment == environment)
    return [_deployment(r) for r in conn.execute(query)]


def set_state(conn: Connection, deployment_id: int, state: str, *, error: str | None = None,
              flow_run_id: str | None = None, no_change: bool | None = None) -> None:
    """``no_change``: with SUCCESS, every target already had the release and nothing ran."""
    values: dict[str, Any] = {"state": state}
    if no_change is not None:
        values["no_change"] = no_change
    if state == RUNNING:
        values["started_at"] = values["heartbeat_at"] = now()
    if state in FINISHED:
        values["finished_at"] = now()
    if error is not None:
        values["error"] = error
    if flow_run_id is not None:
        values["flow_run_id"] = flow_run_id
    conn.execute(update(deployments).where(deployments.c.id == deployment_id).values(**values))


def heartbeat(conn: Connection, deployment_id: int) -> str:
    """The running process is alive: stamp the record (and return its state, which another process may have
    changed, e.g. to Failed when it took this one for dead)."""
    conn.execute(update(deployments).where(deployments.c.id == deployment_id).values(heartbeat_at=now()))
    return str(conn.execute(select(deployments.c.state).where(deployments.c.id == deployment_id)).scalar_one())


def add_lease(conn: Connection, deployment_id: int, lease_id: str) -> None:
    """Remember a Prefect concurrency lease the running process holds (freed by whoever finds it dead)."""
    held = leases(conn, deployment_id)
    conn.execute(update(deployments).where(deployments.c.id == deployment_id)
                 .values(leases=json.dumps([*held, lease_id])))


def leases(conn: Connection, deployment_id: int) -> list[str]:
    text = conn.execute(select(deployments.c.leases).where(deployments.c.id == deployment_id)).scalar()
    return list(json.loads(text)) if text else []


def silent_for(conn: Connection, deployment_id: int) -> float | None:
    """Seconds since the record's last heartbeat (None: it never had one — written by an older ferry)."""
    stamp = conn.execute(select(deployments.c.heartbeat_at).where(deployments.c.id == deployment_id)).scalar()
    if not stamp:
        return None
    return (datetime.fromisoformat(now()) - datetime.fromisoformat(stamp)).total_seconds()


def record_result(conn: Connection, deployment_id: int, result: StepResult) -> None:
    conn.execute(insert(deployment_results).values(
        deployment_id=deployment_id, step=result.step, target=result.target, state=result.state,
        attempts=result.attempts, message=result.message, started_at=result.started_at,
        finished_at=result.finished_at))


def results(conn: Connection, deployment_id: int) -> list[StepResult]:
    rows = conn.execute(select(deployment_results).where(deployment_results.c.deployment_id == deployment_id)
                        .order_by(deployment_results.c.id))
    return [StepResult(r.step, r.target, r.state, r.attempts, r.message, r.started_at, r.finished_at) for r in rows]


def successful_environments(conn: Connection, release_id: int) -> set[str]:
    rows = conn.execute(select(deployments.c.environment).where(
        and_(deployments.c.release_id == release_id, deployments.c.state == SUCCESS)).distinct())
    return {r[0] for r in rows}


def last_successful(conn: Connection, project: str, environment: str, *,
                    before_id: int | None = None, other_than_release: int | None = None) -> Deployment | None:
    """The newest successful deployment to an environment (optionally older than one deployment, or of a
    different release): what "the previous release" means for rollback and release-note roll-ups."""
    query = _query().where(deployments.c.project == project, deployments.c.environment == environment,
                           deployments.c.state == SUCCESS, deployments.c.kind == DEPLOYMENT
                           ).order_by(deployments.c.id.desc())
    if before_id is not None:
        query = query.where(deployments.c.id < before_id)
    if other_than_release is not None:
        query = query.where(deployments.c.release_id != other_than_release)
    row = conn.execute(query.limit(1)).first()
    return _deployment(row) if row else None
