"""Failures that read like failures: per failed target one line (``step · target: reason (exit code N) | last
output: …``) and where its log is, instead of Prefect's task and flow tracebacks (shown only with ``--debug``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flows.cli.output import say

_debug = {"on": False}


def set_debug(on: bool) -> None:
    """``ferry --debug``: tracebacks are shown, Prefect's included."""
    _debug["on"] = on


class _NoTraceback(logging.Filter):
    """Keeps a record's first line and drops its traceback: the failure is reported once, by ferry, per target."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        message = record.getMessage()
        if "Traceback (most recent call last)" in message:
            record.msg, record.args = message.split("Traceback (most recent call last)")[0].rstrip() or "failed", ()
        return True


def quiet_prefect_console() -> None:
    """Without ``--debug``, Prefect's console output in this process carries no tracebacks (its API log, which
    the Prefect UI shows, keeps them)."""
    if _debug["on"]:
        return
    from prefect.logging import configuration  # Prefect sets its handlers up once, lazily: do it now to filter them

    if not configuration.PROCESS_LOGGING_CONFIG:
        configuration.setup_logging()  # later set-ups are incremental: they keep these handlers
    names = [name for name in logging.Logger.manager.loggerDict if name == "prefect" or name.startswith("prefect.")]
    for logger in [logging.getLogger(), *(logging.getLogger(name) for name in names)]:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not any(isinstance(f, _NoTraceback)
                                                                      for f in handler.filters):
                handler.addFilter(_NoTraceback())


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
