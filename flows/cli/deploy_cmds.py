"""``ferry deploy``, ``promote``, ``rollback``, ``deployment list|show|answer|cancel`` and ``status``; each
through the ferry server API in remote mode (``FERRY_SERVER``).

The store's records (SQLAlchemy), ``flows.engine``, ``flows.orchestration.launch``, ``local_runs`` and
``served_flows`` (the recipe models, Prefect) take from half a second to a second to import: the commands
import them when they run, so ``ferry --help`` and remote mode do not pay for them."""

from __future__ import annotations

import getpass
import re
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer

from flows.cli import exit_codes, failures, json_result, remote, run_options
from flows.cli.output import err_console, print_json, print_table, say
from flows.cli.remote import local_only, remote_client
from flows.cli.run_options import RunOptions
from flows.orchestration.served_runs import TIMED_OUT, Served, find_served, follow, run_url
from snapshots.errors import ConfigError
from snapshots.workspace import Workspace

if TYPE_CHECKING:
    from flows.client.http import PrefectRun
    from flows.engine.request import DeployRequest
    from flows.orchestration.launch import Launched

app = typer.Typer()
"""This module's commands; the root app in ``flows.cli.app`` merges them in."""

deployment_app = typer.Typer(no_args_is_help=True, help="Deployments: what ran where, and answering pauses")
app.add_typer(deployment_app, name="deployment")


def _variables(pairs: list[str]) -> dict[str, str]:
    """``--variable NAME=VALUE``, or ``--variable NAME`` to keep a secret out of the command line (which any
    user can read in ``ps``): asked for on the terminal without echo, else read as one line of stdin."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not name.strip():
            raise ConfigError(f"--variable {pair!r}: expected NAME=VALUE, or NAME to be asked for the value")
        out[name.strip()] = value if sep else _ask(name.strip())
    return out


def _ask(name: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(f"{name}: ")
    line = sys.stdin.readline()
    if not line:
        raise ConfigError(f"--variable {name}: no value on stdin (give NAME=VALUE, or one line per NAME on stdin)")
    return line.rstrip("\r\n")


def _start(ctx: Workspace, request: DeployRequest, wait: bool, *, at: datetime | None = None,
           expires: datetime | None = None, timeout: float | None = None, cancel_on_timeout: bool = False,
           local: bool = False) -> None:
    """Check and record the deployment, then run it: through the project's served ``deploy-release``
    deployment when a live ``ferry serve`` has registered one (so it runs where ferry serve / its workers
    run, and shows in the Prefect UI like any other run), else in this machine's processes."""
    from flows.orchestration.launch import record
    wait = wait or timeout is not None
    served = None if local else find_served(request.project)
    if at is not None and served is None:
        raise ConfigError(f"--at needs `ferry serve` to have registered {request.project} on a Prefect server "
                          "(PREFECT_API_URL): a scheduled deployment is a flow run that ferry serve starts")
    if served is not None and not served.live and at is None:
        say(f"note: {served.full_name} has no live `ferry serve` ({served.describe_liveness()}): running here")
        served = None
    launched = record(ctx, request, at=at)  # "latest" means latest now, as recorded, not when it starts
    deployment_id, request, version = launched.deployment_id, launched.request, launched.request.release
    say(f"deployment #{deployment_id}: {request.project} {version} → {request.environment}")
    exit_codes.started()
    json_result.track(deployment_id)
    if served is not None:
        _start_served(ctx, served, launched, wait, at, expires, timeout, cancel_on_timeout)
    else:
        _start_here(ctx, request, deployment_id, wait, timeout, cancel_on_timeout)


