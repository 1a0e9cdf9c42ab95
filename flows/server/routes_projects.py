"""``/projects/{p}/…``: releases (create, list, show), promote, rollback, status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from flows.server.auth import authorize, authorize_read, current_key, workspace
from snapshots.model.channels import DEFAULT_CHANNEL
from snapshots.store.api_keys import ApiKey

router = APIRouter()


class DeployOptions(BaseModel):
    """What a deployment may be asked to do differently (as ``ferry deploy``'s options)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    targets: list[str] | None = None
    exclude_targets: list[str] | None = None
    skip_steps: list[str] | None = None
    variables: dict[str, str] | None = Field(None, description="Prompted variables; may be sensitive")
    guided_failure: bool | None = None
    force: bool = False
    channel: str | None = Field(None, description="'latest' (and promote) within this channel (default: the "
                                                  "project's default channel)")
    override_freeze: bool = Field(False, description="Deploy although a deployment freeze is in force (recorded)")

    def options(self) -> dict[str, Any]:
        return {"targets": list(self.targets or []), "exclude_targets": list(self.exclude_targets or []),
                "skip_steps": list(self.skip_steps or []), "variables": dict(self.variables or {}),
                "guided_failure": self.guided_failure, "force": self.force, "channel": self.channel,
                "override_freeze": self.override_freeze}


class ReleaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | None = None
    packages: dict[str, str] | None = None
    notes: str | None = None
    ignore_existing: bool = False
    deploy_to: list[str] | None = None
    channel: str | None = Field(None, description="The channel to create the release in (default: the default one)")


class PromoteBody(DeployOptions):
    from_: str = Field(..., alias="from")
    to: str


class RollbackBody(DeployOptions):
    environment: str


def release_summary(release: Any) -> dict[str, Any]:
    """As ``ferry release list --json`` gives one release."""
    return {"project": release.project, "version": release.version, "digest": release.digest,
            "created_at": release.created_at, "created_by": release.created_by,
            "project_revision": release.snapshot["project_revision"],
            "variable_revision": release.variables.revision,
            "packages": [{k: p[k] for k in ("id", "version", "sha256")} for p in release.packages],
            "channel": release.snapshot.get("channel") or DEFAULT_CHANNEL}


@router.post("/projects/{project}/releases", status_code=201)
def create_release(project: str, body: ReleaseBody, request: Request,
                   key: ApiKey = Depends(current_key)) -> JSONResponse:
    """Freeze a release (then the lifecycle's auto-deploys, and ``deploy_to``), recorded as the key."""
    from flows.orchestration.launch import launch, prefect_client
    from flows.orchestration.served_runs import api_url
    from flows.orchestration.triggers import auto_deploy
    from snapshots import releases

    authorize(request, key, "release", project)
    for environment in body.deploy_to or []:
        authorize(request, key, "deploy", project, environment)
    ctx = workspace(request)
    vault = ctx.vault
    with ctx.store.begin() as conn:
        release, created = releases.create(conn, ctx.feed, project, key.actor, vault=vault, version=body.version,
                                           package_pins=dict(body.packages or {}), notes=body.notes or "",
                                           ignore_existing=body.ignore_existing, channel=body.channel)
    messages: list[str] = []
    started: list[dict[str, Any]] = []
    if created and api_url():
        started = auto_deploy(ctx.acting_as(key.actor), project, release.version, messages.append)
    from flows.engine.request import DeployRequest

    for environment in body.deploy_to or []:
        if any(s["environment"] == environment for s in started):
            continue
        launched = launch(ctx, DeployRequest(project, release.version, environment), key.actor,
                          tags=["api", key.actor], client=prefect_client())
        started.append({"environment": environment, **launched.as_dict()})
    return JSONResponse({"project": project, "version": release.version, "digest": release.digest,
                         "created": created, "deployments": started, "messages": messages},
                        status_code=201 if created else 200)


@router.get("/projects/{project}/releases")
def list_releases(project: str, request: Request, key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    from snapshots import releases

    authorize_read(request, key, project)
    with workspace(request).store.read() as conn:
        found = releases.list_releases(conn, project)
    return {"releases": [release_summary(r) for r in found]}


@router.get("/projects/{project}/releases/{version}")
def show_release(project: str, version: str, request: Request, key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    """The release as ``ferry release show --json`` gives it: sensitive values masked."""
    from snapshots import releases

    authorize_read(request, key, project)
    with workspace(request).store.read() as conn:
        release = releases.require(conn, project, version)
    snapshot = release.variables
    return {**release_summary(release), "notes": release.snapshot["notes"],
            "lifecycle": release.snapshot["lifecycle"], "process": release.process,
            "variable_snapshots": [{"revision": snapshot.revision, "created_at": snapshot.created_at,
                                    "created_by": snapshot.created_by,
                                    "project_revision": snapshot.document["project_revision"],
                                    "digest": snapshot.digest,
                                    "variables": releases.masked_variables(snapshot.variables)}]}


@router.post("/projects/{project}/promote", status_code=201)
def promote(project: str, body: PromoteBody, request: Request, key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    from flows.orchestration.launch import launch, prefect_client, promote_request

    authorize(request, key, "deploy", project, body.to)
    ctx = workspace(request)
    deploy = promote_request(ctx, project, body.from_, body.to, **body.options())
    return launch(ctx, deploy, key.actor, tags=["api", key.actor], client=prefect_client()).as_dict()


@router.post("/projects/{project}/rollback", status_code=201)
def rollback(project: str, body: RollbackBody, request: Request,
             key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    from flows.orchestration.launch import launch, prefect_client, rollback_request

    authorize(request, key, "deploy", project, body.environment)
    ctx = workspace(request)
    options = body.options()
    options.pop("force")
    deploy, current = rollback_request(ctx, project, body.environment, **options)
    launched = launch(ctx, deploy, key.actor, tags=["api", key.actor], client=prefect_client())
    return {**launched.as_dict(), "rolled_back_from": current}


@router.get("/projects/{project}/status")
def status(project: str, request: Request, key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    """As ``ferry status --json``."""
    from flows.engine.dashboard import dashboard

    authorize_read(request, key, project)
    return dashboard(workspace(request), project)
