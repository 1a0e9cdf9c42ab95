"""`ferry` called in this test process (click's CliRunner on the real command tree) for tests that run many
commands: the same output and exit codes as the console script, without a Python start-up per command (1.5 s
of CPU each, far more wall time on a loaded machine)."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner

from flows.cli import exit_codes
from flows.cli.app import build_command
from flows.cli.output import fit_width
from snapshots.errors import FerryError
from tests.conftest import CliResult


def run_in_process(*args: str) -> CliResult:
    """As the ``ferry`` fixture: a FerryError becomes ``error: <message>`` on stderr and its exit code."""
    exit_codes.reset()  # as main() does for each command line
    fit_width()
    command: Any = build_command()  # a click Group (typer's own click types it apart)
    result: Any = CliRunner().invoke(command, list(args), catch_exceptions=True,
                                     standalone_mode=False)
    stderr = result.stderr
    code = result.exit_code
    if isinstance(result.exception, FerryError):
        stderr += f"error: {result.exception}\n"
        code = exit_codes.for_error(result.exception.exit_code, list(args))  # 3: refused before any started
    elif result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    elif isinstance(result.exception, SystemExit):
        code = result.exception.code if isinstance(result.exception.code, int) else 1
    return CliResult(code, result.stdout, stderr)
