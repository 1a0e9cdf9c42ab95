"""``ferry prefect-server start|status|stop``: the local Prefect server ferry keeps per FERRY_HOME when no
``PREFECT_API_URL`` is set (``flows.orchestration.local_prefect``). Not ``ferry serve``, which runs flows."""

from __future__ import annotations

from typing import Any

import typer

from flows.cli.output import print_json, say
from flows.orchestration import local_prefect
from snapshots.settings import Settings

app = typer.Typer()
"""This module's commands; the root app in ``flows.cli.app`` merges them in."""

server_app = typer.Typer(no_args_is_help=True,
                         help="The local Prefect server ferry starts per FERRY_HOME when PREFECT_API_URL is unset")
app.add_typer(server_app, name="prefect-server")


def _home() -> Any:
    return Settings.from_env().home


def _show(doc: dict[str, Any]) -> None:
    if doc.get("running"):
        say(f"local Prefect server running: pid {doc['pid']}, UI {doc['ui_url']}, API {doc['api_url']}")
        say(f"database   {doc['database']}")
        say(f"log        {doc['log']}")
        return
    say(f"no local Prefect server is running for {doc['home']}"
        + (f" ({doc['stale']})" if doc.get("stale") else "")
        + "; the next deployment run here starts one (or `ferry prefect-server start`)")


@server_app.command("start")
def start(as_json: bool = typer.Option(False, "--json")) -> None:
    """Start it now (or reuse it): its UI shows earlier runs."""
    home = _home()
    _server, started = local_prefect.ensure(home)
    doc = {**local_prefect.describe(home), "started": started}
    if as_json:
        print_json(doc)
        return
    say("started" if started else "already running")
    _show(doc)


@server_app.command("status")
def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Whether it runs, its pid, UI and API address, database and log."""
    doc = local_prefect.describe(_home())
    if as_json:
        print_json(doc)
        return
    _show(doc)


@server_app.command("stop")
def stop(as_json: bool = typer.Option(False, "--json")) -> None:
    """Stop it; its runs stay in its database for the next start."""
    stopped = local_prefect.stop(_home())
    doc: dict[str, Any] = {"stopped": stopped is not None}
    if stopped is not None:
        doc.update(pid=stopped.pid, port=stopped.port)
    if as_json:
        print_json(doc)
        return
    say(f"local Prefect server stopped (pid {stopped.pid})" if stopped else "no local Prefect server was running")
