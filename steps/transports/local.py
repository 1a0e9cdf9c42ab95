"""The ``local`` transport: a target that is a directory on the worker, running bash scripts.

It is Octopus's "run on the server" and the worker side of ``run_on: worker-for-each-target`` steps; the
test suite and benchmarks use it as a real, cheap target (real processes, real files).

The values a script reads (``FERRY_DATA``, decrypted secrets included) never touch a disk: they live in an
anonymous in-memory file (``memfd_create``) that the script inherits and opens as ``/proc/self/fd/N``; it
vanishes with the last process holding it, so a SIGKILLed deployment leaves nothing behind. Where memfd is
missing, a 0600 file in a 0700 per-process directory is used instead, and directories of dead processes
are swept when the next transport starts (``steps.scratch``).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snapshots.digests import sha256_file
from snapshots.errors import TransportError
from steps.scratch import sweep
from steps.transports.bash import BASH_PREAMBLE
from steps.transports.protocol import LineSink, RunResult

TAIL_LINES = 20
MAX_INLINE = 64 * 1024  # bytes of script passed as `bash -c` (one argument may hold 128 KiB)
LINGER = 1.0  # seconds of silence after a script exits before we stop reading what its background processes print

WRAPPER = r"""
exec {pipe}<&0
( read -r -u "$pipe" _ || kill -KILL -- "-$$" ) </dev/null >/dev/null 2>&1 &
watch=$!
exec {pipe}<&- 0</dev/null
if [ "$1" = -c ]; then bash -c "$2" </dev/null; else bash "$2" </dev/null; fi
rc=$?
exec 2>/dev/null  # bash's own "Killed" notice about the watcher is not the script's output
kill -KILL "$watch"
exit $rc
"""
"""Runs the script in its own process group with a watcher that reads the pipe only ferry holds open: when
ferry dies (SIGKILL included) the pipe reaches end-of-file and the watcher kills the whole group, so a killed
deployment leaves no script running. When the script ends the watcher goes; what the script started in the
background on purpose (a daemon) keeps running, as it does over SSH."""


class LocalTransport:
    """Run bash in ``root`` (created if missing); upload = copy under ``root``."""

    def __init__(self, target: str, root: str | Path) -> None:
        self.target = target
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_dir = str(self.root / ".ferry")
        self._scratch: str | None = None
        sweep()

    def _path(self, remote: str) -> Path:
        path = Path(remote)
        return path if path.is_absolute() else self.root / path

    def run(self, script: str, *, env: Mapping[str, str] | None = None, data: Mapping[str, Any] | None = None,
            cwd: str | None = None, timeout: float | None = None, on_line: LineSink | None = None) -> RunResult:
        workdir = self._path(cwd) if cwd else self.root
        child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root), "LANG": "C.UTF-8",
                     "FERRY_TARGET_ROOT": str(self.root), "FERRY_STATE_DIR": self.state_dir, **(env or {})}
        source = BASH_PREAMBLE + script
        scratch: list[str] = []  # files to remove afterwards (one private folder per transport, no rmtree)
        fds: list[int] = []  # in-memory files the script inherits
        try:
            if data is not None:
                child_env["FERRY_DATA"] = self._private(json.dumps(data).encode(), "ferry-data", fds, scratch)
            # short scripts go on the command line (no file to write); long ones through a private file
            script_args = ["-c", source] if len(source) < MAX_INLINE else \
                ["-f", self._private(source.encode(), "ferry-script", fds, scratch)]
            try:
                proc = subprocess.Popen(["bash", "-c", WRAPPER, "bash", *script_args], cwd=workdir, env=child_env,
                                        stdin=subprocess.PIPE, pass_fds=fds, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise TransportError(str(exc), target=self.target, operation="run") from exc
            finally:
                for fd in fds:
                    os.close(fd)
            return _stream(proc, self.target, timeout, on_line)
        finally:
            for path in scratch:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def _private(self, content: bytes, name: str, fds: list[int], scratch: list[str]) -> str:
        """A path the script can open (again and again) that only it and this process can reach."""
        fd = memory_file(content, name)
        if fd is None:
            return self._scratch_file(content, scratch)
        fds.append(fd)
        return f"/proc/self/fd/{fd}"

    def _scratch_file(self, content: bytes, scratch: list[str]) -> str:
        if self._scratch is None:  # mode 0700: values stay private; the pid lets a later run sweep it
            sweep()
            self._scratch = tempfile.mkdtemp(prefix=f"ferry-run-{os.getpid()}-")
        fd, path = tempfile.mkstemp(dir=self._scratch)  # mode 0600
        scratch.append(path)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        return path

    def upload(self, local: Path, remote: str, sha256: str) -> bool:
        dest = self._path(remote)
        if dest.is_file() and sha256_file(dest) == sha256:
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.uploading")
        shutil.copyfile(local, tmp)
        if sha256_file(tmp) != sha256:
            tmp.unlink()
            raise TransportError(f"{remote}: sha256 mismatch after copy", target=self.target, operation="upload")
        os.replace(tmp, dest)
        return True

    def read_file(self, remote: str) -> bytes | None:
        """A small file's bytes (None when absent): the journal, without starting a shell."""
        try:
            return self._path(remote).read_bytes()
        except FileNotFoundError:
            return None

    def write_file(self, remote: str, data: bytes, mode: int | None = None) -> None:
        """Replace a small file atomically (temp file + rename); ``mode`` is set before the bytes are written
        (None: an existing file's mode is kept)."""
        path = self._path(remote)
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode is None:
            with contextlib.suppress(FileNotFoundError):
                mode = path.stat().st_mode & 0o7777
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if mode is not None else 0o666)
        with os.fdopen(fd, "wb") as handle:
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
        os.replace(tmp, path)

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def memory_file(content: bytes, name: str) -> int | None:
    """An anonymous in-memory file holding ``content`` (Linux ``memfd_create``), or None where unsupported."""
    create = getattr(os, "memfd_create", None)
    if create is None:
        return None
    try:
        fd: int = create(name, 0)
    except OSError:
        return None
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view):]
    return fd


def _stream(proc: subprocess.Popen[bytes], target: str, timeout: float | None, on_line: LineSink | None) -> RunResult:
    """Forward output lines as they come; kill the whole process group when the timeout passes."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    started = time.monotonic()

    def emit(raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        tail.append(line)
        if on_line:
            on_line(line)

    assert proc.stdout is not None and proc.stdin is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    pending, heard, exited = b"", 0.0, 0.0
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    chunk = None
                if chunk == b"":  # end of file: nothing holds the output any more
                    break
                if chunk:
                    heard = time.monotonic()
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for raw in lines:
                        emit(raw)
                    continue
            # The script has exited but something it started in the background still holds its output open
            # (a daemon without redirection): stop after a moment of silence, as the SSH transport does.
            if not exited and proc.poll() is not None:
                exited = time.monotonic()
            if exited and time.monotonic() - max(heard, exited) >= LINGER:
                break
        if pending:
            emit(pending)
        code = proc.wait()
    finally:
        if timer:
            timer.cancel()
        proc.stdout.close()
        proc.stdin.close()  # the watcher has gone with the script; nothing reads this end any more
    if timed_out.is_set():
        raise TransportError(f"timed out after {time.monotonic() - started:.0f}s (limit {timeout:g}s); "
                             "the script was killed", target=target, operation="run")
    return RunResult(code, list(tail))
