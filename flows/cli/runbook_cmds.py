"""``ferry runbook list|publish|run|runs``: operations procedures of a project, published as immutable snapshots
and run against an environment like a deployment (same engine, slots and records), moving no lifecycle."""

from __future__ import annotations

import sys
from typing import Any

import typer

from flows.cli.output import err_console, print_json, print_table, say
from flows.cli.remote import remote_client
from snapshots.workspace import Workspace

app = typer.Typer()
runbook_app = typer.Typer(no_args_is_help=True, help="Runbooks: operations procedures, published and run")
app.add_typer(runbook_app, name="runbook")


@runbook_app.command("list")
def list_(project: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """The project's runbooks: where they may run, their newest snapshot, and whether the recipe changed since."""
    if (client := remote_client()) is not None:
        found = client.list_runbooks(project)
    else:
        from flows.engine.runbook_views import runbook_list

        ctx = Workspace()
        with ctx.store.read() as conn:
            found = runbook_list(conn, project)
    if as_json:
        print_json(found)
        return
    print_table(None, ["runbook", "environments", "snapshot", "published", "by", "description"],
                [(r["name"], ", ".join(r["environments"]) or "any",
                  (f"{r['snapshot']}" + (" (recipe changed since)" if r["changed"] else "")) if r["snapshot"]
                  else "not published", r["published_at"], r["published_by"], r["description"]) for r in found])


@runbook_app.command("publish")
def publish(project: str, name: str, notes: str = typer.Option("", "--notes", help="Kept with the snapshot"),
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Freeze the runbook of the project's current revision as its next immutable snapshot (signed)."""
    from flows.engine.runbook_views import snapshot_view
    from snapshots.runbook_snapshots import publish as publish_snapshot

    ctx = Workspace()
    with ctx.store.begin() as conn:
        published = publish_snapshot(conn, ctx.feed, project, name, ctx.actor, vault=ctx.vault, notes=notes)
    view = snapshot_view(published)
    if as_json:
        print_json(view)
        return
    say(f"runbook {view['runbook']!r} of {project}: published snapshot {view['snapshot']} "
        f"(project revision {view['project_revision']}, digest {view['digest'][:16]}…)")


@runbook_app.command("run")
def run(project: str, name: str, to: str = typer.Option(..., "--to", help="Environment"),
        target: list[str] = typer.Option([], "--target", help="Only these targets"),
        exclude_target: list[str] = typer.Option([], "--exclude-target", help="Leave these targets out"),
        variable: list[str] = typer.Option([], "--variable", help="Prompted variable NAME=VALUE; NAME alone: "
                                                                 "read the value from the terminal or stdin"),
        snapshot: int | None = typer.Option(None, "--snapshot", min=1, help="Run this published snapshot "
                                                                           "(default: the newest)"),
        guided_failure: bool | None = typer.Option(None, "--guided-failure/--no-guided-failure",
                                                   help="Pause and ask on failure (default: environment's)"),
        wait: bool = typer.Option(False, "--wait", help="Stream the log until it ends; exit code = result"),
        local: bool = typer.Option(False, "--local", help="Run in this machine's processes even when ferry "
                                                          "serve serves the runbook"),
        as_json: bool = typer.Option(False, "--json", help="Print one ferry/v1 deployment-result document on "
                                                          "stdout (human lines go to stderr): with --wait when "
                                                          "the run has finished")) -> None:
    """Run a published runbook snapshot against an environment (a Prefect flow run of `run-runbook`)."""
    from flows.cli import json_result

    with json_result.result_document(as_json, "runbook run", wait):  # the same document as deploy --json
        _run(project, name, to, target, exclude_target, variable, snapshot, guided_failure, wait, local)


def _run(project: str, name: str, to: str, target: list[str], exclude_target: list[str], variable: list[str],
         snapshot: int | None, guided_failure: bool | None, wait: bool, local: bool) -> None:
    from flows.cli.deploy_cmds import _variables

    given = _variables(variable)
    if (client := remote_client()) is not None:
        if local:
            from flows.cli.remote import local_only

            local_only("--local")
        launched = client.run_runbook(project, name, to, snapshot=snapshot, targets=list(target),
                                      exclude_targets=list(exclude_target), variables=given,
                                      guided_failure=guided_failure)
        _remote_started(client, launched, wait)
        return
    from flows.engine.runbooks import RunbookRequest

    request = RunbookRequest(project, name, to, snapshot, list(target), list(exclude_target), given, guided_failure)
    _start(Workspace(), request, wait, local)


def _start(ctx: Workspace, request: Any, wait: bool, local: bool) -> None:
    from dataclasses import replace

    from flows.engine.runbooks import check_and_record
    from flows.orchestration.runbook_serving import find_served_runbook
    from snapshots.projects import require_project
    from snapshots.runbook_snapshots import find_runbook

    with ctx.store.read() as conn:  # the runbook's name as the YAML writes it: the served deployment's
        request = replace(request, runbook=find_runbook(require_project(conn, request.project), request.runbook).name)
    served = None if local else find_served_runbook(request.project, request.runbook)
    if served is not None and not served.live:
        say(f"note: {served.full_name} has no live `ferry serve` ({served.describe_liveness()}): running here")
        served = None
    run_id, request = check_and_record(ctx, request)
    _track(run_id)
    say(f"runbook run #{run_id}: {request.project} {request.runbook!r} snapshot {request.snapshot} → "
        f"{request.environment}")
    if served is not None:
        from flows.orchestration.runbook_serving import start_served_run

        run = start_served_run(ctx, served, request, run_id)
        say(f"flow run {run.name} of {served.full_name}")
        if wait:
            from flows.orchestration.served_runs import follow

            _state, code = follow(run.id)
            _finish(ctx, run_id, code == 0)
        return
    if not wait:
        from flows.orchestration.runbook_runs import run_detached

        log = run_detached(ctx, request, run_id)
        say(f"running in the background; follow it with `ferry deployment show {run_id}` (log: {log})")
        return
    from flows.orchestration.runbook_runs import run_here

    ok = run_here(request, run_id)
    _finish(ctx, run_id, ok)


def _finish(ctx: Workspace, run_id: int, ok: bool) -> None:
    from snapshots.store import records

    with ctx.store.read() as conn:
        final = records.get(conn, run_id)
    if ok and final.state == records.SUCCESS:
        say(f"runbook run #{run_id} succeeded")
        return
    err_console.print(f"error: runbook run #{run_id} {final.state.lower()}: {final.error or 'see its log'}",
                      markup=False)
    sys.exit(1)


def _remote_started(client: Any, launched: dict[str, Any], wait: bool) -> None:
    run_id = int(launched["deployment_id"])
    _track(run_id, client, launched)
    say(f"runbook run #{run_id}: {launched.get('project')} {launched.get('runbook')!r} snapshot "
        f"{launched.get('snapshot')} → {launched.get('environment')}")
    if not wait:
        return
    result = client.follow(run_id, lambda line: say(line.text()))
    if result.ok:
        say(f"runbook run #{run_id} succeeded")
        return
    shown = client.show_deployment(run_id)
    err_console.print(f"error: runbook run #{run_id} {str(shown.get('state') or result.state).lower()}: "
                      f"{shown.get('error') or 'see its log'}", markup=False)
    sys.exit(1)


def _track(run_id: int, client: Any = None, launched: dict[str, Any] | None = None) -> None:
    """The run is started: exit code 1, not 3, if it fails from now on; the --json document reports it."""
    from flows.cli import exit_codes, json_result

    exit_codes.started()
    json_result.track(run_id, client=client, flow_run_id=(launched or {}).get("flow_run_id"),
                      flow_run_url=(launched or {}).get("flow_run_url"))


@runbook_app.command("runs")
def runs(project: str, limit: int = typer.Option(30, "--limit"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Recent runbook runs of the project, newest first (`ferry deployment show ID` shows one)."""
    from snapshots.store import records

    ctx = Workspace()
    with ctx.store.read() as conn:
        found = [d.as_dict() for d in records.list_deployments(conn, project, limit=10_000)
                 if d.kind == records.RUNBOOK][:limit]
    if as_json:
        print_json(found)
        return
    print_table(None, ["#", "runbook", "snapshot", "environment", "state", "created", "by", "finished"],
                [(d["id"], d["runbook"], d["parameters"].get("snapshot"), d["environment"], d["state"],
                  d["created_at"], d["created_by"], d["finished_at"]) for d in found])
