"""The flows ``ferry serve`` registers, built per project so each Prefect deployment's form fits it.

One generic ``deploy-release`` flow takes the environment as free text; the UI would then show a text box
and the API would accept any name. So for each project ferry builds wrappers whose ``environment``
parameter is a ``Literal`` of that project's lifecycle environments (a select in the UI form; anything
else refused by the API with HTTP 409 before a flow run exists), with every other option described:

- ``deploy-release/<project>``: deploy a release (``latest`` by default) to one environment;
- ``promote/<project>``: deploy what last succeeded in one environment to another;
- ``rollback/<project>``: redeploy an environment's previous successful release;
- ``create-release/<project>``: freeze a release (then the lifecycle's auto-deploy environments get it);
- ``plan-release/<project>``: what a deployment would do, as a markdown artifact, touching no target.

A process worker on another machine finds these flows by import path
(``flows.orchestration.served_flows.deploy_release__<hex of the project name>``): this module's
``__getattr__`` builds them from the ferry store the worker is configured with,
so the worker and ``ferry serve`` agree on the form without shipping code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from prefect import Flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Cancelled, State
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, WithJsonSchema, create_model
from pydantic.config import JsonValue

from flows.orchestration import events
from flows.orchestration.deploy_flow import deploy_release
from flows.orchestration.plan_flow import plan_flow
from flows.orchestration.triggers import auto_deploy
from snapshots import releases
from snapshots.channels import find_channel, last_successful_in
from snapshots.errors import ConfigError, NotFoundError
from snapshots.model.project import Trigger
from snapshots.projects import latest_infrastructure, project_names, require_project
from snapshots.store import records
from snapshots.workspace import Workspace

KINDS = {"deploy_release": "deploy-release", "promote": "promote", "rollback": "rollback",
         "create_release": "create-release", "plan_release": "plan-release"}
"""Python attribute prefix → Prefect flow name."""

_ATTRIBUTE = re.compile(r"^(deploy_release|promote|rollback|create_release|plan_release)__([0-9a-f]+)$")


@dataclass(frozen=True)
class ProjectSpec:
    """What a project's deployments are built from: its lifecycle's environments and its triggers."""

    name: str
    environments: tuple[str, ...]
    triggers: tuple[Trigger, ...] = field(default_factory=tuple)
    revision: int = 0
    infrastructure_revision: int = 0
    prompted: tuple[PromptedField, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class PromptedField:
    """One prompted variable of the project, as the UI form asks for it."""

    name: str
    sensitive: bool
    required: bool
    label: str = ""
    description: str = ""


def attribute_name(kind: str, project: str) -> str:
    return f"{kind}__{project.encode().hex()}"


def load_specs(ctx: Workspace, projects: list[str] | None = None) -> list[ProjectSpec]:
    """Every stored project (or the named ones), with its lifecycle's environments in lifecycle order."""
    with ctx.store.read() as conn:
        found = latest_infrastructure(conn)
        if found is None:
            return []
        infra_revision, infra = found
        specs = []
        for name in projects or project_names(conn):
            revision = require_project(conn, name)
            model = revision.model()
            lifecycle = infra.lifecycle(model.lifecycle)
            if lifecycle is None:
                raise ConfigError(f"project {name!r} uses lifecycle {model.lifecycle!r}, which is not in the "
                                  "infrastructure")
            environments = tuple(env for phase in lifecycle.phases for env in phase.environments)
            specs.append(ProjectSpec(name, environments, tuple(model.triggers), revision.revision, infra_revision,
                                     _prompted_fields(revision.document.get("variables", []))))
    return specs


def _prompted_fields(variables: list[dict[str, Any]]) -> tuple[PromptedField, ...]:
    """One field per prompted variable name of a stored project document (a name defined for several scopes
    is asked once; sensitive if any of its definitions is; required when no definition has a default)."""
    fields: dict[str, PromptedField] = {}
    for var in variables:
        prompt = var.get("prompt")
        if not prompt:
            continue
        name = var["name"]
        seen = fields.get(name)
        has_default = var.get("value") is not None or bool(var.get("ciphertext"))
        fields[name] = PromptedField(
            name=name, sensitive=bool(var.get("sensitive")) or (seen is not None and seen.sensitive),
            required=prompt.get("required", True) and not has_default and (seen is None or seen.required),
            label=prompt.get("label") or (seen.label if seen else ""),
            description=prompt.get("description") or var.get("description") or (seen.description if seen else ""))
    return tuple(fields.values())


