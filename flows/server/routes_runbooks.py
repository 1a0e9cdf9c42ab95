"""``/projects/{project}/runbooks`` (list) and ``/runbooks/runs`` (run one): a runbook run needs the key's
``deploy`` scope for the project and environment — it runs steps on that environment's targets as a deployment
does — and is recorded as ``key:<name>``, then started on the runbook's served ``run-runbook`` deployment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from flows.server.auth import authorize, authorize_read, current_key, workspace
from snapshots.store.api_keys import ApiKey

router = APIRouter()


class RunbookRunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project: str
    runbook: str
    environment: str
    snapshot: int | None = Field(None, ge=1)
    targets: list[str] = Field(default_factory=list)
    exclude_targets: list[str] = Field(default_factory=list)
    variables: dict[str, str] = Field(default_factory=dict)
    guided_failure: bool | None = None


@router.get("/projects/{project}/runbooks")
def list_runbooks(project: str, request: Request, key: ApiKey = Depends(current_key)) -> list[dict[str, Any]]:
    from flows.engine.runbook_views import runbook_list

    authorize_read(request, key, project)
    with workspace(request).store.read() as conn:
        return runbook_list(conn, project)


@router.post("/runbooks/runs", status_code=201)
def run_runbook(body: RunbookRunBody, request: Request, key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    """Check, record (as ``key:<name>``) and start a flow run of the runbook's served deployment."""
    from dataclasses import replace

    from flows.engine.runbooks import RunbookRequest, check_and_record
    from flows.orchestration.launch import prefect_client
    from flows.orchestration.runbook_serving import find_served_runbook, start_served_run
    from flows.orchestration.served_runs import api_url, run_url
    from snapshots.errors import ConflictError
    from snapshots.projects import require_project
    from snapshots.runbook_snapshots import find_runbook

    authorize(request, key, "deploy", body.project, body.environment)
    ctx = workspace(request).acting_as(key.actor)
    wanted = RunbookRequest(body.project, body.runbook, body.environment, body.snapshot, body.targets,
                            body.exclude_targets, body.variables, body.guided_failure)
    with ctx.store.read() as conn:
        wanted = replace(wanted, runbook=find_runbook(require_project(conn, body.project), body.runbook).name)
    client = prefect_client() if api_url() else None  # no Prefect API configured: nothing can be served
    served = find_served_runbook(body.project, wanted.runbook, client=client)
    if served is None:
        raise ConflictError(f"runbook {wanted.runbook!r} of {body.project} is not served yet: ferry serve registers "
                            "runbooks within its --sync-seconds of `ferry apply`")
    run_id, checked = check_and_record(ctx, wanted)
    run = start_served_run(ctx, served, checked, run_id, tags=["api", key.actor], client=client)
    return {"deployment_id": run_id, "project": checked.project, "runbook": checked.runbook,
            "snapshot": checked.snapshot, "environment": checked.environment, "flow_run_id": str(run.id),
            "flow_run_name": run.name, "flow_run_url": run_url(run.id)}
