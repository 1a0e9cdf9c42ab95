"""A deployment request: what a person, CI or a trigger asks for, checked the way the flow will check it
and recorded before any flow run exists, so a mistake (unknown environment, lifecycle, missing prompted
variable, tampered release) is one line on the terminal, not a failed flow run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from flows.engine import prepared
from flows.engine.plan import DeploymentPlan, prepare
from snapshots.store import prompted, records
from snapshots.workspace import Workspace


@dataclass
class DeployRequest:
    project: str
    release: str
    environment: str
    targets: list[str] = field(default_factory=list)
    exclude_targets: list[str] = field(default_factory=list)
    skip_steps: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    guided_failure: bool | None = None
    force: bool = False
    channel: str | None = None
    """``latest`` means the latest release of this channel (default: the project's default channel)."""
    override_freeze: bool = False
    """Deploy although a deployment freeze is in force (recorded on the deployment: who, which freeze)."""

    def flow_parameters(self, deployment_id: int | None = None) -> dict[str, Any]:
        """What a flow run's parameters carry: everything but the prompted values, which ``check_and_record``
        keeps encrypted in the store under ``deployment_id`` (the flow reads them back there). Parameters
        end up in Prefect's database and in process arguments; a prompted value may be a secret."""
        params = {k: v for k, v in asdict(self).items() if k != "variables" and v not in (None, [], {})}
        if not self.override_freeze:  # only when asked: runs of served deployments registered before it existed
            params.pop("override_freeze")
        if deployment_id is not None:
            params["deployment_id"] = deployment_id
        elif self.variables:
            raise ValueError("prompted values travel only by deployment id: record the deployment first")
        return params


def freeze_parameters(plan: DeploymentPlan, actor: str) -> dict[str, Any]:
    """What a deployment record keeps about channels and freezes: the release's channel, and an override of a
    freeze in force (who, which freeze, until when)."""
    params: dict[str, Any] = {"channel": plan.current.channel}
    if plan.override_freeze:
        params["override_freeze"] = True
    if plan.freeze is not None and plan.override_freeze:
        params["freeze_override"] = {**plan.freeze.as_dict(), "by": actor}
    return params


def check_and_record(ctx: Workspace, request: DeployRequest, *, at: datetime | None = None) -> tuple[int, str]:
    """Validate the request as the flow will, and create the deployment record with the request's prompted
    values, encrypted, in the same transaction. Returns (id, version). ``at``: when a scheduled deployment
    will start (the deployment freezes are checked for that moment; the flow checks again when it starts)."""
    with ctx.store.begin() as conn:
        plan = prepare(conn, ctx.feed, ctx.vault, project=request.project, release=request.release,
                       environment=request.environment, targets=request.targets,
                       exclude_targets=request.exclude_targets, skip_steps=request.skip_steps,
                       variables=request.variables, guided_failure=request.guided_failure, force=request.force,
                       channel=request.channel, override_freeze=request.override_freeze, when=at)
        version = plan.current.release.version
        deployment_id = records.create(
            conn, project=request.project, release_id=plan.current.release.id, environment=request.environment,
            variable_snapshot_id=plan.current.variable_snapshot_id, actor=ctx.actor,
            parameters={"targets": request.targets, "exclude_targets": request.exclude_targets,
                        "skip_steps": request.skip_steps, "prompted": sorted(request.variables),
                        "force": request.force, **freeze_parameters(plan, ctx.actor)})
        prompted.store_for_deployment(conn, ctx.vault, deployment_id, request.project, request.variables,
                                      ctx.actor)
    if at is None:  # a run starting now in this process uses it; a scheduled one prepares when it starts
        prepared.remember(deployment_id, plan)
    return deployment_id, version
