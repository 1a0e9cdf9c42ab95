"""The options every command that starts a deployment takes — ``deploy``, ``promote``, ``rollback`` — defined
once: a CI job that adds ``--timeout 600`` to its ``promote --wait`` does not hang forever."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import typer

from snapshots.errors import ConfigError

TARGET = typer.Option([], "--target", help="Only these targets")
EXCLUDE_TARGET = typer.Option([], "--exclude-target", help="Leave these targets out")
SKIP = typer.Option([], "--skip", help="Skip these steps (not required ones)")
VARIABLE = typer.Option([], "--variable", help="Prompted variable NAME=VALUE; NAME alone: read the value from the "
                                               "terminal or stdin")
GUIDED_FAILURE = typer.Option(None, "--guided-failure/--no-guided-failure",
                              help="Pause and ask on failure (default: environment's)")
WAIT = typer.Option(False, "--wait", help="Stream the log until it ends; exit code = result (0 succeeded, 1 failed, "
                                          "3 refused, 124 timed out)")
TIMEOUT = typer.Option(None, "--timeout", min=1, help="With --wait: stop waiting after SECONDS (exit code 124)")
CANCEL_ON_TIMEOUT = typer.Option(False, "--cancel-on-timeout", help="Cancel the deployment when --timeout passes")
JSON = typer.Option(False, "--json", help="Print one ferry/v1 JSON document on stdout (human lines go to stderr): "
                                           "the result with --wait, the started deployment without; the plan "
                                           "with --plan")


@dataclass
class RunOptions:
    """The shared options as one value: applied to the request a command built, and sent to a ferry server."""

    targets: list[str] = field(default_factory=list)
    exclude_targets: list[str] = field(default_factory=list)
    skip_steps: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    guided_failure: bool | None = None
    timeout: float | None = None
    cancel_on_timeout: bool = False

    def __post_init__(self) -> None:
        if self.cancel_on_timeout and self.timeout is None:
            raise ConfigError("--cancel-on-timeout needs --timeout SECONDS")

    def options(self) -> dict[str, Any]:
        """As deploy options: for ``promote_request``/``rollback_request`` and the ferry server API."""
        return {"targets": self.targets, "exclude_targets": self.exclude_targets, "skip_steps": self.skip_steps,
                "variables": self.variables, "guided_failure": self.guided_failure}

    def waits(self) -> bool:
        """``--timeout`` implies waiting."""
        return self.timeout is not None