def _start_here(ctx: Workspace, request: DeployRequest, deployment_id: int, wait: bool, timeout: float | None,
                cancel_on_timeout: bool) -> None:
    from flows.orchestration.local_runs import run_detached, run_here, run_with_timeout

    if not wait:
        log = run_detached(ctx, request, deployment_id)
        say(f"running in the background; follow it with `ferry deployment show {deployment_id}` (log: {log})")
        return
    if timeout is None:
        failures.quiet_prefect_console()  # Prefect's tracebacks only with --debug: ferry reports each failure
        ok = run_here(request, deployment_id)
    else:
        try:
            ok = run_with_timeout(ctx, request, deployment_id, timeout, cancel_on_timeout,
                                  tracebacks=failures.debug_on(), to_stderr=json_result.active())
        except SystemExit as stop:  # 124: timed out; with --cancel-on-timeout the record now says Cancelled
            if stop.code == TIMED_OUT and cancel_on_timeout:
                _cancelled_event(ctx, deployment_id, f"timed out after {timeout:g}s (--cancel-on-timeout)")
            raise
    _finish(ctx, deployment_id, ok)


def _cancelled_event(ctx: Workspace, deployment_id: int, reason: str) -> None:
    """``ferry.deployment.cancelled`` with the reason, for a run this command cancelled on its timeout (its
    process was stopped before it could say so itself)."""
    from flows.orchestration import events

    events.emit_for(ctx.store, deployment_id, events.CANCELLED, error=reason, direct=True)


def _start_served(ctx: Workspace, served: Served, launched: Launched, wait: bool, at: datetime | None,
                  expires: datetime | None, timeout: float | None, cancel_on_timeout: bool) -> None:
    from flows.orchestration.launch import start_served

    deployment_id = launched.deployment_id
    run = start_served(ctx, served, launched, at=at, expires=expires, tags=["cli"]).flow_run
    if at is not None:
        until = f", cancelled if not started by {expires.astimezone():%Y-%m-%d %H:%M:%S %Z}" if expires else ""
        say(f"scheduled for {at.astimezone():%Y-%m-%d %H:%M:%S %Z}{until}: flow run {run.name} of "
            f"{served.full_name}  {run_url(run.id)}")
    else:
        say(f"flow run {run.name} of {served.full_name}  {run_url(run.id)}")
    if not served.live:
        say(f"warning: no `ferry serve` is polling {served.full_name} right now ({served.describe_liveness()}); "
            "the run starts when one does")
    if not wait:
        say(f"follow it with `ferry deployment show {deployment_id}` or in the Prefect UI")
        return

    def paused(_run: PrefectRun) -> None:
        say(f"deployment #{deployment_id} is paused, waiting for a person: answer in the Prefect UI (Resume) or "
            f"with `ferry deployment answer {deployment_id} <action>`")

    state, code = follow(run.id, timeout=timeout, cancel_on_timeout=cancel_on_timeout, on_pause=paused,
                         flushed=True)  # deploy-release sends its log before its final state
    if code == TIMED_OUT:
        if cancel_on_timeout:
            from flows.orchestration.served_flows import mark_record  # imports Prefect: only here
            from snapshots.store import records

            reason = f"timed out after {timeout:g}s (--cancel-on-timeout)"
            if mark_record(deployment_id, records.CANCELLED, reason):  # else ferry serve's hook marked it and told
                _cancelled_event(ctx, deployment_id, reason)
            err_console.print(f"error: deployment #{deployment_id} timed out after {timeout:g}s and was cancelled "
                              f"(flow run {state})", markup=False)
        else:
            err_console.print(f"error: deployment #{deployment_id} did not finish within {timeout:g}s; it goes on "
                              f"(flow run {run.name}: {state})", markup=False)
        sys.exit(TIMED_OUT)
    _finish(ctx, deployment_id, code == 0)


def _finish(ctx: Workspace, deployment_id: int, ok: bool) -> None:
    """One line with the outcome; exit code 1 unless the deployment succeeded."""
    from snapshots.store import records

    with ctx.store.read() as conn:
        final = records.get(conn, deployment_id)
        results = [r.as_dict() for r in records.results(conn, deployment_id)]
    if ok and final.state == records.SUCCESS:
        say(f"deployment #{deployment_id} succeeded" + (": no change, nothing ran (--force redeploys)"
                                                         if final.no_change else ""))
        return
    failures.report(deployment_id, results, ctx.settings.home / "logs" / f"deployment-{deployment_id}.log")
    err_console.print(f"error: deployment #{deployment_id} {final.state.lower()}: {final.error or 'see its log'}",
                      markup=False)
    sys.exit(1)