def prompted_model(spec: ProjectSpec) -> Any:
    """The form's ``prompted`` object: one field per prompted variable, a password field (``SecretStr``) for
    a sensitive one. Whatever is typed here is taken out of the request by ferry's Prefect API proxy and kept
    encrypted in the ferry store before Prefect sees it (``flows.server.prefect_proxy``)."""
    if not spec.prompted:
        return None
    fields: dict[str, Any] = {}
    for i, item in enumerate(spec.prompted):
        kind = SecretStr if item.sensitive else str
        schema: dict[str, Any] = {"type": "string", "title": item.label or item.name}
        if item.sensitive:
            schema.update(format="password", writeOnly=True)
        words = [item.description] if item.description else []
        if item.label:
            words.append(f"Variable {item.name}.")
        if item.sensitive:
            words.append("Sensitive: kept encrypted by ferry, never stored by Prefect.")
        if words:
            schema["description"] = " ".join(words)
        schema["position"] = i
        # a type built at run time for pydantic: mypy cannot check a type held in a variable
        annotation = Annotated[kind | None, WithJsonSchema(schema)]  # type: ignore[valid-type]  # run-time type
        # Default "", not None: the V1 UI would send a text field's null, and its own validation refuse it.
        fields[f"v{i}"] = (annotation, Field("", alias=item.name))
    # Required in the form (its JSON schema), not when the run starts: by then ferry's proxy has moved the
    # values out of the parameters, and a run from `ferry deploy` never had them there.
    required: list[JsonValue] = [item.name for item in spec.prompted if item.required]
    config = ConfigDict(populate_by_name=True, extra="forbid",
                        json_schema_extra={"required": required} if required else None)
    model = create_model("Prompted", __config__=config, **fields)
    model.__module__ = __name__
    return Annotated[model, BeforeValidator(_none_as_empty)]


def _none_as_empty(value: Any) -> Any:
    """No ``prompted`` object (the values travelled by reference): validate as an empty one."""
    return {} if value is None else value


def prompted_values(value: Any) -> dict[str, str]:
    """The form object (or a plain mapping) as NAME: VALUE, empty fields left out."""
    if value is None:
        return {}
    items = value.model_dump(by_alias=True).items() if isinstance(value, BaseModel) else dict(value).items()
    out = {}
    for name, v in items:
        text = v.get_secret_value() if isinstance(v, SecretStr) else v
        if text not in (None, ""):
            out[name] = str(text)
    return out


def _finish(fn: Callable[..., Any], kind: str, spec: ProjectSpec, annotations: dict[str, Any], doc: str,
            run_name: Callable[[], str], description: str) -> Flow[..., Any]:
    """Give a generated function the identity Prefect reads: real annotations (not strings, so pydantic
    builds the schema from them), a Google-style docstring (the form's field descriptions), and a module
    path a worker can import."""
    fn.__annotations__ = annotations
    fn.__doc__ = doc
    fn.__name__ = fn.__qualname__ = attribute_name(kind, spec.name)
    fn.__module__ = __name__
    return Flow(fn=fn, name=KINDS[kind], flow_run_name=run_name, description=description, persist_result=False,
                log_prints=False, on_cancellation=[_record_cancelled], on_crashed=[_record_crashed])


_OPTIONS_DOC = """
        targets: Deploy only to these targets (default: every target of the environment).
        exclude_targets: Leave these targets out.
        skip_steps: Steps to skip (a required step cannot be skipped).
        variables: Values for prompted variables that are not sensitive, NAME: VALUE (for REST callers; a
            sensitive one is refused: use the prompted fields above, or ferry's API).
        guided_failure: Pause on a failed step and ask in this UI (retry, skip, ignore, abort). Empty: the
            environment's setting.
        force: Redeploy to targets whose journal says they already run this release.
        override_freeze: Deploy although a deployment freeze is in force (recorded on the deployment: who,
            which freeze)."""

