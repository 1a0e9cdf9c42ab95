"""ferry's error hierarchy.

Every error a person can cause or fix is a ``FerryError``; the CLI prints its one-line ``str()`` and exits
non-zero. Subclasses carry the fields a person needs to act (file and path, target and operation, …).
"""

from __future__ import annotations


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


class LifecycleError(FerryError):
    """A release may not enter an environment yet: an earlier lifecycle phase is not satisfied."""


class SnapshotIntegrityError(FerryError):
    """A stored snapshot or package no longer matches its recorded sha256 digest."""


class TemplateError(FerryError):
    """A ``#{...}`` expression is malformed or names a variable that does not exist."""


class TransportError(FerryError):
    """Talking to a target failed (connect, authenticate, run, upload)."""

    def __init__(self, message: str, *, target: str, operation: str) -> None:
        self.target, self.operation = target, operation
        super().__init__(f"{target}: {operation}: {message}")


class StepFailed(FerryError):
    """A step failed on a target; carries the exit code and the last lines of output."""

    def __init__(self, message: str, *, step: str, target: str | None = None,
                 exit_code: int | None = None, output_tail: list[str] | None = None) -> None:
        self.step, self.target, self.exit_code = step, target, exit_code
        self.output_tail = output_tail or []
        where = f"{step} · {target}" if target else step
        code = f" (exit code {exit_code})" if exit_code is not None else ""
        super().__init__(f"{where}: {message}{code}")