def _when(text: str | None, option: str, base: datetime | None = None) -> datetime | None:
    """``--at`` / ``--expires``: an ISO 8601 date-time (local time unless it says otherwise), ``HH:MM`` (the
    next such time), or ``+90s`` / ``+10m`` / ``+2h`` / ``+1d`` from now (for --expires: from --at)."""
    if text is None:
        return None
    now = datetime.now().astimezone()
    value = text.strip()
    relative = re.fullmatch(r"\+\s*(\d+(?:\.\d+)?)\s*([smhd])", value)
    if relative:
        seconds = float(relative.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[relative.group(2)]
        return (base or now) + timedelta(seconds=seconds)
    clock = re.fullmatch(r"(\d{1,2}):(\d{2})", value)
    try:
        if clock:
            moment = now.replace(hour=int(clock.group(1)), minute=int(clock.group(2)), second=0, microsecond=0)
            return moment if moment > now else moment + timedelta(days=1)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected an ISO 8601 date-time (2026-12-01T18:30), HH:MM, or "
                          "+N s/m/h/d") from None
    return moment if moment.tzinfo else moment.astimezone()


@app.command()
def deploy(project: str, release: str = typer.Argument(..., help="A version, or 'latest'"),
           to: str = typer.Option(..., "--to", help="Environment"),
           target: list[str] = run_options.TARGET, exclude_target: list[str] = run_options.EXCLUDE_TARGET,
           skip: list[str] = run_options.SKIP, variable: list[str] = run_options.VARIABLE,
           guided_failure: bool | None = run_options.GUIDED_FAILURE,
           force: bool = typer.Option(False, "--force", help="Redeploy targets already at this release"),
           wait: bool = run_options.WAIT, timeout: float | None = run_options.TIMEOUT,
           cancel_on_timeout: bool = run_options.CANCEL_ON_TIMEOUT,
           at: str | None = typer.Option(None, "--at", help="Start at TIME (ISO 8601, HH:MM or +10m): a scheduled "
                                                            "flow run of `ferry serve`"),
           expires: str | None = typer.Option(None, "--expires",
                                              help="With --at: cancel, not run late, if not started by TIME "
                                                   "(+N counts from --at)"),
           local: bool = typer.Option(False, "--local",
                                      help="Run in this machine's processes even when ferry serve serves the "
                                           "project"),
           plan: bool = typer.Option(False, "--plan", help="Only show what the deployment would do: phases, "
                                                           "windows, steps per target, variables (masked); "
                                                           "nothing is recorded or touched"),
           check_targets: bool = typer.Option(False, "--check-targets",
                                              help="With --plan: connect to each target and read its journal "
                                                   "(read-only) to tell which are already current"),
           as_json: bool = run_options.JSON,
           channel: str | None = typer.Option(None, "--channel", help="'latest' means the latest release of this "
                                                                      "channel (default: the default channel)"),
           override_freeze: bool = typer.Option(False, "--override-freeze",
                                                help="Deploy although a deployment freeze is in force (recorded "
                                                     "on the deployment: who, which freeze)")) -> None:
    """Deploy a release to an environment (a Prefect flow run; through `ferry serve` when it serves the
    project)."""
    if plan or check_targets:
        from flows.cli.plan_output import show_plan

        show_plan(project, release, to, plan=plan, check_targets=check_targets, as_json=as_json,
                  targets=list(target), exclude_targets=list(exclude_target), skip_steps=list(skip),
                  variables=_variables(variable), guided_failure=guided_failure, force=force,
                  conflicting={"--wait": wait, "--timeout": timeout, "--cancel-on-timeout": cancel_on_timeout,
                               "--at": at, "--expires": expires, "--local": local},
                  channel=channel, override_freeze=override_freeze)
        return
    with json_result.result_document(as_json, "deploy", wait or timeout is not None):
        if cancel_on_timeout and timeout is None:
            raise ConfigError("--cancel-on-timeout needs --timeout SECONDS")
        if (client := remote_client()) is not None:
            if at is not None or expires is not None or local:
                local_only("--at" if at is not None else "--expires" if expires is not None else "--local")
            launched = client.deploy(project, release, to, targets=list(target), exclude_targets=list(exclude_target),
                                     skip_steps=list(skip), variables=_variables(variable),
                                     guided_failure=guided_failure, force=force, channel=channel,
                                     override_freeze=override_freeze)
            remote.started(client, project, launched, wait or timeout is not None, timeout=timeout,
                           cancel_on_timeout=cancel_on_timeout)
            return
        from flows.engine.request import DeployRequest

        start_at = _when(at, "--at")
        expires_at = _when(expires, "--expires", base=start_at)
        if expires_at is not None and start_at is None:
            raise ConfigError("--expires needs --at")
        if start_at is not None and local:
            raise ConfigError("--at and --local do not go together: a scheduled deployment is started by ferry serve")
        if start_at is not None and start_at < datetime.now().astimezone() - timedelta(minutes=1):
            raise ConfigError(f"--at {at}: that time has passed ({start_at:%Y-%m-%d %H:%M:%S %Z})")
        if expires_at is not None and start_at is not None and expires_at <= start_at:
            raise ConfigError(f"--expires {expires}: must be after --at ({start_at:%Y-%m-%d %H:%M:%S %Z})")
        request = DeployRequest(project, release, to, list(target), list(exclude_target), list(skip),
                                _variables(variable), guided_failure, force, channel=channel,
                                override_freeze=override_freeze)
        _start(Workspace(), request, wait, at=start_at, expires=expires_at, timeout=timeout,
               cancel_on_timeout=cancel_on_timeout, local=local)


