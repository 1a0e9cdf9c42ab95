"""``/deployments``: deploy, list, show, log, answer, cancel; ``/whoami`` and ``/audit``."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict

from flows.server.auth import authorize, authorize_read, current_key, workspace
from flows.server.routes_projects import DeployOptions
from snapshots.store import outputs as output_store
from snapshots.store import records
from snapshots.store.api_keys import ALL, ApiKey

router = APIRouter()


class DeployBody(DeployOptions):
    project: str
    release: str = "latest"
    environment: str


class AnswerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str
    notes: str = ""


@router.get("/whoami")
def whoami(key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    return {"name": key.name, "projects": list(key.projects), "environments": list(key.environments),
            "actions": list(key.actions), "expires_at": key.expires_at}


@router.post("/deployments", status_code=201)
def deploy(body: DeployBody, request: Request, key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    """Check, record (as ``key:<name>``) and start a flow run of the project's served deploy-release."""
    from flows.engine.request import DeployRequest
    from flows.orchestration.launch import launch, prefect_client

    authorize(request, key, "deploy", body.project, body.environment)
    deployment = DeployRequest(body.project, body.release, body.environment, **body.options())
    return launch(workspace(request), deployment, key.actor, tags=["api", key.actor],
                  client=prefect_client()).as_dict()


class PlanBody(DeployBody):
    check_targets: bool = False


@router.post("/deployments/plan")
def plan(body: PlanBody, request: Request, key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    """What ``POST /deployments`` would do (``ferry deploy … --plan --json``): nothing is recorded and no target
    is touched, except that ``check_targets`` reads each target's journal. Needs the same scope as deploying."""
    from flows.engine.plan import prepare
    from flows.engine.plan_view import describe, read_journals

    authorize(request, key, "deploy", body.project, body.environment)
    ctx = workspace(request)
    with ctx.store.read() as conn:
        planned = prepare(conn, ctx.feed, ctx.vault, project=body.project, release=body.release,
                          environment=body.environment, **body.options(), report_freeze=True)
        journals = read_journals(planned, ctx.settings.home) if body.check_targets else None
        doc = describe(conn, planned, journals=journals)
        conn.rollback()
    return doc


@router.get("/deployments")
def list_deployments(request: Request, project: str | None = None, environment: str | None = None,
                     limit: int = Query(30, ge=1, le=1000), key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    """As ``ferry deployment list --json``: newest first, only the key's projects."""
    if project is not None:
        authorize_read(request, key, project)
    with workspace(request).store.read() as conn:
        if project is not None or ALL in key.projects:
            found = records.list_deployments(conn, project, environment, limit)
        else:
            found = sorted((d for p in key.projects for d in records.list_deployments(conn, p, environment, limit)),
                           key=lambda d: d.id, reverse=True)[:limit]
    return {"deployments": [d.as_dict() for d in found]}


def _deployment(request: Request, key: ApiKey, deployment_id: int) -> records.Deployment:
    with workspace(request).store.read() as conn:
        found = records.get(conn, deployment_id)
    authorize_read(request, key, found.project)
    return found


@router.get("/deployments/{deployment_id}")
def show(deployment_id: int, request: Request, key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    """As ``ferry deployment show --json``, plus ``finished``."""
    found = _deployment(request, key, deployment_id)
    ctx = workspace(request)
    with ctx.store.read() as conn:
        results = records.results(conn, deployment_id)
        outputs = output_store.for_deployment(conn, deployment_id, ctx.vault)  # sensitive ones masked
        from flows.engine.inventory import answers
        answered = answers(conn, found.project, deployment_id)
    return {**found.as_dict(), "results": [r.as_dict() for r in results], "outputs": [o.as_dict() for o in outputs],
            "answers": answered,
            "finished": found.state in records.FINISHED}


@router.get("/deployments/{deployment_id}/log")
def log(deployment_id: int, request: Request, after: str | None = None,
        key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    """Log lines after the cursor ``after``; ``next`` is the cursor for the next call. Poll until
    ``finished`` (then ``ok`` says whether it succeeded)."""
    from flows.orchestration.launch import prefect_client, read_log

    _deployment(request, key, deployment_id)
    return read_log(workspace(request), deployment_id, after, client=prefect_client())


@router.post("/deployments/{deployment_id}/answer")
def answer(deployment_id: int, body: AnswerBody, request: Request,
           key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    from flows.orchestration.launch import answer as answer_pause

    found = _deployment(request, key, deployment_id)
    authorize(request, key, "answer", found.project, found.environment)
    return {"message": answer_pause(workspace(request), deployment_id, body.action, body.notes, key.actor)}


@router.post("/deployments/{deployment_id}/cancel")
def cancel(deployment_id: int, request: Request, key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    from flows.orchestration.launch import cancel as cancel_deployment
    from flows.orchestration.launch import prefect_client

    found = _deployment(request, key, deployment_id)
    authorize(request, key, "deploy", found.project, found.environment)
    return {"message": cancel_deployment(workspace(request), deployment_id, key.actor, prefect_client())}


@router.get("/audit")
def audit_log(request: Request, limit: int = Query(100, ge=1, le=10_000),
              key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    """Newest first: entries about the key's projects, and everything the key itself did."""
    from sqlalchemy import or_, select

    from snapshots.store.tables import audit_log as table

    query = select(table).order_by(table.c.id.desc()).limit(limit)
    if ALL not in key.projects:
        scoped = [c for p in key.projects for c in (table.c.subject == f"project/{p}",
                                                    table.c.subject.startswith(f"project/{p}/", autoescape=True))]
        query = query.where(or_(table.c.actor == key.actor, *scoped))
    with workspace(request).store.read() as conn:
        rows = conn.execute(query).all()
    return {"entries": [{"at": r.at, "actor": r.actor, "action": r.action, "subject": r.subject,
                         "detail": json.loads(r.detail or "{}")} for r in rows]}
