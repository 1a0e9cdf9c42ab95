"""Pre-started interpreters for ``ferry serve``, so a flow run does not wait for Python and Prefect to load.

Prefect's runner starts every served flow run in a fresh *spawned* interpreter. Measured on this
project's 2-core machines, the spawn — importing Prefect, SQLAlchemy and ferry before the first line of
the flow — was ~3 s of the ~4.5 s between a REST ``create_flow_run`` and the first task starting. A warm
process has already done those imports and is waiting on a pipe; the runner's call becomes "send the
run to it", and a replacement is started a few seconds later for the next run.

How it plugs in: ``prefect.flow_engine.run_flow_in_subprocess`` (what the runner calls for a served flow)
builds its payload and then does ``multiprocessing.get_context("spawn").Process(target, args).start()``.
``install()`` swaps the ``multiprocessing`` name *in that module only* for a shim whose spawn context
hands out an already-running warm process whose ``start()`` sends ``(target, args)`` down its pipe. The
runner gets back a genuine ``SpawnProcess`` (pid, join, exit code, kill: cancellation works unchanged).
Everything else Prefect does — payload, environment, control channel, hooks — is untouched. The shim is
checked against the pinned Prefect (3.9.1); if that code ever changes shape, ``install()`` refuses and the
runner keeps Prefect's own cold spawn.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import multiprocessing
import multiprocessing.connection
import threading
import types
from typing import Any

logger = logging.getLogger("ferry.warm")

PRELOAD = ("prefect.flow_engine", "prefect.task_engine", "prefect.flows", "prefect.tasks", "prefect.results",
           "prefect.artifacts", "prefect.concurrency.sync", "prefect.events.clients", "prefect.logging.handlers",
           "flows.orchestration.deploy_flow", "flows.orchestration.served_flows", "flows.orchestration.execution",
           "flows.engine.plan",
           "snapshots.workspace",
           "steps.transports.ssh", "steps.kinds.package", "steps.kinds.http_check", "steps.kinds.script")
"""Modules a served ferry flow needs anyway; importing them early is the whole point (the SSH transport and
the common step kinds, which a flow imports at its first target, took ~0.25 s of its start)."""


def _warm_main(conn: multiprocessing.connection.Connection, preload: tuple[str, ...]) -> None:
    """A warm process: import, then run exactly one (target, args) received on the pipe, then exit."""
    for name in preload:
        with contextlib.suppress(Exception):  # a module that fails here fails again, with its error, in the flow
            importlib.import_module(name)
    try:
        message = conn.recv()
    except EOFError:  # the pool was shut down
        return
    conn.close()
    if message is None:
        return
    target, args = message
    target(*args)


class WarmPool:
    """Keeps ``size`` spawned processes importing/ready; ``take()`` returns one, and a replacement is started
    ``refill_delay`` seconds later — not at once, because on a 2-core machine a replacement importing
    Prefect next to the run that was just handed over slowed that run's start by ~0.4 s (measured)."""

    def __init__(self, size: int = 1, preload: tuple[str, ...] = PRELOAD, refill_delay: float = 4.0) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._size = size
        self._preload = preload
        self._refill_delay = refill_delay
        self._ready: list[tuple[Any, multiprocessing.connection.Connection]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._timer: threading.Timer | None = None
        with self._lock:
            for _ in range(size):
                self._ready.append(self._spawn())

    def _spawn(self) -> tuple[Any, multiprocessing.connection.Connection]:
        reader, writer = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(target=_warm_main, args=(reader, self._preload), name="ferry-warm",
                                    daemon=False)
        process.start()
        reader.close()
        return process, writer

    def take(self) -> tuple[Any, multiprocessing.connection.Connection] | None:
        with self._lock:
            if self._closed:
                return None
            taken = None
            while self._ready and taken is None:
                process, conn = self._ready.pop(0)
                if process.is_alive():
                    taken = (process, conn)
                else:  # died while waiting (killed by someone): drop it
                    conn.close()
            if taken is None:  # a burst used them all: this one starts cold, as Prefect's own spawn would
                taken = self._spawn()
            if self._timer is None or not self._timer.is_alive():
                self._timer = threading.Timer(self._refill_delay, self._refill)
                self._timer.daemon = True
                self._timer.start()
        return taken

    def _refill(self) -> None:
        with self._lock:
            while not self._closed and len(self._ready) < self._size:
                self._ready.append(self._spawn())

    def close(self) -> None:
        """Tell idle warm processes to exit (they hold no work)."""
        with self._lock:
            self._closed = True
            idle, self._ready = self._ready, []
            if self._timer is not None:
                self._timer.cancel()
        for process, conn in idle:
            try:
                conn.send(None)
                conn.close()
            except OSError:
                pass
            process.join(timeout=5)
            if process.is_alive():
                process.kill()


class _WarmContext:
    """Looks like ``multiprocessing.get_context("spawn")`` to ``run_flow_in_subprocess``."""

    def __init__(self, pool: WarmPool, real: Any) -> None:
        self._pool, self._real = pool, real

    def Process(self, target: Any, args: tuple[Any, ...] = (), **kwargs: Any) -> Any:
        taken = self._pool.take() if not kwargs else None
        if taken is None:
            return self._real.Process(target=target, args=args, **kwargs)
        process, conn = taken

        def start() -> None:
            conn.send((target, args))
            conn.close()

        process.start = start  # the process already runs; "starting" it hands over the work
        return process

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _MultiprocessingShim(types.ModuleType):
    def __init__(self, pool: WarmPool) -> None:
        super().__init__("multiprocessing")
        self._pool = pool

    def get_context(self, method: str | None = None) -> Any:
        real = multiprocessing.get_context(method)
        return _WarmContext(self._pool, real) if method == "spawn" else real

    def __getattr__(self, name: str) -> Any:
        return getattr(multiprocessing, name)


_installed: WarmPool | None = None


def install(size: int = 1) -> WarmPool | None:
    """Route the runner's flow-run spawns through a warm pool of ``size`` processes. Returns the pool, or
    None when Prefect's code is not the shape this relies on (then nothing is changed)."""
    global _installed
    if size <= 0:
        return None
    import prefect.flow_engine as engine

    source = inspect.getsource(engine.run_flow_in_subprocess)
    if 'multiprocessing.get_context("spawn")' not in source or "ctx.Process(" not in source:
        logger.warning("warm processes disabled: prefect.flow_engine.run_flow_in_subprocess changed shape")
        return None
    if _installed is None:
        _installed = WarmPool(size)
        engine.multiprocessing = _MultiprocessingShim(_installed)
    return _installed


def uninstall() -> None:
    global _installed
    import prefect.flow_engine as engine

    engine.multiprocessing = multiprocessing
    if _installed is not None:
        _installed.close()
        _installed = None