@app.command()
def promote(project: str, from_: str = typer.Option(..., "--from", help="Source environment"),
            to: str = typer.Option(..., "--to", help="Destination environment"),
            target: list[str] = run_options.TARGET, exclude_target: list[str] = run_options.EXCLUDE_TARGET,
            skip: list[str] = run_options.SKIP, variable: list[str] = run_options.VARIABLE,
            guided_failure: bool | None = run_options.GUIDED_FAILURE, wait: bool = run_options.WAIT,
            timeout: float | None = run_options.TIMEOUT,
            cancel_on_timeout: bool = run_options.CANCEL_ON_TIMEOUT,
            channel: str | None = typer.Option(None, "--channel", help="Promote the channel's release (default: "
                                                                      "the default channel)"),
            override_freeze: bool = typer.Option(False, "--override-freeze",
                                                 help="Deploy although a deployment freeze is in force"),
            as_json: bool = run_options.JSON) -> None:
    """Deploy the release (of a channel) that last succeeded in one environment to the next."""
    with json_result.result_document(as_json, "promote", wait or timeout is not None):
        _promote(project, from_, to, RunOptions(list(target), list(exclude_target), list(skip), _variables(variable),
                                                guided_failure, timeout, cancel_on_timeout), wait, channel,
                 override_freeze)


def _promote(project: str, from_: str, to: str, extra: RunOptions, wait: bool, channel: str | None,
             override_freeze: bool) -> None:
    timeout, cancel_on_timeout = extra.timeout, extra.cancel_on_timeout
    if (client := remote_client()) is not None:
        remote.started(client, project, client.promote(project, from_, to, **extra.options(), channel=channel,
                                                       override_freeze=override_freeze), wait or extra.waits(),
                       timeout=timeout, cancel_on_timeout=cancel_on_timeout)
        return
    from flows.orchestration.launch import promote_request

    ctx = Workspace()
    request = promote_request(ctx, project, from_, to, channel=channel, override_freeze=override_freeze,
                              **extra.options())
    _start(ctx, request, wait, timeout=timeout, cancel_on_timeout=cancel_on_timeout)


