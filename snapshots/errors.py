"""ferry's error hierarchy.

Every error a person can cause or fix is a ``FerryError``; the CLI prints its one-line ``str()`` and exits
non-zero. Subclasses carry the fields a person needs to act (file and path, target and operation, …).
"""

from __future__ import annotations

from dataclasses import dataclass


class FerryError(Exception):
    """Root of every error ferry reports to a person as one clear line."""

    exit_code: int = 1


class ConfigError(FerryError):
    """A YAML file, a field in it, or a reference between files is wrong."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 path: str | None = None) -> None:
        self.file, self.line, self.path, self.detail = file, line, path, message
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        if path:
            where += f"{path}: "
        super().__init__(f"{where}{message}")


class NotFoundError(FerryError):
    """A named project, release, package, environment or deployment does not exist."""


class ConflictError(FerryError):
    """The request contradicts what is already stored (duplicate version, changed package bytes, …)."""


class ServerUnreachable(FerryError):
    """The ferry server (``FERRY_SERVER``) could not be reached or did not answer in time."""


class PrefectUnreachable(FerryError):
    """The Prefect API is configured but does not answer (an ``httpx`` transport error)."""


class LifecycleError(FerryError):
    """A release may not enter an environment yet: an earlier lifecycle phase is not satisfied."""


class ChannelRuleError(FerryError):
    """A package version does not satisfy the rules of the release's channel (version range, pre-release tag)."""


class DeploymentFrozen(FerryError):
    """A deployment would start inside a deployment freeze (``freezes:`` of the infrastructure) and no
    ``--override-freeze`` was given. Exit code 3: refused before anything started."""

    exit_code = 3

    def __init__(self, message: str, *, freeze: str, until: str) -> None:
        self.freeze, self.until = freeze, until
        super().__init__(message)


class SnapshotIntegrityError(FerryError):
    """A stored snapshot or package no longer matches its recorded sha256 digest."""


class TemplateError(FerryError):
    """A ``#{...}`` expression is malformed or names a variable that does not exist. ``variable``,
    ``line`` and ``column`` say where, when known (the message says it too)."""

    def __init__(self, message: str, *, variable: str | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        self.variable, self.line, self.column = variable, line, column
        super().__init__(message)


class TransportError(FerryError):
    """Talking to a target failed (connect, authenticate, run, upload)."""

    def __init__(self, message: str, *, target: str, operation: str) -> None:
        self.target, self.operation = target, operation
        super().__init__(f"{target}: {operation}: {message}")


class ConnectionLost(TransportError):
    """The connection to a target dropped while a script ran there (the remote wrapper ends the script's
    process group when it notices). The engine names the step: "connection to T lost during S"."""

    def __init__(self, detail: str = "", *, target: str) -> None:
        self.detail = detail
        super().__init__(f"connection lost while the script ran{': ' + detail if detail else ''}", target=target,
                         operation="run")


class StepFailed(FerryError):
    """A step failed on a target; carries the script's exit code and the last lines of output.

    The script's code is ``script_exit_code``: ``exit_code`` stays the CLI's (a step's ``exit 0`` or
    ``None`` must not make ``ferry`` exit 0 on a failure)."""

    def __init__(self, message: str, *, step: str, target: str | None = None,
                 exit_code: int | None = None, output_tail: list[str] | None = None) -> None:
        self.step, self.target, self.script_exit_code = step, target, exit_code
        self.output_tail = output_tail or []
        where = f"{step} · {target}" if target else step
        code = f" (exit code {exit_code})" if exit_code is not None else ""
        super().__init__(f"{where}: {message}{code}")


class AccessDenied(FerryError):
    """A requester's API key is missing, unknown, expired or revoked (``status`` 401), or does not allow
    what was asked (403). Exit code 3: refused before anything started."""

    exit_code = 3

    def __init__(self, message: str, *, status: int = 403) -> None:
        self.status = status
        super().__init__(message)


class StoreError(FerryError):
    """The store cannot be opened or refused an operation."""


class MasterKeyError(FerryError):
    """The master key is missing, malformed, or not the one the data was encrypted with."""


class LoadBalancerError(FerryError):
    """The balancer refused a command, a node is unreachable, or a server never drained / came UP in time."""

    def __init__(self, message: str, *, backend: str | None = None, server: str | None = None,
                 node: str | None = None) -> None:
        self.backend, self.server, self.node = backend, server, node
        super().__init__(message)


class HttpCheckFailed(FerryError):
    """The URL never answered as expected in time; carries the last status and body start (or error)."""

    def __init__(self, message: str, *, url: str, last_status: int | None, last_body: str | None,
                 last_error: str | None, attempts: int) -> None:
        self.url, self.last_status, self.last_body = url, last_status, last_body
        self.last_error, self.attempts = last_error, attempts
        super().__init__(message)


class LabError(FerryError):
    """The lab cannot start or stop: not root, a Debian package missing, an address in use, a daemon failing."""


@dataclass(frozen=True)
class StepOutcome:
    """How one step ended on one target (``target`` is None for a step that runs once on the worker)."""

    step: str
    target: str | None
    state: str
    message: str | None = None


class DeploymentFailed(FerryError):
    """The deployment ran and failed. Like fabric's ``GroupException`` carrying its ``GroupResult``, it
    carries every step's outcome per target, so a caller can tell which targets failed and why without
    parsing the message."""

    def __init__(self, message: str, *, deployment_id: int, outcomes: list[StepOutcome]) -> None:
        self.deployment_id, self.outcomes = deployment_id, outcomes
        super().__init__(message)

    @property
    def failed(self) -> list[StepOutcome]:
        """The outcomes that are failures (not successes, skips or steps never started)."""
        return [o for o in self.outcomes if o.state.lower() in ("failed", "failure", "timedout", "aborted")]


class CertificateError(FerryError):
    """A certificate cannot be read (missing file, wrong password, a key that is not its own) or may not be
    deployed (expired)."""


class TargetsUnavailable(FerryError):
    """``ferry target check`` found targets it could not reach (each one's reason is printed above)."""


class FeedError(FerryError):
    """An external package feed cannot be used: unreachable, refused the credentials, has no such package or
    version, or served bytes that differ from the sha256 a release pinned."""
