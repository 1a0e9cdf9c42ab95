"""A runbook run, decided before it touches a target: which published snapshot (digest and signatures checked),
whether the runbook may run in the environment, which targets are in scope, the variables — and its record,
created with who asked before any flow run exists, as for a deployment. No lifecycle check: a runbook run
moves no release anywhere."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Connection

from flows.engine.plan import DeploymentPlan, ReleasePlan, resolve_rolling
from flows.engine.rolling import check_min_healthy
from snapshots import releases
from snapshots.errors import ConfigError, NotFoundError
from snapshots.model import ParentStep, ProcessItem
from snapshots.projects import require_infrastructure
from snapshots.releases import Release
from snapshots.runbook_snapshots import require_snapshot
from snapshots.store import prompted, records
from snapshots.store.crypto import Vault
from snapshots.store.feed import Feed
from snapshots.variables.scopes import VariableIndex, apply_prompted, masker_for
from snapshots.workspace import Workspace
from steps.context import PackageRef

_PROCESS = TypeAdapter(list[ProcessItem])


@dataclass
class RunbookRequest:
    project: str
    runbook: str
    environment: str
    snapshot: int | None = None
    targets: list[str] = field(default_factory=list)
    exclude_targets: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    guided_failure: bool | None = None

    def flow_parameters(self, deployment_id: int | None = None) -> dict[str, Any]:
        """The ``run-runbook`` flow's parameters: prompted values stay encrypted in the store under the record."""
        params = {k: v for k, v in asdict(self).items() if k != "variables" and v not in (None, [], {})}
        if deployment_id is not None:
            params["deployment_id"] = deployment_id
        elif self.variables:
            raise ValueError("prompted values travel only by deployment id: record the run first")
        return params


def _names(items: list[Any]) -> str:
    return ", ".join(sorted(getattr(i, "name", str(i)) for i in items)) or "none"


def prepare_runbook(conn: Connection, feed: Feed, vault: Vault, request: RunbookRequest) -> DeploymentPlan:
    """Check everything that can be checked without touching a target; raise a FerryError otherwise."""
    found = require_snapshot(conn, request.project, request.runbook, request.snapshot)
    name = found.snapshot["runbook"]
    infra = require_infrastructure(conn)
    env = infra.environment(request.environment)
    if env is None:
        raise NotFoundError(f"unknown environment {request.environment!r} (known: {_names(infra.environments)})")
    allowed = found.snapshot.get("environments") or []
    if allowed and env.name not in allowed:
        raise ConfigError(f"runbook {name!r} of {request.project} may not run in {env.name} "
                          f"(its environments: {', '.join(allowed)})")
    current = _snapshot_plan(feed, vault, found, request.project, dict(request.variables))
    roles = set(found.snapshot.get("roles") or [])
    in_env = [t for t in infra.targets_in(env.name) if not roles or roles & set(t.roles)]
    by_name = {t.name: t for t in in_env}
    for target in [*request.targets, *request.exclude_targets]:
        if target not in by_name:
            scope = f" with role(s) {', '.join(sorted(roles))}" if roles else ""
            raise ConfigError(f"target {target!r} is not in {env.name}{scope} (its targets: {_names(in_env)})")
    chosen = [t for t in in_env if (not request.targets or t.name in request.targets)
              and t.name not in request.exclude_targets]
    for item in current.process:
        if isinstance(item, ParentStep) and item.rolling:
            rolling = resolve_rolling(current, item, env.name)
            if rolling.min_healthy:
                role_targets = [t for t in in_env if set(t.roles) & set(item.roles)]
                check_min_healthy(len(role_targets), int(rolling.min_healthy), f"step {item.name!r} in {env.name}")
    guided = env.guided_failure if request.guided_failure is None else request.guided_failure
    return DeploymentPlan(project=request.project, environment=env, infra=infra, current=current, targets=chosen,
                          environment_targets=in_env, skip_steps=set(), guided_failure=guided, force=False,
                          prompted=dict(request.variables))


def _snapshot_plan(feed: Feed, vault: Vault, found: Release, project: str, given: dict[str, str]) -> ReleasePlan:
    """The snapshot ready to run, as a release plan: digests and signatures checked (under its reserved name),
    prompted values applied, secrets decrypted in memory only; from here on it speaks of the project itself."""
    releases.check_integrity(found, vault)
    filled = apply_prompted(releases.decrypt_variables(found.variables, vault), given)
    packages = {p["id"]: PackageRef(p["id"], p["version"], p["sha256"], p["filename"],
                                    feed.path_of(p["id"], p["filename"])) for p in found.packages}
    return ReleasePlan(release=replace(found, project=project), process=_PROCESS.validate_python(found.process),
                       index=VariableIndex(filled), variables_revision=found.variables.revision,
                       variable_snapshot_id=found.variables.id, packages=packages, masker=masker_for(filled),
                       previous_for_environment=None)


def record_run(conn: Connection, ctx: Workspace, plan: DeploymentPlan, request: RunbookRequest) -> int:
    """The run's record (kind ``runbook``), with the request's prompted values encrypted beside it."""
    snapshot = plan.current.release
    run_id = records.create(
        conn, project=request.project, release_id=snapshot.id, environment=plan.environment.name,
        variable_snapshot_id=plan.current.variable_snapshot_id, actor=ctx.actor, runbook=snapshot.snapshot["runbook"],
        parameters={"runbook": snapshot.snapshot["runbook"], "snapshot": snapshot.snapshot["snapshot"],
                    "targets": request.targets, "exclude_targets": request.exclude_targets,
                    "prompted": sorted(request.variables)})
    prompted.store_for_deployment(conn, ctx.vault, run_id, request.project, request.variables, ctx.actor)
    return run_id


def check_and_record(ctx: Workspace, request: RunbookRequest) -> tuple[int, RunbookRequest]:
    """Validate the request as the flow will and record it. Returns (record id, the request with the snapshot it
    resolved to, so the flow runs the snapshot that was checked even if another is published meanwhile)."""
    with ctx.store.begin() as conn:
        plan = prepare_runbook(conn, ctx.feed, ctx.vault, request)
        run_id = record_run(conn, ctx, plan, request)
    snapshot = plan.current.release.snapshot
    return run_id, replace(request, runbook=snapshot["runbook"], snapshot=int(snapshot["snapshot"]))
