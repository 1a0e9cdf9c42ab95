"""``ferry ARGS`` run in the test process, through the console script's own ``_main`` (its error lines, exit
codes, ``--debug`` and remote mode), without a Python start-up per command: 1–2 s of wall time each on a
loaded two-core machine, thousands of times in the suite.

Only commands that neither run a Prefect flow nor serve anything run here (``IN_PROCESS``); the others keep
their own process, as a user's would, so a flow's signal handlers, threads and Prefect settings never leak
into the test process.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from collections.abc import Iterator, Mapping

IN_PROCESS = {"apply", "schema", "package", "release", "status", "api-key", "key", "cert", "project",
              "environment", "target", "deployment", "runbook"}
"""First words whose commands are safe here, less the exceptions in ``runs_here``."""
OWN_PROCESS = {("runbook", "run"), ("deployment", "answer"), ("deployment", "cancel"), ("deployment", "follow"),
               ("deployment", "log"), ("target", "check")}
"""Sub-commands that start, steer or watch runs, or open many connections: their own process."""


def runs_here(args: list[str] | tuple[str, ...], env: Mapping[str, str | None] | None) -> bool:
    """Whether ``ferry ARGS`` can run in this process and behave exactly as the console script would."""
    words = [a for a in args if not a.startswith("-")]
    if not words or words[0] not in IN_PROCESS or tuple(words[:2]) in OWN_PROCESS:
        return False
    if "--deploy-to" in args or any(a.startswith("--deploy-to=") for a in args):
        return False  # release create --deploy-to runs deployments
    # Prefect reads its settings when imported: a command given another Prefect server runs on its own.
    return not any(key.startswith("PREFECT_") and value != os.environ.get(key) for key, value in (env or {}).items())


def whole_environment(env: Mapping[str, str]) -> dict[str, str | None]:
    """What to change in this process's environment so that ferry sees ``env`` as a subprocess given exactly
    ``env`` would (its FERRY_* settings; the rest of a test process's environment does not concern ferry)."""
    return {**{key: None for key in os.environ if key.startswith("FERRY_") and key not in env}, **env}


@contextlib.contextmanager
def _environment(env: Mapping[str, str | None]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    try:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def run_main(args: list[str] | tuple[str, ...], env: Mapping[str, str | None] | None = None,
             stdin: str = "") -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``ferry ARGS`` run by the console script's ``_main`` in this process."""
    cli_app = importlib.import_module("flows.cli.app")  # the module (flows.cli exports the Typer app as ``app``)
    remote = importlib.import_module("flows.cli.remote")

    cli_app._debug["on"] = False
    remote._state["server"] = None
    saved_argv, saved_stdin = sys.argv, sys.stdin
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        with _environment(env or {}):
            sys.argv = ["ferry", *args]
            sys.stdin = io.StringIO(stdin)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    cli_app._main()
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv, sys.stdin = saved_argv, saved_stdin
    return code, out.getvalue(), err.getvalue()
