"""``--json`` on the commands that start deployments (``deploy``, ``promote``, ``rollback``, ``release create
--deploy-to``): one ferry/v1 ``deployment-result`` document on stdout, whatever happens.

While the command runs, everything it would print for a person (progress, streamed log lines, notes) goes to
stderr, so stdout parses as one JSON document: with ``--wait`` the outcome when the deployment(s) ended (state,
per step and target results with their masked messages, when, where the log is), without it the started
deployment's id and flow run; a refusal, a failure, a timeout end with the same document carrying the exit code
(0 succeeded/started, 1 failed or cancelled, 3 refused before start, 124 ``--timeout`` passed) and the one
``error:`` line still goes to stderr. The same code serves local runs and remote mode (``FERRY_SERVER``): each
started deployment is ``track``-ed with where to read it back (the store, or the ferry server's API).

``flows.cli.result_schema`` describes the document as a JSON Schema (``ferry schema deployment-result``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from flows.cli import exit_codes
from flows.cli.output import SCHEMA, json_sink
from snapshots.errors import FerryError

if TYPE_CHECKING:
    from flows.client import FerryClient

KIND = "deployment-result"
"""The document's ``kind``: the same for every command that starts deployments."""

EXIT_MEANINGS = {
    exit_codes.SUCCEEDED: "succeeded (without --wait: started)",
    exit_codes.FAILED: "the deployment failed or was cancelled",
    exit_codes.REFUSED: "refused before start: nothing ran",
    exit_codes.TIMED_OUT: "--timeout passed before the deployment ended",
}
"""What each exit code means, carried in the document so a CI log explains itself."""


@dataclass
class _Tracked:
    deployment_id: int
    client: FerryClient | None = None
    flow_run_id: str | None = None
    flow_run_url: str | None = None


@dataclass
class _Run:
    command: str
    waited: bool
    stdout: TextIO
    tracked: list[_Tracked] = field(default_factory=list)
    parts: dict[str, Any] = field(default_factory=dict)


_runs: list[_Run] = []


def active() -> bool:
    """Is a ``--json`` result document being built (so human lines go to stderr)?"""
    return bool(_runs)


def track(deployment_id: int, *, client: FerryClient | None = None, flow_run_id: str | None = None,
          flow_run_url: str | None = None) -> None:
    """A deployment this command started: the document reports it (read back from the store, or through
    ``client`` in remote mode)."""
    if _runs:
        _runs[-1].tracked.append(_Tracked(deployment_id, client, flow_run_id, flow_run_url))


@contextmanager
def result_document(on: bool, command: str, waited: bool) -> Iterator[None]:
    """Around a command that starts deployments: with ``on`` (``--json``), print its result document at the end
    and send everything else it prints to stderr."""
    if not on:
        yield
        return
    run = _Run(command, waited, sys.stdout)
    _runs.append(run)
    json_sink.append(run.parts.update)  # release create's own document becomes part of this one
    try:
        with redirect_stdout(sys.stderr):
            yield
    except SystemExit as exc:
        _end(run, exc.code if isinstance(exc.code, int) else exit_codes.FAILED, None)
        raise
    except FerryError as exc:
        _end(run, exit_codes.refused_or(exc.exit_code), str(exc))
        raise
    except BaseException:
        _end(run, None, None)
        raise
    _end(run, exit_codes.SUCCEEDED, None)


def _end(run: _Run, code: int | None, error: str | None) -> None:
    """Stop collecting; print the document unless the command ended in something unforeseen (``code`` None)."""
    json_sink.pop()
    _runs.pop()
    if code is not None:
        _write(run.stdout, document(run, code, error))


def document(run: _Run, code: int, error: str | None) -> dict[str, Any]:
    """The ``deployment-result`` document (see ``flows.cli.result_schema``)."""
    deployments = [_deployment(t) for t in run.tracked]
    states = [str(d.get("state") or "") for d in deployments]
    if code == exit_codes.SUCCEEDED:
        outcome = "succeeded" if run.waited else "started"
    elif code == exit_codes.REFUSED:
        outcome = "refused"
    elif code == exit_codes.TIMED_OUT:
        outcome = "timed_out"
    elif code == exit_codes.FAILED:
        outcome = "cancelled" if states and states[-1] == "Cancelled" else "failed"
    else:
        outcome = "error"
    if error is None and code != exit_codes.SUCCEEDED:
        error = next((str(d["error"]) for d in reversed(deployments) if d.get("error")), None)
    parts = {k: v for k, v in run.parts.items() if k != "schema"}
    return {"schema": SCHEMA, "kind": KIND, "command": run.command, "waited": run.waited, "outcome": outcome,
            "exit_code": code, "exit_meaning": EXIT_MEANINGS.get(code, "error"), "error": error,
            "deployments": deployments, **({"release": parts} if parts else {})}


def _deployment(tracked: _Tracked) -> dict[str, Any]:
    """One deployment as the document reports it, read back from where it is recorded."""
    deployment_id = tracked.deployment_id
    if tracked.client is not None:
        shown = tracked.client.show_deployment(deployment_id)
        log = f"ferry deployment log {deployment_id}"
    else:
        shown, log = _local(deployment_id)
    flow_run_id = tracked.flow_run_id or shown.get("flow_run_id")
    url = tracked.flow_run_url
    if url is None and flow_run_id:
        from flows.orchestration.served_runs import run_url

        url = run_url(flow_run_id) or None
    return {"deployment_id": deployment_id, "kind": shown.get("kind") or "deployment",
            "project": shown.get("project"), "release": shown.get("version"),
            "environment": shown.get("environment"), "state": shown.get("state"),
            "no_change": bool(shown.get("no_change")), "error": shown.get("error"),
            "created_by": shown.get("created_by"), "created_at": shown.get("created_at"),
            "started_at": shown.get("started_at"), "finished_at": shown.get("finished_at"),
            "flow_run_id": str(flow_run_id) if flow_run_id else None, "flow_run_url": url, "log": log,
            "results": [{k: r.get(k) for k in ("step", "target", "state", "attempts", "message", "started_at",
                                               "finished_at")} for r in shown.get("results") or []]}


def _local(deployment_id: int) -> tuple[dict[str, Any], str]:
    """The record and its results from the store (messages as recorded: sensitive values already masked)."""
    from snapshots.store import records
    from snapshots.workspace import Workspace

    ctx = Workspace()
    with ctx.store.read() as conn:
        shown = {**records.get(conn, deployment_id).as_dict(),
                 "results": [r.as_dict() for r in records.results(conn, deployment_id)]}
    path = ctx.settings.home / "logs" / f"deployment-{deployment_id}.log"
    return shown, str(path) if path.exists() else f"ferry deployment log {deployment_id}"


def _write(stdout: TextIO, doc: dict[str, Any]) -> None:
    stdout.write(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
    stdout.flush()
