"""Everything decided before a deployment touches a target: which release (digest verified), whether
the lifecycle allows it, which targets and steps are in scope, and the variables (prompted values
applied, sensitive ones decrypted in memory only).

The CLI runs this first so a mistake is refused in one line before a flow run exists; the flow runs it
again because the world may have changed in between (and because the UI and the API skip the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection

from flows.engine.rolling import check_min_healthy
from flows.engine.target_health import unhealthy_exclusions
from snapshots import freezes, release_feeds, releases
from snapshots.certificates import Certificate, for_deployment, referenced
from snapshots.channels import channel_of
from snapshots.errors import ConfigError, NotFoundError
from snapshots.freezes import FreezeWindow
from snapshots.lifecycle import check_progression
from snapshots.model import Environment, Infrastructure, ParentStep, ProcessItem, Target
from snapshots.model.channels import DEFAULT_CHANNEL
from snapshots.model.steps import Rolling, Step
from snapshots.octostache import render
from snapshots.projects import require_infrastructure, require_project
from snapshots.releases import Release
from snapshots.store import records
from snapshots.store.crypto import Vault
from snapshots.store.feed import Feed
from snapshots.variables.masking import Masker
from snapshots.variables.scopes import ScopeContext, VariableIndex, apply_prompted, masker_for, system_variables
from steps.context import PackageRef

_PROCESS = TypeAdapter(list[ProcessItem])


@dataclass
class ReleasePlan:
    """One release, ready to run: its process as models, its variables indexed, its packages located."""

    release: Release
    process: list[ProcessItem]
    index: VariableIndex
    variables_revision: int
    variable_snapshot_id: int
    packages: dict[str, PackageRef]
    masker: Masker
    previous_for_environment: str | None
    channel: str = DEFAULT_CHANNEL
    """The release's channel: variables scoped to it apply."""


@dataclass
class DeploymentPlan:
    project: str
    environment: Environment
    infra: Infrastructure
    current: ReleasePlan
    targets: list[Target]
    """Targets of the environment in scope (after --target / --exclude-target)."""
    environment_targets: list[Target]
    skip_steps: set[str]
    guided_failure: bool
    force: bool
    prompted: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    """Targets left out up front by their machine policy (unhealthy at the last check, policy skip) → why."""
    certificates: dict[str, Certificate] = field(default_factory=dict)
    """The certificates the release's steps deploy, decrypted (their keys are in the masker)."""
    warnings: list[str] = field(default_factory=list)
    """Said before the deployment starts (a certificate that expires within 30 days)."""
    freeze: FreezeWindow | None = None
    """The deployment freeze in force when it was checked (the deployment goes ahead only with an override)."""
    override_freeze: bool = False


def release_plan(conn: Connection, feed: Feed, vault: Vault, release: Release, environment: str,
                 prompted: dict[str, str], masker: Masker | None = None) -> ReleasePlan:
    """``masker``: add this release's secrets to an existing masker (a rollback masks both releases)."""
    releases.check_integrity(release, vault)
    decrypted = releases.decrypt_variables(release.variables, vault)
    filled = apply_prompted(decrypted, prompted)
    previous = records.last_successful(conn, release.project, environment, other_than_release=release.id)
    packages = {p["id"]: PackageRef(p["id"], p["version"], p["sha256"], p["filename"],
                                    release_feeds.ensure(conn, feed, vault, p) if p.get("feed")  # external: pin checked
                                    else feed.path_of(p["id"], p["filename"])) for p in release.packages}
    return ReleasePlan(release=release, process=_PROCESS.validate_python(release.process),
                       index=VariableIndex(filled), variables_revision=release.variables.revision,
                       variable_snapshot_id=release.variables.id, packages=packages, masker=masker_for(filled, masker),
                       previous_for_environment=previous.version if previous else None,
                       channel=channel_of(release.snapshot, require_project(conn, release.project).model()))


def _names(items: list[Any]) -> str:
    return ", ".join(sorted(getattr(i, "name", str(i)) for i in items)) or "none"


