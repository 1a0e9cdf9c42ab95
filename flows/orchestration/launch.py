"""Start a deployment for a request — the one path shared by ``ferry deploy|promote|rollback`` and the ferry
server API: check and record it (as the requester: a person's login, ``key:<name>``), then create a flow run
on the project's served ``deploy-release`` deployment. Also what a requester may do to a running deployment
(answer a pause, cancel) and read (its log), each recorded with who asked."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from flows.engine.request import DeployRequest, check_and_record
from flows.orchestration.served_runs import Served, client_or_new, create_run, find_served, run_url
from snapshots.errors import ConfigError, ConflictError, FerryError, NotFoundError
from snapshots.store import audit, records
from snapshots.workspace import Workspace

_local = threading.local()


def prefect_client() -> Any:
    """A started Prefect client for this thread, kept for the next request: ``ferry serve``'s API answers from
    a pool of threads, and building a client (an httpx client and its TLS context) costs ~0.3 s on a loaded
    machine — more than the requests it then makes (~20 ms each)."""
    client = getattr(_local, "client", None)
    if client is None:
        from prefect.client.orchestration import get_client

        client = get_client(sync_client=True)
        client.__enter__()
        _local.client = client
    return client


@dataclass(frozen=True)
class Launched:
    """A recorded deployment and, when it went through ``ferry serve``, its flow run."""

    deployment_id: int
    request: DeployRequest
    served: Served | None = None
    flow_run: Any = None

    def as_dict(self) -> dict[str, Any]:
        run_id = str(self.flow_run.id) if self.flow_run is not None else None
        return {"deployment_id": self.deployment_id, "project": self.request.project,
                "release": self.request.release, "environment": self.request.environment,
                "flow_run_id": run_id, "flow_run_name": getattr(self.flow_run, "name", None),
                "flow_run_url": run_url(self.flow_run.id) if self.flow_run is not None else ""}


def record(ctx: Workspace, request: DeployRequest, actor: str | None = None, *,
           at: datetime | None = None) -> Launched:
    """Check the request as the flow will and create its deployment record. ``latest`` becomes the version
    it means now, as recorded, not when the run starts. ``at``: when a scheduled one starts (freeze check)."""
    acting = ctx.acting_as(actor)
    try:
        deployment_id, version = check_and_record(acting, request, at=at)
    except FerryError as exc:  # refused before anything was recorded: automations hear of it too
        from flows.orchestration import events

        events.emit_refused(str(exc), project=request.project, environment=request.environment,
                            release=request.release, actor=acting.actor)
        raise
    return Launched(deployment_id, replace(request, release=version))


def start_served(ctx: Workspace, served: Served, launched: Launched, *, at: datetime | None = None,
                 expires: datetime | None = None, tags: list[str] | None = None, client: Any = None) -> Launched:
    """A flow run of the served deployment for a recorded deployment (now, or scheduled ``at``). If Prefect
    refuses the run, the record says so (Failed, not started) and the error goes on."""
    from flows.orchestration.triggers import served_parameters

    params = served_parameters(launched.request, launched.deployment_id)
    if expires is not None:
        params["expires_after"] = max(1, int((expires - (at or datetime.now(UTC))).total_seconds()))
    try:
        run = create_run(served, params, at=at, tags=tags, client=client)
    except Exception as exc:
        from flows.orchestration.served_flows import mark_record  # imports Prefect: only on this failure path

        mark_record(launched.deployment_id, records.FAILED, f"not started: {exc}")
        raise
    with ctx.store.begin() as conn:
        records.set_state(conn, launched.deployment_id, records.QUEUED, flow_run_id=str(run.id))
    return replace(launched, served=served, flow_run=run)


def require_served(project: str, client: Any = None) -> Served:
    """The project's served deploy-release deployment; refused when ``ferry serve`` does not serve it (yet)."""
    served = find_served(project, client=client)
    if served is None:
        raise ConflictError(f"{project} is not served yet: ferry serve registers a project within its "
                            "--sync-seconds of `ferry apply`")
    return served


