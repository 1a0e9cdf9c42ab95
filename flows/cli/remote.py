"""Remote mode: with ``FERRY_SERVER`` and ``FERRY_API_KEY`` set (or ``ferry --server URL``), the commands
that have a form on the ferry server API go through ``flows.client`` and never open the store, the master
key or the feed; every other command is refused with one line, because only the executor may run it.

The dispatch lives here once: ``activate`` (called by the root app before any command runs) reads
``--server`` and refuses executor-only commands; a command with a remote form starts with
``if (client := remote_client()) is not None: ...``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flows.cli import exit_codes, failures

if TYPE_CHECKING:
    from flows.client import FerryClient

REMOTE_COMMANDS = {
    ("package", "push"), ("package", "list"),
    ("release", "create"), ("release", "list"),
    ("deploy",), ("promote",), ("rollback",), ("status",),
    ("deployment", "list"), ("deployment", "show"), ("deployment", "answer"), ("deployment", "cancel"),
    ("deployment", "log"), ("deployment", "follow"), ("project", "list"), ("environment", "list"),
    ("runbook", "list"), ("runbook", "run"),
}
"""The command paths that have a form on the ferry server API."""

ANYWHERE = {("schema",)}
"""Commands that need neither the executor nor the server."""

TIMEOUT = 30.0
"""Seconds to wait for one answer of the server (a package upload waits longer for the server's check)."""

_state: dict[str, str | None] = {"server": None}


def server_url() -> str | None:
    """The ferry server this command talks to, or None when it runs as the executor."""
    return _state["server"] or os.environ.get("FERRY_SERVER") or None


def remote_client() -> FerryClient | None:
    """The client when remote mode is on, else None (the command runs against the local store). The key is
    read from ``FERRY_API_KEY`` only: never a command-line argument, which any user could read in ``ps``."""
    server = server_url()
    if server is None:
        return None
    from flows.client import FerryClient
    from snapshots.errors import ConfigError

    key = os.environ.get("FERRY_API_KEY", "").strip()
    if not key:
        raise ConfigError(f"remote mode (ferry server {server}) needs an API key in FERRY_API_KEY")
    if not server.startswith(("http://", "https://")):
        raise ConfigError(f"ferry server {server!r}: expected a URL such as http://127.0.0.1:4280")
    verify: bool | str = os.environ.get("FERRY_CA_BUNDLE") or True
    return FerryClient(server, key, timeout=TIMEOUT, verify=verify)


def activate(root: Any, argv: Sequence[str]) -> None:
    """Before any command runs: take ``--server`` from the root options and, in remote mode, refuse a
    command that has no remote form (one line, nothing opened). ``root`` is the click group of the app."""
    args = list(argv)
    path: list[str] = []
    group = root
    i = 0
    while i < len(args):
        arg = args[i]
        if not path and arg == "--server" and i + 1 < len(args):
            _state["server"] = args[i + 1]
            i += 2
            continue
        if not path and arg.startswith("--server="):
            _state["server"] = arg.split("=", 1)[1]
        elif not arg.startswith("-") and group is not None:
            command = (getattr(group, "commands", None) or {}).get(arg)  # typer vendors click: duck-type groups
            if command is None:
                break  # an argument, or an unknown command click will report
            path.append(arg)
            group = command if getattr(command, "commands", None) is not None else None
            if group is None:
                break
        i += 1
    if server_url() is None or not path or "--help" in args:
        return
    if tuple(path[:1]) in REMOTE_COMMANDS | ANYWHERE or tuple(path[:2]) in REMOTE_COMMANDS:
        return
    from snapshots.errors import ConfigError

    raise ConfigError(f"`ferry {' '.join(path)}` runs only on the executor (where the store and the master key "
                      f"are), not through the ferry server at {server_url()}: unset FERRY_SERVER to run it there")


def local_only(option: str) -> None:
    """Refuse an option that the API does not carry, in remote mode."""
    from snapshots.errors import ConfigError

    raise ConfigError(f"{option} is not available through the ferry server ({server_url()})")


TIMED_OUT = 124
"""Exit code when ``--timeout`` passes before the deployment finishes (as ``timeout(1)``)."""


def started(client: FerryClient, project: str, launched: dict[str, Any], wait: bool, *,
            timeout: float | None = None, cancel_on_timeout: bool = False) -> None:
    """After the server started a deployment: the same lines ``ferry deploy`` prints locally; with ``wait``
    its log streamed (polled every 0.2 s) and the exit code its result: 0 succeeded, 1 failed or cancelled,
    124 when ``timeout`` came first (after cancelling it with ``cancel_on_timeout``)."""
    import sys

    exit_codes.started()

    from flows.cli import json_result
    from flows.cli.output import err_console, say

    deployment_id = int(launched["deployment_id"])
    json_result.track(deployment_id, client=client, flow_run_id=launched.get("flow_run_id"),
                      flow_run_url=launched.get("flow_run_url"))
    say(f"deployment #{deployment_id}: {project} {launched.get('release')} → {launched.get('environment')}")
    if launched.get("flow_run_id"):
        name = launched.get("flow_run_name") or launched["flow_run_id"]
        say(f"flow run {name} of deploy-release/{project}  {launched.get('flow_run_url') or ''}".rstrip())
    if not wait:
        say(f"follow it with `ferry deployment show {deployment_id}` or in the Prefect UI")
        return

    def on_state(state: str) -> None:
        if state == "Paused":
            say(f"deployment #{deployment_id} is paused, waiting for a person: answer in the Prefect UI (Resume) "
                f"or with `ferry deployment answer {deployment_id} <action>`")

    def echo(line: Any) -> None:
        say(line.text())

    result = client.follow(deployment_id, echo, timeout=timeout, on_state=on_state)
    if not result.finished:
        if cancel_on_timeout:
            client.cancel(deployment_id)
            final = client.follow(deployment_id, echo, timeout=60, after=result.cursor)
            err_console.print(f"error: deployment #{deployment_id} timed out after {timeout:g}s and was cancelled "
                              f"(flow run {final.state})", markup=False)
        else:
            err_console.print(f"error: deployment #{deployment_id} did not finish within {timeout:g}s; it goes on "
                              f"({result.state})", markup=False)
        sys.exit(TIMED_OUT)
    shown = client.show_deployment(deployment_id)
    if result.ok:  # as locally: a redeploy that found every target current says it ran nothing
        say(f"deployment #{deployment_id} succeeded" + (": no change, nothing ran (--force redeploys)"
                                                         if shown.get("no_change") else ""))
        return
    failures.report(deployment_id, shown.get("results") or [])
    err_console.print(f"error: deployment #{deployment_id} {str(shown.get('state') or result.state).lower()}: "
                      f"{shown.get('error') or 'see its log'}", markup=False)
    sys.exit(1)