def prepare(conn: Connection, feed: Feed, vault: Vault, *, project: str, release: str, environment: str,
            targets: list[str] | None = None, exclude_targets: list[str] | None = None,
            skip_steps: list[str] | None = None, variables: dict[str, str] | None = None,
            guided_failure: bool | None = None, force: bool = False, channel: str | None = None,
            override_freeze: bool = False, when: datetime | None = None,
            report_freeze: bool = False) -> DeploymentPlan:
    """Check everything that can be checked without touching a target; raise a FerryError otherwise.

    ``channel``: ``latest`` means the channel's latest (and a named release must be in it). A deployment
    freeze in force ``when`` (default: now) refuses it unless ``override_freeze`` (``report_freeze``: only
    note it on the plan, for ``--plan``)."""
    found = releases.require(conn, project, release, channel=channel)
    infra = require_infrastructure(conn)
    env = infra.environment(environment)
    if env is None:
        raise NotFoundError(f"unknown environment {environment!r} (known: {_names(infra.environments)})")
    frozen = freezes.check(infra, project, environment, when=when, override=override_freeze or report_freeze)
    lifecycle = infra.lifecycle(found.snapshot["lifecycle"])
    if lifecycle is None:
        raise ConfigError(f"release {found.version} uses lifecycle {found.snapshot['lifecycle']!r}, "
                          "which is no longer in the infrastructure")
    check_progression(lifecycle, found.version, environment, records.successful_environments(conn, found.id))
    current = release_plan(conn, feed, vault, found, environment, dict(variables or {}))

    in_env = infra.targets_in(environment)
    by_name = {t.name: t for t in in_env}
    for name in [*(targets or []), *(exclude_targets or [])]:
        if name not in by_name:
            raise ConfigError(f"target {name!r} is not in {environment} (its targets: {_names(in_env)})")
    chosen = [t for t in in_env if (not targets or t.name in targets) and t.name not in (exclude_targets or [])]
    excluded = unhealthy_exclusions(conn, infra, chosen)  # machine policy skip: unhealthy a moment ago
    chosen = [t for t in chosen if t.name not in excluded]
    # an expired certificate is refused here, before any target is touched; its key joins the masker
    certs, cert_warnings = for_deployment(conn, vault, referenced(current.process))
    for cert in certs.values():
        for secret in cert.secrets():
            current.masker.add(secret)

    steps = {s.name: s for s in _all_steps(current.process)}
    for name in skip_steps or []:
        step = steps.get(name)
        if step is None:
            raise ConfigError(f"--skip {name!r}: no such step (steps: {', '.join(steps)})")
        if getattr(step, "required", False):
            raise ConfigError(f"--skip {name!r}: the step is required and cannot be skipped")

    for item in current.process:
        if isinstance(item, ParentStep) and item.rolling:
            rolling = resolve_rolling(current, item, environment)
            if rolling.min_healthy:
                role_targets = [t for t in in_env if set(t.roles) & set(item.roles)]
                check_min_healthy(len(role_targets), int(rolling.min_healthy), f"step {item.name!r} in {environment}")
    return DeploymentPlan(project=project, environment=env, infra=infra, current=current, targets=chosen,
                          environment_targets=in_env, skip_steps=set(skip_steps or []),
                          guided_failure=env.guided_failure if guided_failure is None else guided_failure,
                          force=force, prompted=dict(variables or {}), excluded=excluded,
                          certificates=certs, warnings=cert_warnings, freeze=frozen,
                          override_freeze=override_freeze)


def resolve_rolling(release: ReleasePlan, item: ParentStep, environment: str) -> Rolling:
    """The parent step's rolling settings with any ``#{...}`` rendered for this environment."""
    assert item.rolling is not None
    rolling = item.rolling
    data = rolling.model_dump()
    templated = {k: v for k, v in data.items() if isinstance(v, str) and "#{" in v}
    if isinstance(data["window"], list):
        templated.update({f"window[{i}]": v for i, v in enumerate(data["window"]) if isinstance(v, str) and "#{" in v})
    if not templated:
        return rolling
    variables = release.index.resolve(ScopeContext(environment=environment, step=item.name,
                                                   channel=release.channel)).overlay(
        system_variables(project=release.release.project, release_number=release.release.version,
                         environment=environment, step_name=item.name))

    def value(text: str, field: str) -> str:
        return render(text, variables, where=f"step {item.name!r} rolling.{field}").strip()

    if isinstance(data["window"], list):
        data["window"] = [value(v, f"window[{i}]") if isinstance(v, str) and "#{" in v else v
                          for i, v in enumerate(data["window"])]
    elif "window" in templated:
        data["window"] = value(data["window"], "window")
    if "min_healthy" in templated:
        data["min_healthy"] = value(data["min_healthy"], "min_healthy")
    try:
        return Rolling.model_validate(_counts(data))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(map(str, first["loc"]))
        # the model's messages start with the field's name ("window 'x' must be …"): say it once
        message = first["msg"].removeprefix("Value error, ").removeprefix(f"{first['loc'][0]} ")
        raise ConfigError(f"step {item.name!r} in {environment}: rolling.{where} {message} "
                          "(after variable substitution)") from None


def _counts(data: dict[str, Any]) -> dict[str, Any]:
    def number(v: Any) -> Any:
        return int(v) if isinstance(v, str) and v.strip().isdigit() else v

    window = data["window"]
    data["window"] = [number(v) for v in window] if isinstance(window, list) else number(window)
    return data


def _all_steps(process: list[ProcessItem]) -> list[Step | ParentStep]:
    out: list[Step | ParentStep] = []
    for item in process:
        out.append(item)
        if isinstance(item, ParentStep):
            out.extend(item.steps)
    return out