def launch(ctx: Workspace, request: DeployRequest, actor: str, *, tags: list[str] | None = None,
           client: Any = None) -> Launched:
    """What the API does for a deploy / promote / rollback: record as ``actor``, then start a flow run of the
    project's served deployment. Checked before anything is recorded: a project nobody serves is refused."""
    from snapshots.projects import require_project

    with ctx.store.read() as conn:
        require_project(conn, request.project)
    served = require_served(request.project, client)
    return start_served(ctx, served, record(ctx, request, actor), tags=tags, client=client)


def promote_request(ctx: Workspace, project: str, from_env: str, to_env: str, *, channel: str | None = None,
                    **options: Any) -> DeployRequest:
    """Deploy what last succeeded in ``from_env`` to ``to_env``, of releases in ``channel`` (default: the
    project's default channel)."""
    from snapshots.channels import find_channel, last_successful_in
    from snapshots.projects import require_project

    with ctx.store.read() as conn:
        model = require_project(conn, project).model()
        lane = find_channel(model, channel)
        last = last_successful_in(conn, model, from_env, lane)
    if last is None:
        raise NotFoundError(f"no successful deployment of {project} to {from_env} in channel {lane.name!r} to "
                            "promote")
    return DeployRequest(project, last.version, to_env, **{**options, "channel": lane.name})


def rollback_request(ctx: Workspace, project: str, env: str, **options: Any) -> tuple[DeployRequest, str]:
    """Deploy the environment's previous successful release again (forced). Returns (request, current)."""
    with ctx.store.read() as conn:
        current = records.last_successful(conn, project, env)
        previous = current and records.last_successful(conn, project, env, before_id=current.id,
                                                       other_than_release=current.release_id)
    if previous is None or current is None:
        raise NotFoundError(f"{project} has no earlier successful release in {env} to roll back to")
    return DeployRequest(project, previous.version, env, **{**options, "force": True}), current.version


def answer(ctx: Workspace, deployment_id: int, action: str, notes: str, actor: str) -> str:
    """Answer a paused deployment (guided failure, manual step) and record who answered."""
    from flows.orchestration.pauses import answer_pause

    message = answer_pause(ctx, deployment_id, action, notes)
    with ctx.store.begin() as conn:
        found = records.get(conn, deployment_id)
        audit.record(conn, actor, "deployment.answer", f"project/{found.project}/deployment/{deployment_id}",
                     answer=action, notes=notes)
    return message


def cancel(ctx: Workspace, deployment_id: int, actor: str, client: Any = None) -> str:
    """Cancel a deployment: its flow run is cancelled (one that has not started running outright, a running
    one stops) and the record says who cancelled it."""
    from prefect.states import Cancelled, Cancelling

    with ctx.store.read() as conn:
        found = records.get(conn, deployment_id)
    if found.state in records.FINISHED:
        raise ConflictError(f"deployment #{deployment_id} has already finished ({found.state})")
    reason = f"cancelled by {actor}"
    if found.flow_run_id:
        run_id = UUID(found.flow_run_id)
        with client_or_new(client) as prefect:
            state = prefect.read_flow_run(run_id).state
            if state is None or not state.is_final():
                # Scheduled or Pending: no process runs its code yet. Cancelling would wait for a runner to stop
                # a process; one that is only starting exits on its own and leaves the run Cancelling forever.
                waiting = state is None or state.is_scheduled() or state.is_pending()
                prefect.set_flow_run_state(run_id, Cancelled(message=reason) if waiting
                                           else Cancelling(message=reason), force=True)
    with ctx.store.begin() as conn:
        current = records.get(conn, deployment_id)
        ended_here = current.state not in records.FINISHED and (not found.flow_run_id
                                                                or current.state == records.QUEUED)
        if ended_here:
            records.set_state(conn, deployment_id, records.CANCELLED, error=reason)
        audit.record(conn, actor, "deployment.cancel", f"project/{found.project}/deployment/{deployment_id}")
    if ended_here:  # a running one is told by ferry serve's cancellation hook when its process stops
        from flows.orchestration import events

        events.emit_for(ctx.store, deployment_id, events.CANCELLED, error=reason, direct=True)
    return f"deployment #{deployment_id}: cancel requested ({reason})"


