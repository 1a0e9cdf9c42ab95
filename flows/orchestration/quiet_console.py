"""Prefect's console output without Python tracebacks: a failed task or flow is reported once, by ferry, per
target (``flows.cli.failures``), not as a crash. Used by the CLI's own process (``deploy --wait``) and by the
child process ``--timeout`` starts (``flows.orchestration.local_runs``); ``--debug`` keeps them. Prefect's API
log, which the Prefect UI shows, keeps them always."""

from __future__ import annotations

import logging

CHILD_TRACEBACKS = "FERRY_CHILD_TRACEBACKS"
"""Set to ``1`` in a child's environment when the command line had ``--debug``: the child keeps tracebacks."""


class NoTraceback(logging.Filter):
    """Keeps a record's first line and drops its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        message = record.getMessage()
        if "Traceback (most recent call last)" in message:
            record.msg, record.args = message.split("Traceback (most recent call last)")[0].rstrip() or "failed", ()
        return True


def quiet_prefect_console() -> None:
    """Filter every stream handler of the root and Prefect loggers in this process."""
    import prefect.main  # noqa: F401  # sets Prefect's handlers up; set up here first, they were set up twice (0.1 s)
    from prefect.logging import configuration

    if not configuration.PROCESS_LOGGING_CONFIG:
        configuration.setup_logging()  # later set-ups are incremental: they keep these handlers
    names = [name for name in logging.Logger.manager.loggerDict if name == "prefect" or name.startswith("prefect.")]
    for logger in [logging.getLogger(), *(logging.getLogger(name) for name in names)]:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not any(isinstance(f, NoTraceback)
                                                                      for f in handler.filters):
                handler.addFilter(NoTraceback())
