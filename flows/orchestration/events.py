"""Notifications: ferry emits a Prefect event when a deployment starts, pauses for a person, succeeds, fails or
is cancelled, so Prefect automations (Slack, email, webhook) can tell people — ferry sends nothing itself.

Event names: ``ferry.deployment.started|paused|succeeded|failed|cancelled``. The resource is the deployment
(``ferry.deployment.<id>``) labelled with project, environment, release, actor (who asked) and the link to the
flow run in the Prefect UI; the flow run is a related resource. An event that cannot be sent never fails a
deployment."""

from __future__ import annotations

import logging
from typing import Any

from flows.orchestration.served_runs import run_url
from snapshots.store import records
from snapshots.store.engine import Store

STARTED, PAUSED, SUCCEEDED, FAILED, CANCELLED = "started", "paused", "succeeded", "failed", "cancelled"

_BY_STATE = {records.RUNNING: STARTED, records.PAUSED: PAUSED, records.SUCCESS: SUCCEEDED,
             records.FAILED: FAILED, records.CANCELLED: CANCELLED}

log = logging.getLogger("ferry.events")


def event_resource(deployment: records.Deployment, link: str) -> dict[str, str]:
    """The labels an automation's template reads: ``{{ event.resource['ferry.project'] }}`` and so on."""
    return {"prefect.resource.id": f"ferry.deployment.{deployment.id}",
            "prefect.resource.name": f"{deployment.project} {deployment.version} → {deployment.environment}",
            "ferry.project": deployment.project, "ferry.environment": deployment.environment,
            "ferry.release": deployment.version, "ferry.actor": deployment.created_by,
            "ferry.deployment-id": str(deployment.id), "ferry.link": link}


def emit_for(store: Store, deployment_id: int, kind: str, *, error: str | None = None,
             flush: bool = False) -> None:
    """Emit ``ferry.deployment.<kind>`` for the record; ``flush``: send it before returning (a final event,
    which the process may otherwise exit before sending)."""
    try:
        with store.read() as conn:
            deployment = records.get(conn, deployment_id)
        _emit(deployment, kind, error, flush)
    except Exception:  # no API, a broken connection: a notification never fails the deployment
        log.warning("could not emit ferry.deployment.%s for #%s", kind, deployment_id, exc_info=True)


def emit_state(store: Store, deployment_id: int, state: str, *, error: str | None = None) -> None:
    """The event a record's new state stands for (RUNNING after a pause is no new start: callers say when)."""
    kind = _BY_STATE.get(state)
    if kind is not None:
        emit_for(store, deployment_id, kind, error=error, flush=kind in (SUCCEEDED, FAILED, CANCELLED))


def _emit(deployment: records.Deployment, kind: str, error: str | None, flush: bool) -> None:
    from prefect.events import emit_event

    flow_run_id = deployment.flow_run_id
    link = run_url(flow_run_id) if flow_run_id else ""
    related: list[dict[str, str]] = []
    if flow_run_id:
        related.append({"prefect.resource.id": f"prefect.flow-run.{flow_run_id}", "prefect.resource.role": "flow-run"})
    payload: dict[str, Any] = {"deployment_id": deployment.id, "link": link, "state": deployment.state}
    if error:
        payload["error"] = error
    emit_event(event=f"ferry.deployment.{kind}", resource=event_resource(deployment, link), related=related,
               payload=payload)
    if flush:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=5)


__all__ = ["CANCELLED", "FAILED", "PAUSED", "STARTED", "SUCCEEDED", "emit_for", "emit_state", "event_resource"]
