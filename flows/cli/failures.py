"""Failures that read like failures: per failed target one line (``step · target: reason (exit code N) | last
output: …``) and where its log is, instead of Prefect's task and flow tracebacks (shown only with ``--debug``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flows.cli.output import say

_debug = {"on": False}


def set_debug(on: bool) -> None:
    """``ferry --debug``: tracebacks are shown, Prefect's included."""
    _debug["on"] = on


def debug_on() -> bool:
    """Was ``--debug`` given (a child process the CLI starts keeps its tracebacks then)?"""
    return _debug["on"]


def quiet_prefect_console() -> None:
    """Without ``--debug``, Prefect's console output in this process carries no tracebacks (its API log, which
    the Prefect UI shows, keeps them)."""
    if _debug["on"]:
        return
    from flows.orchestration.quiet_console import quiet_prefect_console as quiet  # imports Prefect when it runs

    quiet()


def failed_lines(results: Iterable[dict[str, Any]]) -> list[str]:
    """One line per failed (step, target): ``step · target: reason``."""
    lines = []
    for result in results:
        if str(result.get("state", "")).lower() != "failed":
            continue
        where = f"{result['step']} · {result['target']}" if result.get("target") else str(result["step"])
        message = str(result.get("message") or "failed")
        lines.append(message if message.startswith(where) else f"{where}: {message}")
    return lines


def report(deployment_id: int, results: Iterable[dict[str, Any]], log_file: Path | None = None) -> None:
    """Print the failed targets and where the whole log is (before the command's one ``error:`` line)."""
    for line in failed_lines(results):
        say(f"failed: {line}")
    where = str(log_file) if log_file is not None and log_file.exists() else f"ferry deployment log {deployment_id}"
    say(f"log: {where}")
