"""One local Prefect server per ``FERRY_HOME``, started on first need and reused by every later command.

Without ``PREFECT_API_URL`` (or an active Prefect profile that sets it), Prefect starts a temporary server
for each process that runs a flow: 5–14 s per ``ferry deploy --wait``, a banner in its output, and the runs
gone from any UI once it stops. Instead ferry starts ``prefect server start`` once, in the background (its
own session, 127.0.0.1, a free port), with its ``PREFECT_HOME`` and SQLite database under
``FERRY_HOME/prefect`` so the runs stay visible afterwards, records pid and port in
``FERRY_HOME/prefect/server.json`` and points the command at it like any ``PREFECT_API_URL``.

A file lock (``server.lock``) makes concurrent commands start one server; a record whose process is gone, is
not that server, or does not answer ``/api/health`` is replaced. ``FERRY_PREFECT_SERVER=ephemeral`` keeps
Prefect's own temporary server per command (the test suite uses it). No Prefect import here: the server runs
in its own process, and this process's settings are overridden only when Prefect is already imported.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from flows.client.http import prefect_api_url
from snapshots import processes
from snapshots.errors import ConfigError, PrefectUnreachable
from snapshots.settings import open_private_log

MODE = "FERRY_PREFECT_SERVER"
"""``ephemeral``: Prefect's temporary server per command, as before; ``local`` (the default): the local one."""

START_SECONDS = 120.0
"""How long a starting server may take to answer /api/health (5–14 s idle; far more on a loaded machine)."""

_adopted: dict[str, str] = {}
"""The API URL this process took from the record (``adopt``): still health-checked before a flow runs."""


@dataclass(frozen=True)
class LocalServer:
    """The record in ``server.json``: the process and where it listens."""

    pid: int
    port: int
    started_at: str

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def state_dir(home: Path) -> Path:
    """``FERRY_HOME/prefect``: the server's PREFECT_HOME (its database, prefect.db), record, lock and log."""
    return home / "prefect"


def _record_path(home: Path) -> Path:
    return state_dir(home) / "server.json"


def log_path(home: Path) -> Path:
    return state_dir(home) / "server.log"


def wanted() -> bool:
    """True when this command should use the local server: no Prefect API configured, not opted out."""
    mode = os.environ.get(MODE, "").strip().lower() or "local"
    if mode not in ("local", "ephemeral"):
        raise ConfigError(f"{MODE}={os.environ[MODE]!r}: expected local (the default) or ephemeral")
    if mode == "ephemeral":
        return False
    url = prefect_api_url()
    return not url or url in _adopted.values()


# -- the record ---------------------------------------------------------------------------------------------


