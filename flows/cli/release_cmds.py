"""``ferry release create|list|show|diff|verify|update-variables``.

``snapshots.releases`` and what it needs (the recipe models, the template engine) take about half a second
to import: the commands import them when they run, so ``ferry --help`` and remote mode stay fast."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from flows.cli.output import print_json, print_table, say
from flows.cli.release_deploy import check_deploy_to, deploy_after_create, remember, remembered
from flows.cli.remote import local_only, remote_client
from snapshots.errors import ConfigError, NotFoundError, TemplateError
from snapshots.workspace import Workspace

if TYPE_CHECKING:
    from flows.client import FerryClient
    from snapshots.releases import Release

app = typer.Typer()
"""This module's commands; the root app in ``flows.cli.app`` merges them in."""

DEFAULT_CHANNEL = "Default"
"""``snapshots.model.channels.DEFAULT_CHANNEL``, not imported: the models load in half a second."""

release_app = typer.Typer(no_args_is_help=True, help="Releases: frozen snapshots of a project")
app.add_typer(release_app, name="release")


@release_app.command("create")
def create(project: str,
           version: str | None = typer.Option(None, "--version", help="SemVer 2 (default: project's rule)"),
           package: list[str] = typer.Option([], "--package", help="ID:VERSION (default: latest stable)"),
           notes: str | None = typer.Option(None, "--notes", help="Release notes (markdown)"),
           notes_file: Path | None = typer.Option(None, "--notes-file", exists=True, dir_okay=False),
           ignore_existing: bool = typer.Option(False, "--ignore-existing",
                                                help="An existing version is not an error"),
           auto_deploy: bool = typer.Option(True, "--auto-deploy/--no-auto-deploy",
                                            help="Start the lifecycle's auto-deploy environments (via ferry serve)"),
           deploy_to: list[str] = typer.Option([], "--deploy-to", metavar="ENV",
                                               help="Then deploy it to ENV (repeat for several: in lifecycle "
                                                    "order, each waited for; the first failure stops the rest)"),
           wait: bool = typer.Option(False, "--wait", help="With --deploy-to: wait for the last deployment too "
                                                           "(streams its log; exit code = result)"),
           as_json: bool = typer.Option(False, "--json"),
           channel: str | None = typer.Option(None, "--channel",
                                              help="The channel (its package rules apply; unpinned packages get "
                                                   "the newest version they allow). Default: the default channel")
           ) -> None:
    """Freeze the project's current process, variables and package versions into a release; then the
    lifecycle's auto-deploy environments get it (when `ferry serve` serves the project)."""
    from flows.cli import json_result

    with json_result.result_document(as_json and bool(deploy_to), "release create", wait):  # one document
        from snapshots import releases
        if notes is not None and notes_file is not None:
            raise ConfigError("give --notes or --notes-file, not both")
        text = notes_file.read_text(encoding="utf-8") if notes_file else (notes or "")
        check_deploy_to(deploy_to)  # an unknown environment is refused before the release is created
        if (client := remote_client()) is not None:
            _create_remote(client, project, version, package, text, ignore_existing, auto_deploy, as_json, channel)
            deploy_after_create(project, remembered(), deploy_to, wait)
            return
        ctx = Workspace()
        pins = releases.parse_package_pins(package)
        vault = ctx.vault
        with ctx.store.begin() as conn:
            release, created = releases.create(conn, ctx.feed, project, ctx.actor, vault=vault, version=version,
                                               package_pins=pins, notes=text, ignore_existing=ignore_existing,
                                               channel=channel)
        messages: list[str] = []
        started: list[dict[str, Any]] = []
        if created and auto_deploy:
            from flows.orchestration.triggers import auto_deploy as start_auto_deploys

            started = start_auto_deploys(ctx, project, release.version, messages.append)
        if as_json:
            print_json({**_summary(release), "created": created, "auto_deploy": started})
            deploy_after_create(project, release.version, deploy_to, wait, [s.get("environment") for s in started])
            return
        state = "created" if created else "already exists (ignored)"
        pkgs = ", ".join(f"{p['id']} {p['version']}" for p in release.packages) or "no packages"
        lane = "" if _channel(release) == DEFAULT_CHANNEL else f" in channel {_channel(release)}"
        say(f"release {release.project} {release.version} {state}{lane}: {pkgs}; digest {release.digest}")
        for message in messages:
            say(message)
        deploy_after_create(project, release.version, deploy_to, wait, [s.get("environment") for s in started])


