"""``ferry project list``, ``ferry environment list``, ``ferry deployment log ID`` and ``ferry deployment follow
ID``; each through the ferry server API in remote mode (``FERRY_SERVER``), where the data lives with the
executor."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import typer

from flows.cli import exit_codes
from flows.cli.deploy_cmds import deployment_app
from flows.cli.output import err_console, print_json, print_table, say
from flows.cli.remote import remote_client

if TYPE_CHECKING:
    from flows.client.http import LogLine

app = typer.Typer()
"""This module's commands; the root app in ``flows.cli.app`` merges them in."""

project_app = typer.Typer(no_args_is_help=True, help="Projects: the recipes applied to the store")
environment_app = typer.Typer(no_args_is_help=True, help="Environments of the applied infrastructure")
app.add_typer(project_app, name="project")
app.add_typer(environment_app, name="environment")

JSON_HELP = "Print a ferry/v1 JSON document"


@project_app.command("list")
def project_list(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Every applied project: its current revision, lifecycle and description."""
    if (client := remote_client()) is not None:
        found = client.list_projects()
    else:
        from flows.engine.inventory import projects
        from snapshots.workspace import Workspace

        with Workspace().store.read() as conn:
            found = projects(conn)
    if as_json:
        print_json(found)  # {"schema": "ferry/v1", "items": [...]}, as every list
        return
    print_table(None, ["project", "revision", "lifecycle", "description"],
                [(p["name"], p["revision"], p["lifecycle"], p["description"]) for p in found])


@environment_app.command("list")
def environment_list(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """The environments in declared order, with their targets."""
    if (client := remote_client()) is not None:
        found = client.list_environments()
    else:
        from flows.engine.inventory import environments
        from snapshots.workspace import Workspace

        with Workspace().store.read() as conn:
            found = environments(conn)
    if as_json:
        print_json(found)  # {"schema": "ferry/v1", "items": [...]}, as every list
        return
    print_table(None, ["environment", "guided failure", "targets"],
                [(e["name"], "yes" if e["guided_failure"] else "no",
                  ", ".join(f"{t['name']} ({', '.join(t['roles'])})" for t in e["targets"]) or "—")
                 for e in found])


@deployment_app.command("log")
def deployment_log(deployment_id: int) -> None:
    """The deployment's stored log so far (its flow run's log lines, or the log file of a background run)."""
    _stream(deployment_id, follow=False)


@deployment_app.command("follow")
def deployment_follow(deployment_id: int,
                      timeout: float | None = typer.Option(None, "--timeout", min=1,
                                                           help="Stop waiting after SECONDS (exit code 124)")) -> None:
    """Attach to a deployment's log until it ends (from its first line); exit code = its result: 0 succeeded,
    1 failed or cancelled, 124 when --timeout passed first."""
    _stream(deployment_id, follow=True, timeout=timeout)


def _stream(deployment_id: int, *, follow: bool, timeout: float | None = None) -> None:
    exit_codes.started()  # an error from here on is not a refusal to start
    if (client := remote_client()) is not None:
        if follow:
            result = client.follow(deployment_id, _echo, timeout=timeout)
            _end(deployment_id, result.finished, result.ok, result.state, timeout)
        else:
            cursor: str | None = None
            while True:
                page = client.log(deployment_id, after=cursor)
                for line in page.get("lines") or []:
                    say(_text(line))
                if not page.get("lines") or page.get("next") in (None, cursor):
                    return
                cursor = page.get("next")
        return
    _local(deployment_id, follow=follow, timeout=timeout)


def _echo(line: LogLine) -> None:
    say(line.text())


def _text(line: dict[str, Any]) -> str:
    task = f"{line['task']} | " if line.get("task") else ""
    return f"{str(line.get('at') or '')[11:19]} {line.get('level') or 'INFO'} {task}{line.get('message') or ''}"


def _local(deployment_id: int, *, follow: bool, timeout: float | None) -> None:
    """Locally: a background run's log file when there is one, else its flow run's log on the Prefect API."""
    from flows.orchestration.launch import read_log
    from flows.orchestration.served_runs import api_url
    from snapshots.store import records
    from snapshots.workspace import Workspace

    ctx = Workspace()
    with ctx.store.read() as conn:
        record = records.get(conn, deployment_id)  # NotFoundError names the id
    deadline = time.monotonic() + timeout if timeout is not None else None
    log_file = ctx.settings.home / "logs" / f"deployment-{deployment_id}.log"
    offset = 0
    cursor: str | None = None
    while True:
        if log_file.exists():
            with open(log_file, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            complete = chunk[:chunk.rfind(b"\n") + 1]
            offset += len(complete)
            for line in complete.decode(errors="replace").splitlines():
                say(line)
            with ctx.store.read() as conn:
                record = records.get(conn, deployment_id)
            finished = record.finished_at is not None
        elif record.flow_run_id and api_url():  # its flow run's log is on the configured Prefect API
            page = read_log(ctx, deployment_id, cursor)
            for line in page.get("lines") or []:
                say(_text(line))
            cursor = page.get("next") or cursor
            finished = bool(page.get("finished"))
            if not follow and not page.get("lines"):
                return
            if len(page.get("lines") or []) >= 200:
                continue
        else:
            if not follow:
                say(f"deployment #{deployment_id} has no stored log here (state {record.state}): it ran in a "
                    "process of its own without a Prefect API; `ferry deployment show` has its results")
                return
            with ctx.store.read() as conn:
                record = records.get(conn, deployment_id)
            finished = record.finished_at is not None
        if not follow:
            return
        if finished:
            with ctx.store.read() as conn:
                record = records.get(conn, deployment_id)
            _end(deployment_id, True, record.state == records.SUCCESS, record.state, timeout, record.error)
            return
        if deadline is not None and time.monotonic() >= deadline:
            _end(deployment_id, False, False, record.state, timeout)
        time.sleep(0.3)


def _end(deployment_id: int, finished: bool, ok: bool, state: str, timeout: float | None,
         error: str | None = None) -> None:
    if not finished:
        err_console.print(f"error: deployment #{deployment_id} did not finish within {timeout:g}s; it goes on "
                          f"({state})", markup=False)
        sys.exit(exit_codes.TIMED_OUT)
    if ok:
        say(f"deployment #{deployment_id} succeeded")
        return
    err_console.print(f"error: deployment #{deployment_id} {state.lower()}: {error or 'see its log'}", markup=False)
    sys.exit(exit_codes.FAILED)