_EXPIRY_DOC = """
        expires_after: Seconds after its scheduled time by which this run must have started; a run that
            has not started by then is cancelled instead of run late. Empty: no expiry."""


def deploy_flow(spec: ProjectSpec) -> Flow[..., Any]:
    """``deploy-release/<project>``: the deploy flow with this project's environments as a choice."""
    project = spec.name
    model = prompted_model(spec)

    def deploy(environment: str, release: str = "latest", prompted: Any = None, targets: list[str] | None = None,
               exclude_targets: list[str] | None = None, skip_steps: list[str] | None = None,
               variables: dict[str, str] | None = None, guided_failure: bool | None = None,
               force: bool = False, expires_after: int | None = None,
               deployment_id: int | None = None, prompted_ref: str | None = None, channel: str | None = None,
               override_freeze: bool = False) -> dict[str, Any] | State:
        expired = expire_if_late(expires_after, deployment_id)
        if expired is not None:
            return expired
        direct = {**(variables or {}), **prompted_values(prompted)}
        actor = None if deployment_id is not None else prefect_actor()  # no record yet: straight from Prefect
        return deploy_release.fn(project=project, environment=environment, release=release, targets=targets,
                                 exclude_targets=exclude_targets, skip_steps=skip_steps, variables=direct or None,
                                 guided_failure=guided_failure, force=force, deployment_id=deployment_id,
                                 prompted_ref=prompted_ref, actor=actor, channel=channel,
                                 override_freeze=override_freeze)

    def run_name() -> str:
        params = current_flow_run.parameters
        return f"{project} {params.get('release', 'latest')} → {params.get('environment')}"

    doc = f"""Deploy a release of {project} to one of its environments.

    Args:
        environment: The environment to deploy to (the project's lifecycle, in order).
        release: A release version such as 1.4.0, or "latest".
        prompted: The project's prompted variables (sensitive ones are password fields: ferry keeps them
            encrypted, Prefect never stores them).{_OPTIONS_DOC}{_EXPIRY_DOC}
        channel: With release "latest": the latest release of this channel. Empty: the default channel.
        deployment_id: Internal: the ferry deployment record `ferry deploy` created. Leave empty.
        prompted_ref: Internal: where ferry keeps this run's prompted values. Leave empty.
    """
    annotations = {"environment": Literal[spec.environments], "release": str,
                   "prompted": model if model is not None else dict[str, str] | None,
                   "targets": list[str] | None,
                   "exclude_targets": list[str] | None, "skip_steps": list[str] | None,
                   "variables": dict[str, str] | None, "guided_failure": bool | None, "force": bool,
                   "expires_after": int | None, "deployment_id": int | None, "prompted_ref": str | None,
                   "channel": str | None, "override_freeze": bool, "return": Any}
    return _finish(deploy, "deploy_release", spec, annotations, doc, run_name,
                   f"Deploy a release of {project} to an environment (ferry).")


def promote_flow(spec: ProjectSpec) -> Flow[..., Any]:
    """``promote/<project>``: what last succeeded in one environment, deployed to another."""
    project = spec.name

    def promote(from_environment: str, to_environment: str, guided_failure: bool | None = None,
                expires_after: int | None = None, channel: str | None = None,
                override_freeze: bool = False) -> dict[str, Any] | State:
        expired = expire_if_late(expires_after, None)
        if expired is not None:
            return expired
        with Workspace().store.read() as conn:
            model = require_project(conn, project).model()
            lane = find_channel(model, channel)
            last = last_successful_in(conn, model, from_environment, lane)
        if last is None:
            raise NotFoundError(f"no successful deployment of {project} to {from_environment} in channel "
                                f"{lane.name!r} to promote")
        get_run_logger().info(f"promoting {project} {last.version} ({lane.name}) from {from_environment} to "
                              f"{to_environment}")
        return deploy_release.fn(project=project, environment=to_environment, release=last.version,
                                 guided_failure=guided_failure, actor=prefect_actor(), channel=lane.name,
                                 override_freeze=override_freeze)

    def run_name() -> str:
        params = current_flow_run.parameters
        return f"{project} promote {params.get('from_environment')} → {params.get('to_environment')}"

    doc = f"""Deploy the release of {project} that last succeeded in one environment to another.

    Args:
        from_environment: Take the release that last succeeded here.
        to_environment: Deploy it here.
        guided_failure: Pause on a failed step and ask in this UI. Empty: the environment's setting.{_EXPIRY_DOC}
        channel: Promote the release of this channel. Empty: the default channel.
        override_freeze: Deploy although a deployment freeze is in force (recorded on the deployment).
    """
    # a Literal of this project's environments, built at run time for Prefect's form (no static type)
    envs = Literal[spec.environments]  # type: ignore[name-defined]  # run-time Literal
    annotations = {"from_environment": envs, "to_environment": envs, "guided_failure": bool | None,
                   "expires_after": int | None, "channel": str | None, "override_freeze": bool, "return": Any}
    return _finish(promote, "promote", spec, annotations, doc, run_name,
                   f"Promote {project} from one environment to the next (ferry).")


