"""``ferry deploy``, ``promote``, ``rollback``, ``deployment list|show|answer`` and ``status``."""

from __future__ import annotations

import sys
from typing import Any

import typer

from flows.cli.app import app
from flows.cli.context import Context
from flows.cli.output import print_json, print_table, say

deployment_app = typer.Typer(no_args_is_help=True, help="Deployments: what ran where, and answering pauses")
app.add_typer(deployment_app, name="deployment")


def _variables(pairs: list[str]) -> dict[str, str]:
    from snapshots.errors import ConfigError

    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--variable {pair!r}: expected NAME=VALUE")
        out[name.strip()] = value
    return out


def _start(ctx: Context, request: Any, wait: bool) -> None:
    from flows.launcher import check_and_record, run_detached, run_here

    deployment_id, version = check_and_record(ctx, request)
    say(f"deployment #{deployment_id}: {request.project} {version} → {request.environment}")
    if not wait:
        log = run_detached(ctx, request, deployment_id)
        say(f"running in the background; follow it with `ferry deployment show {deployment_id}` (log: {log})")
        return
    ok = run_here(request, deployment_id)
    with ctx.store.read() as conn:
        from snapshots import deployments as records

        final = records.get(conn, deployment_id)
    if ok:
        say(f"deployment #{deployment_id} succeeded")
        return
    from flows.cli.output import err_console

    err_console.print(f"error: deployment #{deployment_id} {final.state.lower()}: {final.error or 'see its log'}",
                      markup=False)
    sys.exit(1)


@app.command()
def deploy(project: str, release: str = typer.Argument(..., help="A version, or 'latest'"),
           to: str = typer.Option(..., "--to", help="Environment"),
           target: list[str] = typer.Option([], "--target", help="Only these targets"),
           exclude_target: list[str] = typer.Option([], "--exclude-target", help="Leave these targets out"),
           skip: list[str] = typer.Option([], "--skip", help="Skip these steps (not required ones)"),
           variable: list[str] = typer.Option([], "--variable", help="Prompted variable NAME=VALUE"),
           guided_failure: bool | None = typer.Option(None, "--guided-failure/--no-guided-failure",
                                                      help="Pause and ask on failure (default: environment's)"),
           force: bool = typer.Option(False, "--force", help="Redeploy targets already at this release"),
           wait: bool = typer.Option(False, "--wait", help="Run here, stream the log, exit with the result")) -> None:
    """Deploy a release to an environment (a Prefect flow run)."""
    from flows.launcher import DeployRequest

    request = DeployRequest(project, release, to, list(target), list(exclude_target), list(skip),
                            _variables(variable), guided_failure, force)
    _start(Context(), request, wait)


@app.command()
def promote(project: str, from_: str = typer.Option(..., "--from", help="Source environment"),
            to: str = typer.Option(..., "--to", help="Destination environment"),
            wait: bool = typer.Option(False, "--wait")) -> None:
    """Deploy the release that last succeeded in one environment to the next."""
    from flows.launcher import DeployRequest
    from snapshots import deployments as records
    from snapshots.errors import NotFoundError

    ctx = Context()
    with ctx.store.read() as conn:
        last = records.last_successful(conn, project, from_)
    if last is None:
        raise NotFoundError(f"no successful deployment of {project} to {from_} to promote")
    _start(ctx, DeployRequest(project, last.version, to), wait)


@app.command()
def rollback(project: str, env: str = typer.Option(..., "--env", help="Environment to roll back"),
             wait: bool = typer.Option(False, "--wait")) -> None:
    """Deploy the environment's previous successful release again, as a new deployment."""
    from flows.launcher import DeployRequest
    from snapshots import deployments as records
    from snapshots.errors import NotFoundError

    ctx = Context()
    with ctx.store.read() as conn:
        current = records.last_successful(conn, project, env)
        previous = current and records.last_successful(conn, project, env, before_id=current.id,
                                                       other_than_release=current.release_id)
    if previous is None:
        raise NotFoundError(f"{project} has no earlier successful release in {env} to roll back to")
    say(f"rolling {env} back from {current.version} to {previous.version}")  # type: ignore[union-attr]
    _start(ctx, DeployRequest(project, previous.version, env, force=True), wait)


@deployment_app.command("list")
def list_(project: str | None = typer.Argument(None), environment: str | None = typer.Option(None, "--env"),
          limit: int = typer.Option(30, "--limit"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Recent deployments, newest first."""
    from snapshots import deployments as records

    ctx = Context()
    with ctx.store.read() as conn:
        found = records.list_deployments(conn, project, environment, limit)
    if as_json:
        print_json([d.as_dict() for d in found])
        return
    print_table(None, ["#", "project", "release", "environment", "state", "created", "by", "finished"],
                [(d.id, d.project, d.version, d.environment, d.state, d.created_at, d.created_by, d.finished_at)
                 for d in found])


@deployment_app.command("show")
def show(deployment_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
    """One deployment: its state and every (step, target) result."""
    from snapshots import deployments as records

    ctx = Context()
    with ctx.store.read() as conn:
        found = records.get(conn, deployment_id)
        results = records.results(conn, deployment_id)
    if as_json:
        print_json({**found.as_dict(), "results": [r.as_dict() for r in results]})
        return
    say(f"deployment #{found.id}: {found.project} {found.version} → {found.environment}: {found.state}")
    say(f"created {found.created_at} by {found.created_by}; started {found.started_at}; finished {found.finished_at}")
    if found.error:
        say(f"error: {found.error}")
    print_table(None, ["step", "target", "result", "attempts", "finished", "message"],
                [(r.step, r.target or "—", r.state, r.attempts, r.finished_at, r.message) for r in results])


@deployment_app.command("answer")
def answer(deployment_id: int,
           action: str = typer.Argument(..., help="retry|skip|ignore|abort (guided failure) or proceed|abort"),
           notes: str = typer.Option("", "--notes", help="Recorded on the deployment")) -> None:
    """Answer a deployment that is paused for a person (guided failure or a manual step)."""
    from flows.answers import answer_pause

    ctx = Context()
    say(answer_pause(ctx, deployment_id, action, notes))


@app.command()
def status(project: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """What is where: the project's environments (lifecycle order) × its releases."""
    from flows.dashboard import dashboard

    ctx = Context()
    data = dashboard(ctx, project)
    if as_json:
        print_json(data)
        return
    envs = data["environments"]
    print_table(f"{project}: current release per environment", ["environment", "current", "deployed", "latest"],
                [(e, (data["current"].get(e) or {}).get("release", "—"), (data["current"].get(e) or {}).get("at", ""),
                  (data["latest"].get(e) or {}).get("summary", "—")) for e in envs])
    print_table("releases × environments", ["release", *envs],
                [(row["release"], *(row["cells"].get(e, "") for e in envs)) for row in data["releases"]])
