"""Notifications: ferry emits a Prefect event when a deployment starts, pauses for a person, succeeds, fails or
is cancelled, so Prefect automations (Slack, email, webhook) can tell people — ferry sends nothing itself.

Event names: ``ferry.deployment.started|paused|succeeded|failed|cancelled|refused``. The resource is the deployment
(``ferry.deployment.<id>``) labelled with project, environment, release, actor (who asked) and the link to the
flow run in the Prefect UI; the flow run is a related resource. An event that cannot be sent never fails a
deployment.

``refused``: a deployment stopped while it was planned (lifecycle, freeze, channel, an unknown target …), the
one-line reason in the payload (``reason`` and ``error``). Refused before anything was recorded (the CLI, the
API), the resource is ``ferry.deployment.refused.<random>`` with the same labels and no deployment id; refused
as its flow run started (a scheduled or served run), it is the deployment's own resource and its record says
Failed. A ``--cancel-on-timeout`` is a ``cancelled`` event whose reason says it timed out.
Events sent from outside a flow run (the CLI, the server API) go over plain HTTP (``POST /api/events``) and only
when a Prefect API is configured: no Prefect import, never a temporary server just to send one."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from flows.orchestration.served_runs import run_url, thin_api
from snapshots.store import records
from snapshots.store.engine import Store

STARTED, PAUSED, SUCCEEDED, FAILED, CANCELLED, REFUSED = (
    "started", "paused", "succeeded", "failed", "cancelled", "refused")

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
             flush: bool = False, direct: bool = False) -> None:
    """Emit ``ferry.deployment.<kind>`` for the record; ``flush``: send it before returning (a final event,
    which the process may otherwise exit before sending); ``direct``: over plain HTTP, from outside a flow run
    (the CLI after ``--cancel-on-timeout``)."""
    try:
        with store.read() as conn:
            deployment = records.get(conn, deployment_id)
        if direct:
            _post(kind, *_parts(deployment, error))
        else:
            _emit(deployment, kind, error, flush)
    except Exception:  # no API, a broken connection: a notification never fails the deployment
        log.warning("could not emit ferry.deployment.%s for #%s", kind, deployment_id, exc_info=True)


def emit_refused(reason: str, *, project: str, environment: str, release: str, actor: str,
                 store: Store | None = None, deployment_id: int | None = None) -> None:
    """``ferry.deployment.refused`` with the one-line reason: for the record when one exists (refused as its flow
    run started), else for the request (refused before anything was recorded). Never raises."""
    try:
        if store is not None and deployment_id is not None:
            with store.read() as conn:
                deployment = records.get(conn, deployment_id)
            resource, related, payload = _parts(deployment, reason)
        else:
            resource = {"prefect.resource.id": f"ferry.deployment.refused.{uuid4().hex[:12]}",
                        "prefect.resource.name": f"{project} {release} → {environment} (refused)",
                        "ferry.project": project, "ferry.environment": environment, "ferry.release": release,
                        "ferry.actor": actor, "ferry.deployment-id": "", "ferry.link": ""}
            related, payload = [], {"deployment_id": None, "link": "", "state": "Refused", "no_change": False,
                                    "error": reason}
        payload["reason"] = reason
        if "prefect.context" in sys.modules and _in_flow_run():
            from prefect.events import emit_event
            from prefect.events.worker import EventsWorker

            emit_event(event=f"ferry.deployment.{REFUSED}", resource=resource, related=related, payload=payload)
            EventsWorker.drain_all(timeout=5)
        else:
            _post(REFUSED, resource, related, payload)
    except Exception:
        log.warning("could not emit ferry.deployment.refused for %s → %s", project, environment, exc_info=True)


def emit_state(store: Store, deployment_id: int, state: str, *, error: str | None = None) -> None:
    """The event a record's new state stands for (RUNNING after a pause is no new start: callers say when)."""
    kind = _BY_STATE.get(state)
    if kind is not None:
        emit_for(store, deployment_id, kind, error=error, flush=kind in (SUCCEEDED, FAILED, CANCELLED))


def _parts(deployment: records.Deployment, error: str | None
           ) -> tuple[dict[str, str], list[dict[str, str]], dict[str, Any]]:
    """An event's resource, related resources and payload for a deployment record."""
    flow_run_id = deployment.flow_run_id
    link = run_url(flow_run_id) if flow_run_id else ""
    related: list[dict[str, str]] = []
    if flow_run_id:
        related.append({"prefect.resource.id": f"prefect.flow-run.{flow_run_id}", "prefect.resource.role": "flow-run"})
    payload: dict[str, Any] = {"deployment_id": deployment.id, "link": link, "state": deployment.state,
                               "no_change": deployment.no_change}
    if error:
        payload["error"] = error
    return event_resource(deployment, link), related, payload


def _emit(deployment: records.Deployment, kind: str, error: str | None, flush: bool) -> None:
    from prefect.events import emit_event

    resource, related, payload = _parts(deployment, error)
    emit_event(event=f"ferry.deployment.{kind}", resource=resource, related=related, payload=payload)
    if flush:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=5)


def _in_flow_run() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def _post(kind: str, resource: dict[str, str], related: list[dict[str, str]], payload: dict[str, Any]) -> None:
    """One event over plain HTTP to the configured Prefect API (none configured: nothing is sent)."""
    api = thin_api()
    if api is None:
        return
    event = {"id": str(uuid4()), "occurred": datetime.now(UTC).isoformat(), "event": f"ferry.deployment.{kind}",
             "resource": resource, "related": related, "payload": payload}
    response = api._send("POST", "/events", json=[event])  # the thin client's connection (auth, base URL)
    response.raise_for_status()


__all__ = ["CANCELLED", "FAILED", "PAUSED", "REFUSED", "STARTED", "SUCCEEDED", "emit_for", "emit_refused",
           "emit_state", "event_resource"]