def read_record(home: Path) -> LocalServer | None:
    """The recorded server, or None when there is no readable record."""
    try:
        doc = json.loads(_record_path(home).read_text(encoding="utf-8"))
        return LocalServer(int(doc["pid"]), int(doc["port"]), str(doc.get("started_at") or ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_record(home: Path, server: LocalServer) -> None:
    path = _record_path(home)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({**asdict(server), "api_url": server.api_url}, out)
    os.replace(tmp, path)  # a reader sees the old record or the new one, never half of one


def _is_ours(server: LocalServer) -> bool:
    """The recorded pid is alive and is a ``prefect server start`` on the recorded port (not a pid reused by
    something else after the server died)."""
    try:
        args = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    text = [a.decode(errors="replace") for a in args]
    return "server" in text and "start" in text and str(server.port) in text and any("prefect" in a for a in text)


def healthy(server: LocalServer, timeout: float = 5.0) -> bool:
    """``/api/health`` answers true."""
    try:
        response = httpx.get(f"{server.api_url}/health", timeout=timeout)
        return response.status_code == 200 and response.json() is True
    except (httpx.HTTPError, ValueError):
        return False


def running(home: Path) -> LocalServer | None:
    """The recorded server when its process is alive and answers its health check, else None."""
    server = read_record(home)
    if server is None or not _is_ours(server):
        return None
    return server if healthy(server) else None


# -- start and stop -----------------------------------------------------------------------------------------


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One command at a time starts, replaces or stops this FERRY_HOME's server (others wait, then reuse)."""
    directory = state_dir(home)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(directory / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def ensure(home: Path) -> tuple[LocalServer, bool]:
    """The running server for ``home``, started first when there is none (or the record is stale). Returns
    it and whether this call started it."""
    with _locked(home):
        server = read_record(home)
        if server is not None and _is_ours(server):
            for _ in range(3):  # a busy machine can be slow to answer; a wedged server is replaced
                if healthy(server):
                    return server, False
                time.sleep(1)
            _terminate(server.pid)
        return _start(home), True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(state_dir(home)), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    for name in ("PREFECT_API_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_API_DATABASE_CONNECTION_URL",
                 "PREFECT_PROFILES_PATH", "PREFECT_PROFILE", MODE):
        env.pop(name, None)  # its own database under FERRY_HOME/prefect, whatever this shell points at
    return env


def _start(home: Path) -> LocalServer:
    """Start ``prefect server start`` detached (own session, output to server.log) and wait for health."""
    log = log_path(home)
    last_error = ""
    for _attempt in range(2):  # a free port can be taken between choosing and binding it: one retry
        port = _free_port()
        with open(open_private_log(log), "ab") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=_server_env(home), cwd=state_dir(home), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        server = LocalServer(child.pid, port, datetime.now(UTC).isoformat(timespec="seconds"))
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if child.poll() is not None:
                last_error = f"it exited with code {child.returncode}"
                break
            if healthy(server, timeout=2.0):
                _write_record(home, server)
                return server
            time.sleep(0.25)
        else:
            _terminate(child.pid)
            last_error = f"it did not answer /api/health within {START_SECONDS:g}s"
    raise PrefectUnreachable(f"could not start the local Prefect server: {last_error} (log: {log})")


def stop(home: Path) -> LocalServer | None:
    """Stop the recorded server (its whole process group) and remove the record; the stopped one or None."""
    if not state_dir(home).is_dir():
        return None  # never started here: nothing to stop, nothing to create
    with _locked(home):
        server = read_record(home)
        stopped = server if server is not None and _is_ours(server) else None
        if stopped is not None:
            _terminate(stopped.pid)
        _record_path(home).unlink(missing_ok=True)
        return stopped


def _terminate(pid: int, grace: float = 15.0) -> None:
    """SIGTERM to the server's process group (it was started in a session of its own), SIGKILL after ``grace``."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not processes.alive(pid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while processes.alive(pid):
        time.sleep(0.05)


# -- pointing a command at it -------------------------------------------------------------------------------


def adopt(home: Path) -> str | None:
    """At the start of a command: when no Prefect API is configured and this FERRY_HOME's server is running,
    point every client of this command (and the processes it starts) at it — no start, no HTTP call."""
    if not wanted():
        return None
    server = read_record(home)
    if server is None or not _is_ours(server):
        return None
    os.environ["PREFECT_API_URL"] = _adopted["url"] = server.api_url
    return server.api_url


@contextmanager
def api_for(home: Path) -> Iterator[str | None]:
    """Around running a flow from this command: the local server's API URL (started if needed, health-checked)
    in the environment (children, and a Prefect imported later) and, when Prefect is already imported, in its
    settings. Yields None and changes nothing when a Prefect API is configured or the mode is ``ephemeral``."""
    if not wanted():
        yield None
        return
    server, _started = ensure(home)
    before = os.environ.get("PREFECT_API_URL")
    imported = "prefect.context" in sys.modules
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with ExitStack() as stack:
            if imported:  # Prefect read its settings when imported: override them for this block
                from prefect.settings import PREFECT_API_URL, temporary_settings

                stack.enter_context(temporary_settings(updates={PREFECT_API_URL: server.api_url}))
            yield server.api_url
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        if not imported and "prefect.context" in sys.modules:  # imported inside: it captured our URL; undo that
            sys.modules["prefect.context"].refresh_global_settings_context()


def describe(home: Path) -> dict[str, Any]:
    """``ferry prefect-server status``: the record and whether the server is up."""
    server = read_record(home)
    alive = server is not None and _is_ours(server)
    up = alive and server is not None and healthy(server)
    doc: dict[str, Any] = {"running": up, "home": str(state_dir(home)), "log": str(log_path(home)),
                           "database": str(state_dir(home) / "prefect.db")}
    if server is not None:
        doc.update(pid=server.pid, port=server.port, api_url=server.api_url, ui_url=server.ui_url,
                   started_at=server.started_at)
        if not alive:
            doc["stale"] = "the recorded process is gone; the next command that runs a flow starts a new one"
        elif not up:
            doc["stale"] = "the recorded process does not answer /api/health"
    return doc