def rollback_flow(spec: ProjectSpec) -> Flow[..., Any]:
    """``rollback/<project>``: the environment's previous successful release, deployed again."""
    project = spec.name

    def rollback(environment: str, guided_failure: bool | None = None,
                 override_freeze: bool = False) -> dict[str, Any] | State:
        with Workspace().store.read() as conn:
            current = records.last_successful(conn, project, environment)
            previous = current and records.last_successful(conn, project, environment, before_id=current.id,
                                                           other_than_release=current.release_id)
        if previous is None or current is None:
            raise NotFoundError(f"{project} has no earlier successful release in {environment} to roll back to")
        get_run_logger().info(f"rolling {environment} back from {current.version} to {previous.version}")
        return deploy_release.fn(project=project, environment=environment, release=previous.version, force=True,
                                 guided_failure=guided_failure, actor=prefect_actor(),
                                 override_freeze=override_freeze)

    def run_name() -> str:
        return f"{project} rollback {current_flow_run.parameters.get('environment')}"

    doc = f"""Deploy the previous successful release of {project} to an environment again.

    Args:
        environment: The environment to roll back.
        guided_failure: Pause on a failed step and ask in this UI. Empty: the environment's setting.
        override_freeze: Deploy although a deployment freeze is in force (recorded on the deployment).
    """
    annotations = {"environment": Literal[spec.environments], "guided_failure": bool | None,
                   "override_freeze": bool, "return": Any}
    return _finish(rollback, "rollback", spec, annotations, doc, run_name,
                   f"Roll an environment of {project} back to its previous release (ferry).")


def create_release_flow(spec: ProjectSpec) -> Flow[..., Any]:
    """``create-release/<project>``: freeze a release, then start the lifecycle's auto-deploys."""
    project = spec.name

    def create_release(version: str | None = None, packages: list[str] | None = None, notes: str = "",
                       ignore_existing: bool = False, channel: str | None = None) -> dict[str, Any]:
        ctx = Workspace()
        logger = get_run_logger()
        with ctx.store.begin() as conn:
            release, created = releases.create(conn, ctx.feed, project, prefect_actor(), vault=ctx.vault,
                                               version=version,
                                               package_pins=releases.parse_package_pins(packages or []),
                                               notes=notes, ignore_existing=ignore_existing, channel=channel)
        pins = ", ".join(f"{p['id']} {p['version']}" for p in release.packages) or "no packages"
        logger.info(f"release {project} {release.version} {'created' if created else 'already exists'}: {pins}")
        started = auto_deploy(ctx, project, release.version, logger.info) if created else []
        return {"project": project, "version": release.version, "digest": release.digest, "created": created,
                "auto_deploy": started}

    def run_name() -> str:
        return f"{project} create release {current_flow_run.parameters.get('version') or '(next)'}"

    doc = f"""Create a release of {project} from its current process, variables and packages.

    Args:
        version: SemVer 2 version. Empty: the project's versioning rule.
        packages: Package versions to pin, ID:VERSION. Default: the latest of each package.
        notes: Release notes (markdown).
        ignore_existing: An existing version is not an error.
        channel: The channel to create the release in (its package rules apply). Empty: the default channel.
    """
    annotations = {"version": str | None, "packages": list[str] | None, "notes": str, "ignore_existing": bool,
                   "channel": str | None, "return": Any}
    return _finish(create_release, "create_release", spec, annotations, doc, run_name,
                   f"Create a release of {project} (ferry).")


