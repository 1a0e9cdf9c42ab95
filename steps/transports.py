"""Open the right transport for a target: one session per target for the whole deployment."""

from __future__ import annotations

import contextlib
import tempfile
import threading
from pathlib import Path

from snapshots.errors import TransportError
from snapshots.model import Target
from steps.local import LocalTransport
from steps.transport import Transport


def open_transport(target: Target, *, home: Path) -> Transport:
    settings = target.transport
    if settings.kind == "local":
        return LocalTransport(target.name, settings.root)
    if settings.kind == "ssh":
        from steps.ssh import SshTransport

        return SshTransport.for_target(target, home=home)  # type: ignore[attr-defined,no-any-return]
    if settings.kind == "winrm":
        from steps.winrm import WinRmTransport

        return WinRmTransport.for_target(target, home=home)  # type: ignore[attr-defined,no-any-return]
    raise TransportError(f"unknown transport kind {settings.kind!r}", target=target.name, operation="connect")


class TransportPool:
    """Opens each target's session on first use and keeps it until the deployment ends."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._open: dict[str, Transport] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._worker: LocalTransport | None = None
        self._worker_dir: tempfile.TemporaryDirectory[str] | None = None

    def get(self, target: Target) -> Transport:
        with self._guard:
            lock = self._locks.setdefault(target.name, threading.Lock())
        with lock:
            if target.name not in self._open:
                self._open[target.name] = open_transport(target, home=self.home)
            return self._open[target.name]

    def worker(self) -> LocalTransport:
        """The worker's own shell, for ``run_on: worker`` and ``worker-for-each-target`` steps."""
        with self._guard:
            if self._worker is None:
                self._worker_dir = tempfile.TemporaryDirectory(prefix="ferry-worker-")
                self._worker = LocalTransport("worker", self._worker_dir.name)
            return self._worker

    def close(self) -> None:
        for transport in self._open.values():
            with contextlib.suppress(Exception):  # best effort: the deployment's result is already decided
                transport.close()
        self._open.clear()
        if self._worker is not None:
            self._worker.close()
        if self._worker_dir is not None:
            self._worker_dir.cleanup()