# --- the log, read in pages: what `ferry deployment follow` polls -----------------------------------------

def _encode(cursor: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(cursor, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        cursor = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return {"after": str(cursor["after"]), "seen": [str(i) for i in cursor["seen"]],
                "ended": bool(cursor.get("ended"))}
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"log cursor {text[:40]!r} is not one this server gave out") from None


_task_names: dict[str, str] = {}
"""task run id → name: log lines name their task; the names never change, so ask Prefect once each."""


def read_log(ctx: Workspace, deployment_id: int, after: str | None = None, limit: int = 200,
             client: Any = None) -> dict[str, Any]:
    """Log lines of a deployment's flow run after ``after`` (an opaque cursor from the last call), the cursor
    for the next call, the flow run's state, and whether the deployment has finished and succeeded (from the
    ferry record, which is the deployment's truth)."""
    from logging import getLevelName

    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterTimestamp
    from prefect.client.schemas.sorting import LogSort

    cursor = _decode(after)
    with ctx.store.read() as conn:
        found = records.get(conn, deployment_id)
    lines: list[dict[str, Any]] = []
    state = found.state
    drained = True
    if found.flow_run_id:
        run_id = UUID(found.flow_run_id)
        since = datetime.fromisoformat(cursor["after"]) if cursor else None
        seen = set(cursor.get("seen", []))
        ended = bool(cursor.get("ended"))
        with client_or_new(client) as prefect:
            run = prefect.read_flow_run(run_id)  # before the log: a final state read first means a complete log
            logs = prefect.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]),
                                              timestamp=LogFilterTimestamp(after_=since) if since else None),
                                    limit=limit, sort=LogSort.TIMESTAMP_ASC)
            for log in logs:
                if str(log.id) in seen:
                    continue
                if log.task_run_id is None and log.message.startswith("Finished in state"):
                    ended = True
                lines.append({"at": log.timestamp.isoformat(), "level": getLevelName(log.level),
                              "task": _task_name(prefect, log.task_run_id), "message": log.message})
            if logs:
                last = logs[-1].timestamp
                same = [str(log.id) for log in logs if log.timestamp == last]
                if since is not None and last == since:
                    same = [*seen, *same]
                cursor = {"after": last.isoformat(), "seen": sorted(set(same))}
            if cursor:
                cursor["ended"] = ended
        if run.state is not None:
            state = run.state.name or str(run.state.type.value)
        # Log lines reach Prefect in batches, some after the final state: the log is complete once the
        # engine's closing line is in, or a few seconds after the run ended (a run cancelled before it
        # started has no closing line) — or at once for a Completed/Failed run: deploy-release sends its
        # log before its final state (the engine's closing line may then come later, unread).
        # ``limit`` lines at a time: more may be waiting.
        final = run.state is not None and run.state.is_final()
        flushed = run.state is not None and (run.state.is_completed() or run.state.is_failed())
        ended_at = run.end_time or (run.state.timestamp if run.state is not None else None)
        quiet = ended_at is not None and (datetime.now(UTC) - ended_at).total_seconds() > LOG_TAIL_SECONDS
        drained = final and len(logs) < limit and (ended or quiet or flushed)
        with ctx.store.read() as conn:  # the record may have finished while the log was read
            found = records.get(conn, deployment_id)
    finished = found.state in records.FINISHED and drained
    return {"lines": lines, "next": _encode(cursor) if cursor else (after or ""), "state": state,
            "record_state": found.state, "finished": finished,
            "ok": (found.state == records.SUCCESS) if finished else None}


LOG_TAIL_SECONDS = 8.0


def _task_name(client: Any, task_run_id: UUID | None) -> str | None:
    if task_run_id is None:
        return None
    key = str(task_run_id)
    if key not in _task_names:
        if len(_task_names) > 10_000:  # ferry serve runs for months: forget old runs' tasks now and then
            _task_names.clear()
        try:
            _task_names[key] = client.read_task_run(task_run_id).name
        except Exception:  # a task run not readable (yet): the line is shown without its name
            return None
    return _task_names[key] or None
