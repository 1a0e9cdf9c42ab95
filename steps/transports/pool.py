"""Open the right transport for a target: one session per target for the whole deployment."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from snapshots.errors import TransportError
from snapshots.model import Target
from steps.scratch import private_tempdir
from steps.transports.local import LocalTransport
from steps.transports.protocol import Transport


def open_transport(target: Target, *, home: Path) -> Transport:
    settings = target.transport
    if settings.kind == "local":
        return LocalTransport(target.name, settings.root)
    # paramiko and pywinrm load only when a deployment has such a target (a local-only run never needs them)
    if settings.kind == "ssh":
        from steps.transports.ssh import SshTransport

        return SshTransport.for_target(target, home=home)
    if settings.kind == "winrm":
        from steps.transports.winrm import WinRmTransport

        return WinRmTransport.for_target(target, home=home)
    raise TransportError(f"unknown transport kind {settings.kind!r}", target=target.name, operation="connect")


PREFETCH_FRESH = 5.0
"""Seconds a failed connection attempt made ahead of time stays the answer (see ``TransportPool.prefetch``)."""


class TransportPool:
    """Opens each target's session on first use (or ahead of it, see ``prefetch``) and keeps it until the
    deployment ends."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._open: dict[str, Transport] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._worker: LocalTransport | None = None
        self._worker_dir: tempfile.TemporaryDirectory[str] | None = None
        self._prefetcher: ThreadPoolExecutor | None = None
        self._prefetch_failed: dict[str, tuple[float, Exception]] = {}
        self._closing = threading.Event()

    def get(self, target: Target) -> Transport:
        with self._guard:
            lock = self._locks.setdefault(target.name, threading.Lock())
        with lock:
            if target.name not in self._open:
                with self._guard:
                    failed = self._prefetch_failed.pop(target.name, None)
                if failed is not None and time.monotonic() - failed[0] < PREFETCH_FRESH:
                    raise failed[1]  # it just failed (perhaps while we waited for that very attempt)
                self._open[target.name] = open_transport(target, home=self.home)
            return self._open[target.name]

    def prefetch(self, targets: Sequence[Target], parallel: int = 4) -> None:
        """Open the sessions of ``targets`` in the background, ``parallel`` at a time, in their order — so a
        target's turn in a rolling step does not begin with TCP, key exchange and authentication (~0.1 s over
        SSH, in the rollout's critical path once per target). A step needing a session still being opened
        waits for that attempt. A failure is not reported here: the target's first step gets it if it is
        fresh (under ``PREFETCH_FRESH`` seconds old), else tries again itself."""
        todo = [t for t in targets if t.name not in self._open]
        if not todo or self._closing.is_set():
            return
        with self._guard:
            if self._prefetcher is None:
                self._prefetcher = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="ferry-connect")
            prefetcher = self._prefetcher
        for target in todo:
            prefetcher.submit(self._prefetch_one, target)

    def _prefetch_one(self, target: Target) -> None:
        if self._closing.is_set():
            return
        try:
            self.get(target)
        except Exception as exc:  # reported by the target's own step, not here
            with self._guard:
                self._prefetch_failed[target.name] = (time.monotonic(), exc)

    def worker(self) -> LocalTransport:
        """The worker's own shell, for ``run_on: worker`` and ``worker-for-each-target`` steps."""
        with self._guard:
            if self._worker is None:
                self._worker_dir = private_tempdir("worker")
                self._worker = LocalTransport("worker", self._worker_dir.name)
            return self._worker

    def close(self) -> None:
        self._closing.set()
        if self._prefetcher is not None:  # let an attempt in flight finish, so its session is closed below
            self._prefetcher.shutdown(wait=True, cancel_futures=True)
        def close_one(transport: Transport) -> None:
            with contextlib.suppress(Exception):  # best effort: the deployment's result is already decided
                transport.close()

        sessions = list(self._open.values())
        if len(sessions) > 1:  # each close is a round trip or two (temp dir removed, channel closed): overlap them
            with ThreadPoolExecutor(max_workers=min(8, len(sessions)), thread_name_prefix="ferry-close") as closer:
                list(closer.map(close_one, sessions))
        else:
            for transport in sessions:
                close_one(transport)
        self._open.clear()
        if self._worker is not None:
            self._worker.close()
        if self._worker_dir is not None:
            self._worker_dir.cleanup()