@app.command()
def rollback(project: str, env: str = typer.Option(..., "--env", help="Environment to roll back"),
             target: list[str] = run_options.TARGET, exclude_target: list[str] = run_options.EXCLUDE_TARGET,
             skip: list[str] = run_options.SKIP, variable: list[str] = run_options.VARIABLE,
             guided_failure: bool | None = run_options.GUIDED_FAILURE, wait: bool = run_options.WAIT,
             timeout: float | None = run_options.TIMEOUT,
            cancel_on_timeout: bool = run_options.CANCEL_ON_TIMEOUT,
             override_freeze: bool = typer.Option(False, "--override-freeze",
                                                  help="Deploy although a deployment freeze is in force"),
             as_json: bool = run_options.JSON) -> None:
    """Deploy the environment's previous successful release again, as a new deployment."""
    with json_result.result_document(as_json, "rollback", wait or timeout is not None):
        _rollback(project, env, RunOptions(list(target), list(exclude_target), list(skip), _variables(variable),
                                           guided_failure, timeout, cancel_on_timeout), wait, override_freeze)


def _rollback(project: str, env: str, extra: RunOptions, wait: bool, override_freeze: bool) -> None:
    timeout, cancel_on_timeout = extra.timeout, extra.cancel_on_timeout
    if (client := remote_client()) is not None:
        launched = client.rollback(project, env, **extra.options(), override_freeze=override_freeze)
        say(f"rolling {env} back from {launched.get('rolled_back_from')} to {launched.get('release')}")
        remote.started(client, project, launched, wait or extra.waits(), timeout=timeout,
                       cancel_on_timeout=cancel_on_timeout)
        return
    from flows.orchestration.launch import rollback_request

    ctx = Workspace()
    request, current = rollback_request(ctx, project, env, **extra.options(), override_freeze=override_freeze)
    say(f"rolling {env} back from {current} to {request.release}")
    _start(ctx, request, wait, timeout=timeout, cancel_on_timeout=cancel_on_timeout)