def _create_remote(client: FerryClient, project: str, version: str | None, package: list[str], notes: str,
                   ignore_existing: bool, auto_deploy: bool, as_json: bool, channel: str | None = None) -> None:
    """``release create`` through the ferry server; the same line and JSON document as a local one."""
    if not auto_deploy:
        local_only("--no-auto-deploy")
    pins: dict[str, str] = {}
    for pin in package:
        package_id, sep, pinned = pin.rpartition(":")
        if not sep or not package_id or not pinned:
            raise ConfigError(f"--package {pin!r}: expected ID:VERSION, e.g. OctoFX.Web:1.2.0")
        pins[package_id] = pinned
    answer = client.create_release(project, version=version, packages=pins or None, notes=notes or None,
                                   ignore_existing=ignore_existing, channel=channel)
    remember(answer["version"])
    shown = client.show_release(project, answer["version"])
    summary = {key: shown.get(key) for key in ("project", "version", "digest", "created_at", "created_by",
                                               "project_revision", "variable_revision", "packages", "channel")}
    started = list(answer.get("deployments") or [])
    if as_json:
        print_json({**summary, "created": answer["created"], "auto_deploy": started})
        return
    state = "created" if answer["created"] else "already exists (ignored)"
    pkgs = ", ".join(f"{p['id']} {p['version']}" for p in summary["packages"] or []) or "no packages"
    lane = "" if (summary["channel"] or DEFAULT_CHANNEL) == DEFAULT_CHANNEL else f" in channel {summary['channel']}"
    say(f"release {summary['project']} {summary['version']} {state}{lane}: {pkgs}; digest {summary['digest']}")
    for message in answer.get("messages") or []:  # the server's auto-deploy lines, as a local create prints
        say(str(message))


def _summary(release: Release) -> dict[str, Any]:
    return {"project": release.project, "version": release.version, "digest": release.digest,
            "created_at": release.created_at, "created_by": release.created_by,
            "project_revision": release.snapshot["project_revision"],
            "variable_revision": release.variables.revision,
            "packages": [{k: p[k] for k in ("id", "version", "sha256")} for p in release.packages],
            "channel": _channel(release)}


def _channel(release: Release) -> str:
    """The release's channel (one frozen before channels existed is in the default channel)."""
    return str(release.snapshot.get("channel") or DEFAULT_CHANNEL)


@release_app.command("list")
def list_(project: str, as_json: bool = typer.Option(False, "--json"),
          channel: str | None = typer.Option(None, "--channel", help="Only this channel's releases")) -> None:
    """Releases of a project, newest version first."""
    def wanted(summary: dict[str, Any]) -> bool:
        return channel is None or str(summary.get("channel") or DEFAULT_CHANNEL).casefold() == channel.casefold()

    if (client := remote_client()) is not None:
        listed = [r for r in client.list_releases(project) if wanted(r)]
    else:
        from snapshots import releases

        ctx = Workspace()
        with ctx.store.read() as conn:
            listed = [s for s in (_summary(r) for r in releases.list_releases(conn, project)) if wanted(s)]
    if as_json:
        print_json(listed)
        return
    print_table(None, ["version", "channel", "created", "by", "packages", "variables rev"],
                [(r["version"], r.get("channel") or DEFAULT_CHANNEL, r.get("created_at"), r.get("created_by"),
                  ", ".join(f"{p['id']} {p['version']}" for p in r.get("packages") or []),
                  r.get("variable_revision", "")) for r in listed])


