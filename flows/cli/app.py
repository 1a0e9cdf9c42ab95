"""The ``ferry`` command: one typer app, sub-apps per noun, one-line errors.

Every ``FerryError`` becomes ``error: <message>`` on stderr with exit code 1 (``--debug`` shows the
traceback instead).
"""

from __future__ import annotations

import gc
import os
import sys
from typing import TYPE_CHECKING, Any, TypeGuard

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from flows.cli import (
    api_key_cmds,
    cert_cmds,
    deploy_cmds,
    exit_codes,
    failures,
    fleet_cmds,
    inventory_cmds,
    key_cmds,
    lab_cmds,
    package_cmds,
    prefect_server_cmds,
    project_cmds,
    release_cmds,
    runbook_cmds,
    serve_cmds,
    target_cmds,
)
from flows.cli.output import err_console, fit_width
from flows.cli.remote import activate as activate_remote
from snapshots.errors import FerryError

if TYPE_CHECKING:
    import click

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="ferry: releases frozen from a recipe, rolled through environments on Prefect.")
_debug = {"on": False}


for _commands in (project_cmds, package_cmds, release_cmds, deploy_cmds, target_cmds, serve_cmds, lab_cmds,
                  api_key_cmds, key_cmds, cert_cmds, fleet_cmds, prefect_server_cmds):
    app.add_typer(_commands.app)
app.add_typer(runbook_cmds.app)
app.add_typer(inventory_cmds.app)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors"),
          server: str | None = typer.Option(None, "--server", metavar="URL",
                                            help="Talk to this ferry server (default: FERRY_SERVER); the API key "
                                                 "comes from FERRY_API_KEY only")) -> None:
    _debug["on"] = debug  # --server was taken by activate_remote before any command ran
    failures.set_debug(debug)


def build_command() -> TyperGroup:
    """The click command tree, with click's own help layout everywhere: rich's option tables cut long option
    names at 80 columns (``--exclude-targ…``); click's puts a long name on a line of its own instead."""
    command = typer.main.get_command(app)
    assert isinstance(command, TyperGroup)
    stack: list[Any] = [command]
    while stack:
        current = stack.pop()
        current.rich_markup_mode = None  # typer's commands and groups read it
        stack.extend((getattr(current, "commands", None) or {}).values())
    return command


def main() -> None:
    """Console-script entry point."""
    try:
        _main()
    finally:
        # The interpreter's last act is a full garbage collection over everything Prefect, pydantic and
        # SQLAlchemy allocated: measured at 1.2-1.9 s after `ferry deploy --wait` had printed its result.
        # Nothing is left to free at exit, so skip it (objects frozen now are never traversed again).
        gc.freeze()


def _main() -> None:
    # Prefect's ephemeral server would try to send telemetry; targets' networks are often closed.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    try:
        exit_codes.reset()
        fit_width()
        command = build_command()
        activate_remote(command, sys.argv[1:])  # remote mode: --server, and executor-only commands refused
        _adopt_local_prefect()
        command(standalone_mode=False)
    except FerryError as exc:
        if _debug["on"]:
            raise
        err_console.print(f"error: {exc}", markup=False)
        sys.exit(exit_codes.for_error(exc.exit_code, sys.argv[1:]))  # 3: refused before a deployment started
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted", markup=False)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors and the unexpected
        if _usage_error(exc):
            sys.exit(exc.exit_code)
        if _debug["on"]:
            raise
        err_console.print(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                          markup=False)
        sys.exit(2)


def _adopt_local_prefect() -> None:
    """Without PREFECT_API_URL, this FERRY_HOME's running local Prefect server is this command's Prefect API
    (``ferry serve``, links, following runs); a command that runs a flow starts it when it is not running."""
    from flows.cli.remote import server_url
    from flows.orchestration.local_prefect import adopt
    from snapshots.settings import Settings

    if server_url() is None:
        adopt(Settings.from_env().home)


def _usage_error(exc: Exception) -> TypeGuard[TyperException | click.ClickException]:
    """Print a command-line usage error as click's usage line plus one ``error:`` line; False if ``exc`` is not
    one. Typer bundles its own click (``typer._click``), whose exceptions derive from ``TyperException``, not
    from ``click.ClickException``: both are recognised."""
    import click  # typer does not load click itself: only when there is an error to look at

    if not isinstance(exc, TyperException | click.ClickException):
        return False
    ctx = getattr(exc, "ctx", None) or _context_from_argv(sys.argv[1:])
    if ctx is not None:
        err_console.print(ctx.get_usage(), markup=False)
    message = " ".join(exc.format_message().replace("Value error, ", "").split())
    err_console.print(f"error: {message}", markup=False)
    return True


def _context_from_argv(argv: list[str]) -> typer.Context | None:
    """The context of the command ``argv`` names, for its usage line: the parser raises some usage errors
    (``--to`` without a value, ``--json=yes``) with no context attached."""
    try:
        group = typer.main.get_command(app)
        ctx = group.make_context("ferry", [], resilient_parsing=True)
        for arg in argv:
            if arg.startswith("-"):
                continue
            command = (getattr(group, "commands", None) or {}).get(arg)
            if command is None:
                break
            ctx = command.make_context(arg, [], parent=ctx, resilient_parsing=True)
            group = command
        return ctx  # type: ignore[return-value]  # a click Context: only its usage line is read
    except Exception:  # best effort: the error line is what matters
        return None