@deployment_app.command("list")
def list_(project: str | None = typer.Argument(None), environment: str | None = typer.Option(None, "--env"),
          limit: int = typer.Option(30, "--limit"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Recent deployments, newest first."""
    if (client := remote_client()) is not None:
        found = [d for d in client.list_deployments(project, limit)
                 if environment is None or d["environment"].casefold() == environment.casefold()]
    else:
        from snapshots.store import records

        ctx = Workspace()
        with ctx.store.read() as conn:
            found = [d.as_dict() for d in records.list_deployments(conn, project, environment, limit)]
    if as_json:
        print_json(found)
        return
    print_table(None, ["#", "project", "release", "environment", "state", "created", "by", "finished"],
                [(d["id"], d["project"], d["version"], d["environment"], _shown_state(d), d["created_at"],
                  d["created_by"], d["finished_at"]) for d in found])


def _shown_state(d: dict[str, Any]) -> str:
    """``Success (no change)`` for a deployment that found every target current and ran nothing (as
    ``records.shown_state``, for documents that may come from the server API: no store import here)."""
    return f"{d['state']} (no change)" if d.get("no_change") and d["state"] == "Success" else str(d["state"])


@deployment_app.command("show")
def show(deployment_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
    """One deployment: its state and every (step, target) result."""
    if (client := remote_client()) is not None:
        data = client.show_deployment(deployment_id)
        data.pop("finished", None)  # the API's addition for pollers; the document is the local one
    else:
        from snapshots.store import records

        ctx = Workspace()
        with ctx.store.read() as conn:
            found = records.get(conn, deployment_id)
            results = records.results(conn, deployment_id)
            from snapshots.store.outputs import for_deployment
            outputs = for_deployment(conn, deployment_id, ctx.vault)
            from flows.engine.inventory import answers
            answered = answers(conn, found.project, deployment_id)
        data = {**found.as_dict(), "results": [r.as_dict() for r in results],
                "outputs": [o.as_dict() for o in outputs], "answers": answered}
    if as_json:
        print_json(data)
        return
    d = data
    say(f"deployment #{d['id']}: {d['project']} {d['version']} → {d['environment']}: {_shown_state(d)}")
    if d.get("no_change"):
        say("no change: every target already had this release, so no step ran (--force redeploys)")
    say(f"created {d['created_at']} by {d['created_by']}; started {d['started_at']}; finished {d['finished_at']}")
    for a in d.get("answers") or []:  # approvals apart from the start: who answered a pause, and when
        say(f"answered {a['action']} at {a['at']} by {a['by']}" + (f" ({a['notes']})" if a.get("notes") else ""))
    if d.get("error"):
        say(f"error: {d['error']}")
    params = d.get("parameters") or {}
    if params.get("channel"):
        say(f"channel: {params['channel']}")
    if params.get("freeze_override"):
        o = params["freeze_override"]
        say(f"freeze overridden by {o.get('by')}: {o.get('freeze')!r} (until {o.get('end')}: {o.get('reason')})")
    print_table(None, ["step", "target", "result", "attempts", "finished", "message"],
                [(r["step"], r["target"] or "—", r["state"], r["attempts"], r["finished_at"], r["message"])
                 for r in d["results"]])
    if d.get("outputs"):
        print_table("output variables", ["step", "target", "name", "value"],
                    [(o["step"], o["target"] or "—", o["name"], o["value"]) for o in d["outputs"]])


ANSWERS = ("retry", "skip", "ignore", "abort", "proceed")
"""Every answer a paused deployment can take (the pause itself says which of them it accepts)."""


@deployment_app.command("answer")
def answer(deployment_id: int,
           action: str = typer.Argument(..., help="retry|skip|ignore|abort (guided failure) or proceed|abort"),
           notes: str = typer.Option("", "--notes", help="Recorded on the deployment"),
           as_json: bool = typer.Option(False, "--json", help="Print a ferry/v1 JSON document")) -> None:
    """Answer a deployment that is paused for a person (guided failure or a manual step)."""
    if action not in ANSWERS:  # before asking anyone: a typo is not "not waiting"
        raise ConfigError(f"answer {action!r} is not one of {', '.join(ANSWERS)} (retry|skip|ignore|abort for a "
                          "guided failure, proceed|abort for a manual step)")
    if (client := remote_client()) is not None:
        message = client.answer(deployment_id, action, notes)
    else:
        from flows.orchestration.launch import answer as answer_deployment

        ctx = Workspace()
        message = answer_deployment(ctx, deployment_id, action, notes, ctx.actor)
    if as_json:
        print_json({"deployment_id": deployment_id, "answer": action, "notes": notes, "message": message})
        return
    say(message)


@deployment_app.command("cancel")
def cancel(deployment_id: int,
           as_json: bool = typer.Option(False, "--json", help="Print a ferry/v1 JSON document")) -> None:
    """Cancel a deployment: a queued one never starts, a running one stops (the record says who cancelled)."""
    if (client := remote_client()) is not None:
        message = client.cancel(deployment_id)
    else:
        from flows.orchestration.launch import cancel as cancel_deployment

        ctx = Workspace()
        message = cancel_deployment(ctx, deployment_id, ctx.actor)
    if as_json:
        print_json({"deployment_id": deployment_id, "message": message})
        return
    say(message)


@app.command()
def status(project: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """What is where: the project's environments (lifecycle order) × its releases."""
    if (client := remote_client()) is not None:
        data = client.status(project)
    else:
        from flows.engine.dashboard import dashboard

        data = dashboard(Workspace(), project)
    if as_json:
        print_json(data)
        return
    envs = data["environments"]
    print_table(f"{project}: current release per environment", ["environment", "current", "deployed", "latest"],
                [(e, (data["current"].get(e) or {}).get("release", "—"), (data["current"].get(e) or {}).get("at", ""),
                  (data["latest"].get(e) or {}).get("summary", "—")) for e in envs])
    print_table("releases × environments", ["release", *envs],
                [(row["release"], *(row["cells"].get(e, "") for e in envs)) for row in data["releases"]])
