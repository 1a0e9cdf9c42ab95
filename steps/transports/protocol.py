"""What a step needs from a target: run a script, upload a file, close. One session per target.

Transports (local, ssh, winrm) implement ``Transport``. Values reach scripts as *data* — environment
variables or a JSON document — never spliced into script source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

LineSink = Callable[[str], None]
"""Receives each output line (already split, no trailing newline) as it arrives."""


@dataclass
class RunResult:
    exit_code: int
    output_tail: list[str] = field(default_factory=list)
    """The last lines of combined output, for error messages."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Transport(Protocol):
    """One open session to one target for the whole deployment."""

    target: str

    def run(self, script: str, *, env: Mapping[str, str] | None = None, data: Mapping[str, Any] | None = None,
            cwd: str | None = None, timeout: float | None = None, on_line: LineSink | None = None) -> RunResult:
        """Run ``script`` (bash for ssh/local, PowerShell for winrm).

        ``env`` become environment variables; ``data`` is written as a JSON file whose path is in
        ``FERRY_DATA`` (bash) or passed as ``$FerryData`` (PowerShell). ``timeout`` kills the script and
        raises ``TransportError``."""
        ...

    def upload(self, local: Path, remote: str, sha256: str) -> bool:
        """Put ``local`` at ``remote`` unless the target already holds a file with that sha256 there.
        Returns True when bytes were sent. Verifies the sha256 on arrival."""
        ...

    def read_file(self, remote: str) -> bytes | None:
        """A small file's bytes, or None when it does not exist (relative paths: the target's home)."""
        ...

    def write_file(self, remote: str, data: bytes, mode: int | None = None) -> None:
        """Replace a small file atomically, creating its folder. ``mode``: the new file's permission bits, set
        before any byte is written (POSIX targets; None keeps an existing file's; Windows: the folder's ACL
        is inherited)."""
        ...

    def close(self) -> None: ...