@release_app.command("show")
def show(project: str, version: str,
         history: bool = typer.Option(False, "--history", help="Every variable snapshot revision"),
         environment: str | None = typer.Option(None, "--environment", "-e",
                                                help="Show the values a deployment to ENV gets (with --target)"),
         target: str | None = typer.Option(None, "--target", "-t", help="... on this target (scoping applied)"),
         step: str | None = typer.Option(None, "--step", help="... for this step (step-scoped values)"),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """A release's process, packages and variables (sensitive values masked).

    With --environment/--target: the values that target would get, after scoping and substitution, with the
    system variables of that context, so scoping can be checked before deploying."""
    from snapshots import releases
    from snapshots.library import step_sources

    ctx = Workspace()
    if environment is not None or target is not None or step is not None:
        _show_for_context(ctx, project, version, environment, target, step, as_json)
        return
    with ctx.store.read() as conn:
        release = releases.require(conn, project, version)
    snapshots = release.variable_snapshots if history else [release.variables]
    data = {**_summary(release), "notes": release.snapshot["notes"], "lifecycle": release.snapshot["lifecycle"],
            "process": release.process, "library": release.snapshot.get("library") or {},
            "variable_snapshots": [{"revision": s.revision, "created_at": s.created_at, "created_by": s.created_by,
                                    "project_revision": s.document["project_revision"], "digest": s.digest,
                                    "variables": [{**v, "source": v.get("source") or "project"}
                                                  for v in releases.masked_variables(s.variables)]}
                                   for s in snapshots]}
    if as_json:
        print_json(data)
        return
    say(f"{release.project} {release.version}  (project revision {data['project_revision']}, "
        f"created {release.created_at} by {release.created_by})")
    say(f"digest {release.digest}")
    say(f"channel {_channel(release)}, lifecycle {data['lifecycle']}")
    if data["notes"]:
        say(f"notes: {data['notes']}")
    print_table("packages", ["id", "version", "sha256"],
                [(p["id"], p["version"], p["sha256"]) for p in release.packages])
    sources = step_sources(release.snapshot)
    if sources:  # a release that used a step template says which step came from which template revision
        print_table("process", ["#", "step", "kind", "roles", "from"],
                    [(*row, sources.get(row[1].strip(), "")) for row in _process_rows(release.process)])
    else:
        print_table("process", ["#", "step", "kind", "roles"], list(_process_rows(release.process)))
    for snap in data["variable_snapshots"]:
        title = (f"variables (revision {snap['revision']}, {snap['created_at']} by {snap['created_by']}, "
                 f"from project revision {snap['project_revision']})")
        if any(v["source"] != "project" for v in snap["variables"]):
            print_table(title, ["name", "value", "scope", "from"],
                        [(v["name"], v["value"], _scope(v.get("scope") or {}), v["source"]) for v in snap["variables"]])
        else:
            print_table(title, ["name", "value", "scope"],
                        [(v["name"], v["value"], _scope(v.get("scope") or {})) for v in snap["variables"]])


def _show_for_context(ctx: Workspace, project: str, version: str, environment: str | None, target: str | None,
                      step: str | None, as_json: bool) -> None:
    from snapshots import releases
    from snapshots.octostache import variable_key
    from snapshots.projects import require_infrastructure
    from snapshots.variables.scopes import (
        ScopeContext,
        VariableIndex,
        apply_prompted,
        masker_for,
        render_all,
        step_names,
        system_variables,
    )

    with ctx.store.read() as conn:
        release = releases.require(conn, project, version)
        infra = require_infrastructure(conn)
    found = None
    if target is not None:
        found = next((t for t in infra.targets if t.name.casefold() == target.casefold()), None)
        if found is None:
            raise NotFoundError(f"unknown target {target!r} (known: {', '.join(t.name for t in infra.targets)})")
    if environment is not None:
        env = next((e for e in infra.environments if e.name.casefold() == environment.casefold()), None)
        if env is None:
            raise NotFoundError(f"unknown environment {environment!r} "
                                f"(known: {', '.join(e.name for e in infra.environments)})")
        if found is not None and found.environment != env.name:
            raise ConfigError(f"target {found.name} is in environment {found.environment}, not {env.name}")
        environment = env.name
    elif found is not None:
        environment = found.environment
    else:
        raise ConfigError("--step needs --environment or --target to show values for")
    if step is not None:
        steps = step_names(release.process)
        step = next((s for s in steps if s.casefold() == step.casefold()), None) or _unknown_step(step, steps)
    decrypted = releases.decrypt_variables(release.variables, ctx.vault)
    waiting = {variable_key(v["name"]) for v in decrypted if v.get("prompt") and v.get("value") is None}
    filled = apply_prompted(decrypted, {}, require=False)
    index = VariableIndex(filled)
    context = ScopeContext(environment, found.name if found else None, tuple(found.roles) if found else (), step,
                           channel=release.snapshot.get("channel") or DEFAULT_CHANNEL)
    system = system_variables(
        project=release.project, release_number=release.version, release_notes=release.snapshot["notes"],
        release_created=release.created_at, environment=environment,
        machine_name=found.name if found else None, machine_hostname=found.machine_hostname if found else None,
        machine_roles=found.roles if found else None, step_name=step, packages=release.packages)
    system.pop("Release.PreviousForEnvironment.Number", None)  # known only when a deployment starts
    system.pop("Octopus.Release.PreviousForEnvironment.Number", None)
    raw = index.resolve(context).overlay(system)
    winners = index.explain(context)
    warnings: list[str] = []
    masker = masker_for(filled)
    try:
        rendered = render_all(raw, strict=False, warnings=warnings)
    except TemplateError as exc:  # a malformed template in a value: show the raw values and say why
        rendered, warnings = raw, [str(exc)]
    rows = []
    aliases = {name for name in system if name.startswith("Octopus.")}  # the Octopus spellings of the same facts
    for name in sorted(raw, key=str.casefold):
        if name in aliases:
            continue
        key = variable_key(name)
        if raw.is_sensitive(name):
            value = releases.MASK
        elif key in waiting:
            value = "(prompted at deploy time)"
        else:
            value = masker.mask(rendered[name])
        source = "system" if name in system else "prompted" if key in waiting else winners.get(name, "")
        rows.append({"name": name, "value": value, "template": masker.mask(raw[name]) if not raw.is_sensitive(name)
                     else releases.MASK, "from": source, "sensitive": raw.is_sensitive(name)})
    warnings = [masker.mask(w) for w in warnings]
    if as_json:
        print_json({"project": release.project, "version": release.version, "environment": environment,
                    "target": found.name if found else None, "roles": list(found.roles) if found else [],
                    "step": step, "variable_revision": release.variables.revision, "variables": rows,
                    "warnings": warnings})
        return
    where = f"target {found.name} ({environment}; roles {', '.join(found.roles) or 'none'})" if found \
        else f"a worker step in {environment}"
    say(f"{release.project} {release.version}: values for {where}" + (f", step {step!r}" if step else "")
        + f" (variables revision {release.variables.revision})")
    print_table(None, ["name", "value", "from"], [(r["name"], r["value"], r["from"]) for r in rows])
    for warning in warnings:
        say(f"warning: {warning}")


def _unknown_step(step: str, steps: list[str]) -> str:
    raise NotFoundError(f"unknown step {step!r} (steps: {', '.join(steps) or 'none'})")


def _process_rows(process: list[dict[str, Any]]) -> Any:
    for i, item in enumerate(process, 1):
        if "steps" in item:
            rolling = item.get("rolling") or {}
            yield (str(i), item["name"], f"rolling (window {rolling.get('window', 'all')})", ", ".join(item["roles"]))
            for j, child in enumerate(item["steps"], 1):
                yield (f"{i}.{j}", f"  {child['name']}", child["kind"], "")
        else:
            yield (str(i), item["name"], item["kind"], ", ".join(item.get("roles") or []))


def _scope(scope: dict[str, list[str]]) -> str:
    return "; ".join(f"{k}={','.join(v)}" for k, v in sorted(scope.items()) if v)


@release_app.command("diff")
def diff(project: str, a: str, b: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """What changed from release A to release B: packages, variables (masked), process."""
    from snapshots import releases
    from snapshots.diff import diff_releases

    ctx = Workspace()
    with ctx.store.read() as conn:
        changes = diff_releases(releases.require(conn, project, a), releases.require(conn, project, b))
    if as_json:
        print_json(changes)
        return
    for section, lines in changes.items():
        say(f"{section}: {'no changes' if not lines else ''}")
        for line in lines:
            say(f"  {line}")


@release_app.command("verify")
def verify(project: str, version: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Recompute the release's digests, check its signatures (chained) and re-hash its packages; fail loudly
    on any mismatch."""
    from snapshots import releases

    ctx = Workspace()
    vault = ctx.vault  # first: a store from before signatures gets its releases signed as the key is adopted
    with ctx.store.read() as conn:
        release = releases.require(conn, project, version)
    checked = releases.verify(release, ctx.feed, vault)
    if as_json:
        print_json({"project": project, "version": release.version, "ok": True, "checked": checked})
        return
    for line in checked:
        say(f"ok  {line}")
    say(f"release {project} {release.version} verified")


@release_app.command("update-variables")
def update_variables(project: str, version: str,
                     as_json: bool = typer.Option(False, "--json", help="Print a ferry/v1 JSON document")) -> None:
    """Re-snapshot the project's current variables into the release (a new revision; old ones kept)."""
    from snapshots import releases

    ctx = Workspace()
    vault = ctx.vault
    with ctx.store.begin() as conn:
        release, changed = releases.update_variables(conn, project, version, ctx.actor, vault=vault)
    if as_json:
        print_json({"project": project, "version": release.version, "changed": changed,
                    "variable_revision": release.variables.revision,
                    "project_revision": release.variables.document["project_revision"]})
        return
    if changed:
        say(f"release {project} {release.version}: variables updated to revision {release.variables.revision} "
            f"(project revision {release.variables.document['project_revision']})")
    else:
        say(f"release {project} {release.version}: variables already match the project "
            f"(revision {release.variables.revision})")