BUILDERS: dict[str, Callable[[ProjectSpec], Flow[..., Any]]] = {
    "deploy_release": deploy_flow, "promote": promote_flow, "rollback": rollback_flow,
    "create_release": create_release_flow, "plan_release": lambda spec: plan_flow(spec, _finish)}


def project_flows(spec: ProjectSpec) -> dict[str, Flow[..., Any]]:
    """kind → flow, for one project."""
    return {kind: build(spec) for kind, build in BUILDERS.items()}


def prefect_actor() -> str:
    """Who asked for a run that came straight from Prefect rather than through ferry (which records the
    requester first and passes the record's id): a Prefect schedule (a project trigger), else a person in the
    Prefect UI or a REST call — recorded as ``prefect-schedule`` / ``prefect-ui``."""
    try:
        with get_client(sync_client=True) as client:
            if client.read_flow_run(current_flow_run.id).auto_scheduled:
                return "prefect-schedule"
    except Exception:  # not readable: still not a ferry requester
        pass
    return "prefect-ui"


# --- expiry: a scheduled run that has not started in time is cancelled, not run late ---------------------

def deadline(expected_start: datetime | None, expires_after: int | None) -> datetime | None:
    if expected_start is None or expires_after is None:
        return None
    return expected_start + timedelta(seconds=expires_after)


def expire_if_late(expires_after: int | None, deployment_id: int | None) -> State | None:
    """The flow's own check as it starts: past its deadline it ends Cancelled (and so does its ferry
    record) without touching a target. ``ferry serve`` also cancels such runs before they start
    (``flows.orchestration.serving``); this covers a run a worker picked up just before the deadline passed."""
    if expires_after is None:
        return None
    expected = current_flow_run.scheduled_start_time
    limit = deadline(expected, expires_after)
    now = datetime.now(UTC)
    if limit is None or now <= limit:
        return None
    message = (f"expired: scheduled for {expected:%Y-%m-%d %H:%M:%S} UTC, not started by "
               f"{limit:%Y-%m-%d %H:%M:%S} UTC (started {now:%H:%M:%S}); cancelled instead of running late")
    get_run_logger().warning(message)
    if deployment_id is not None:
        mark_record(deployment_id, "Cancelled", message)
    return Cancelled(message=message)


def mark_record(deployment_id: int, state: str, message: str) -> bool:
    """Finish a ferry deployment record that is not finished yet; True when this call finished it (so the caller,
    not whoever finished it first, emits the event)."""
    with Workspace().store.begin() as conn:
        try:
            found = records.get(conn, deployment_id)
        except Exception:
            return False
        if found.state not in records.FINISHED:
            records.set_state(conn, deployment_id, state, error=message)
            return True
    return False


def _record_for(flow_run: FlowRun) -> int | None:
    """The ferry deployment record of a flow run: its parameter, else the record that names the run."""
    deployment_id = (flow_run.parameters or {}).get("deployment_id")
    if deployment_id is not None:
        return int(deployment_id)
    with Workspace().store.read() as conn:
        found = records.find_by_flow_run(conn, str(flow_run.id))
    return found.id if found else None


def _record_cancelled(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Runs in ``ferry serve`` (or the worker) when a flow run is cancelled: its process was stopped, so
    the record must say so rather than stay Running forever."""
    deployment_id = _record_for(flow_run)
    # the event once: the CLI that cancelled it on --timeout may have finished the record and told already
    if deployment_id is not None and mark_record(deployment_id, "Cancelled", state.message or "cancelled"):
        events.emit_for(Workspace().store, deployment_id, events.CANCELLED, error=state.message, flush=True)


def _record_crashed(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    deployment_id = _record_for(flow_run)
    if deployment_id is not None:
        mark_record(deployment_id, "Failed", f"crashed: {state.message or 'its process ended unexpectedly'}")


def __getattr__(name: str) -> Flow[..., Any]:
    """``flows.orchestration.served_flows.<kind>__<hex of project>``: the entrypoint a process worker imports."""
    match = _ATTRIBUTE.match(name)
    if match is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    project = bytes.fromhex(match.group(2)).decode()
    specs = load_specs(Workspace(), [project])
    return BUILDERS[match.group(1)](specs[0])
