"""The Prefect UI's run form for a project's served deployments: choices from the ferry store, internals hidden.

Prefect draws the form from the deployment's ``parameter_openapi_schema``: an ``enum`` is a select, an array of
an ``enum`` a multi-select, and a parameter that is not among the schema's properties is not shown at all. So
``ferry serve`` registers each deployment with

- ``release``: ``latest`` then the releases of the project's channels, newest first (SemVer precedence);
- ``targets`` / ``exclude_targets``: the targets of the project's lifecycle environments (multi-select);
- ``skip_steps``: the project's steps that may be skipped (a ``required`` one is left out; multi-select);
- ``channel``: the project's channels;
- ``deployment_id`` and ``prompted_ref`` (ferry's own bookkeeping) left out of the form.

The choices live only in the registered schema, never in the flow functions' annotations: the flow itself takes
any string and refuses what is wrong with ferry's one-line errors, so a flow object built before the newest
release (the runner holds one per registration) still runs it. ``ferry serve`` re-registers when the choices
change (``FormChoices`` is part of what its sync compares), within its ``--sync-seconds``.

The deployment enforces its schema, so the Prefect API refuses a value the form would not offer (HTTP 409).
ferry's own runs (``ferry deploy``, auto-deploys), already checked against the store as it is now, are not held
back by a form a sync behind: ``flows.orchestration.served_runs.create_run`` retries such a refusal without
the schema check.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from snapshots.channels import all_channels
from snapshots.model.infrastructure import Infrastructure
from snapshots.model.project import Project
from snapshots.model.steps import ParentStep
from snapshots.projects import latest_infrastructure, require_project
from snapshots.store.tables import releases
from snapshots.versions import sort_key
from snapshots.workspace import Workspace

HIDDEN = ("deployment_id", "prompted_ref")
"""Parameters ferry fills in itself: not in the form (Prefect still accepts them from ferry's API calls)."""

CHOICE_FIELDS = ("release", "targets", "exclude_targets", "skip_steps", "channel")
"""Parameters whose choices come from the store and may be a sync behind it."""

LATEST = "latest"
_LISTED_PER_CHANNEL = 5


@dataclass(frozen=True)
class FormChoices:
    """What the form offers for one project; compared by ``ferry serve``'s sync to decide on re-registering."""

    releases: tuple[str, ...] = ()
    """Versions, newest first."""
    channels: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(channel, its versions newest first), the default channel first."""
    targets: tuple[tuple[str, str], ...] = ()
    """(target, environment), in lifecycle order."""
    steps: tuple[str, ...] = ()
    """Steps that may be skipped, in process order."""


_recorded_channel: dict[int, str | None] = {}
"""Release id → the channel its snapshot records (None: before channels). A release never changes, so each
snapshot is read once per process, not on every sync."""


def _release_channels(conn: Connection, project: Project) -> dict[str, str]:
    """{version: channel} for every release of the project (``snapshots.channels.release_channels``, reading
    only snapshots not seen before)."""
    import json

    rows = list(conn.execute(select(releases.c.id, releases.c.version).where(releases.c.project == project.name)))
    unseen = [r.id for r in rows if r.id not in _recorded_channel]
    if unseen:
        for rid, text in conn.execute(select(releases.c.id, releases.c.snapshot).where(releases.c.id.in_(unseen))):
            try:
                recorded = json.loads(text).get("channel")
            except (json.JSONDecodeError, AttributeError):  # tampered: reported where the release is loaded
                recorded = None
            _recorded_channel[rid] = recorded if isinstance(recorded, str) else None
    default = all_channels(project)[0].name
    return {r.version: _recorded_channel.get(r.id) or default for r in rows}


def load_choices(conn: Connection, project: Project, infra: Infrastructure,
                 environments: tuple[str, ...]) -> FormChoices:
    """The form's choices for ``project`` from the store as it is now."""
    lanes = [c.name for c in all_channels(project)]
    by_channel: dict[str, list[str]] = {name.casefold(): [] for name in lanes}
    for version, channel in _release_channels(conn, project).items():
        if channel.casefold() in by_channel:  # releases of a channel the project no longer has are not offered
            by_channel[channel.casefold()].append(version)
    ordered = {key: sorted(found, key=_order, reverse=True) for key, found in by_channel.items()}
    versions = sorted((v for found in ordered.values() for v in found), key=_order, reverse=True)
    targets = tuple((t.name, env) for env in environments for t in infra.targets_in(env))
    steps = []
    for item in project.process:
        if not getattr(item, "required", False):
            steps.append(item.name)
        if isinstance(item, ParentStep):
            steps.extend(child.name for child in item.steps if not getattr(child, "required", False))
    return FormChoices(tuple(versions), tuple((name, tuple(ordered[name.casefold()])) for name in lanes),
                       targets, tuple(dict.fromkeys(steps)))


def load_all(ctx: Workspace, projects: list[tuple[str, tuple[str, ...]]]) -> dict[str, FormChoices]:
    """{project: its form's choices} for (project, lifecycle environments) pairs, in one read of the store."""
    with ctx.store.read() as conn:
        found = latest_infrastructure(conn)
        if found is None:
            return {}
        infra = found[1]
        return {name: load_choices(conn, require_project(conn, name).model(), infra, environments)
                for name, environments in projects}


def _order(version: str) -> Any:
    try:
        return (1, sort_key(version))
    except ValueError:  # not SemVer (written behind ferry's back): last, but still offered
        return (0, version)


def _nullable(items: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [items, {"type": "null"}]}


def shape(properties: MutableMapping[str, dict[str, Any]], required: list[str] | None,
          choices: FormChoices) -> None:
    """Rewrite a deployment's parameter schema in place: choices as enums, ferry's internals hidden. Only the
    parameters the flow has are touched (each kind of deployment has some of them)."""
    _hide(properties, required)
    release = properties.get("release")
    if release is not None:
        release.pop("anyOf", None)
        release.update(type="string", enum=[LATEST, *choices.releases], default=LATEST)
        lanes = "; ".join(f"{name}: {', '.join(found[:_LISTED_PER_CHANNEL]) or 'none yet'}"
                          + (" …" if len(found) > _LISTED_PER_CHANNEL else "") for name, found in choices.channels)
        release["description"] = (f"A release, newest first, or {LATEST!r}: the newest release of `channel` (empty: "
                                  f"the default channel). Releases by channel: {lanes}.")
    target_names = [name for name, _ in choices.targets]
    for name in ("targets", "exclude_targets"):
        if name in properties and target_names:
            where = "; ".join(f"{env}: {', '.join(t for t, e in choices.targets if e == env)}"
                              for env in dict.fromkeys(e for _, e in choices.targets))
            _set_array_enum(properties[name], target_names, "Targets by environment: ", f"{where}.")
    if "skip_steps" in properties and choices.steps:
        _set_array_enum(properties["skip_steps"], list(choices.steps), "Offered: ", "the steps that may be skipped.")
    channel = properties.get("channel")
    if channel is not None and choices.channels:
        names = [name for name, _ in choices.channels]
        channel.pop("type", None)
        channel.update(_nullable({"type": "string", "enum": names}))
        channel["description"] = _noted(channel.get("description", ""), "Channels: ", f"{', '.join(names)}.")


def _set_array_enum(prop: dict[str, Any], values: list[str], marker: str, note: str) -> None:
    """A multi-select (an array of an enum; nullable, as the parameter is) with a note on what it offers."""
    prop.pop("type", None)
    prop.pop("items", None)
    prop.update(_nullable({"type": "array", "items": {"type": "string", "enum": values}}))
    prop["description"] = _noted(prop.get("description", ""), marker, note)


def _noted(description: str, marker: str, note: str) -> str:
    """``description`` with ``marker + note`` at its end, replacing an earlier one: shaping a schema twice (the
    registered one, by ``flows.orchestration.form_refresh``) gives the same schema."""
    base = description.split(f" {marker}")[0].strip() if f" {marker}" in description else description.strip()
    return f"{base} {marker}{note}".strip()


def apply(deployment: Any, choices: FormChoices | None) -> None:
    """Shape a ``RunnerDeployment``'s parameter schema (Prefect keeps it on a private attribute, built from
    the flow's signature by ``to_deployment``) before it is registered."""
    schema = deployment._parameter_openapi_schema
    shape(schema.properties, schema.required, choices or FormChoices())


def _hide(properties: MutableMapping[str, Any], required: list[str] | None) -> None:
    for name in HIDDEN:
        properties.pop(name, None)
        if required and name in required:
            required.remove(name)


def hide_internal(deployment: Any) -> None:
    """Leave ferry's internal parameters out of a ``RunnerDeployment``'s form (the runbook deployments)."""
    schema = deployment._parameter_openapi_schema
    _hide(schema.properties, schema.required)


def refused_for_choice(detail: str) -> bool:
    """Whether Prefect's 409 names a parameter whose choices may be a sync behind the store (its message reads
    ``Validation failed for field 'targets[0]'. Failure reason: …``)."""
    import re

    found = re.search(r"Validation failed for field '([A-Za-z_]+)", detail)
    return found is not None and found.group(1) in CHOICE_FIELDS
