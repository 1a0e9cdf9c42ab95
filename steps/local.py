"""The ``local`` transport: a target that is a directory on the worker, running bash scripts.

It is Octopus's "run on the server" and the worker side of ``run_on: worker-for-each-target`` steps; the
test suite and benchmarks use it as a real, cheap target (real processes, real files).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
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

from snapshots.errors import TransportError
from steps.scripts import BASH_PREAMBLE
from steps.transport import LineSink, RunResult

TAIL_LINES = 20


class LocalTransport:
    """Run bash in ``root`` (created if missing); upload = copy under ``root``."""

    def __init__(self, target: str, root: str | Path) -> None:
        self.target = target
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_dir = str(self.root / ".ferry")

    def _path(self, remote: str) -> Path:
        path = Path(remote)
        return path if path.is_absolute() else self.root / path

    def run(self, script: str, *, env: Mapping[str, str] | None = None, data: Mapping[str, Any] | None = None,
            cwd: str | None = None, timeout: float | None = None, on_line: LineSink | None = None) -> RunResult:
        workdir = self._path(cwd) if cwd else self.root
        child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root), "LANG": "C.UTF-8",
                     "FERRY_TARGET_ROOT": str(self.root), "FERRY_STATE_DIR": self.state_dir, **(env or {})}
        with tempfile.TemporaryDirectory(prefix="ferry-run-") as tmp:
            if data is not None:
                data_file = Path(tmp) / "data.json"
                fd = os.open(data_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    json.dump(data, fh)
                child_env["FERRY_DATA"] = str(data_file)
            script_file = Path(tmp) / "script.sh"
            script_file.write_text(BASH_PREAMBLE + script)
            try:
                proc = subprocess.Popen(["bash", str(script_file)], cwd=workdir, env=child_env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            except OSError as exc:
                raise TransportError(str(exc), target=self.target, operation="run") from exc
            return _stream(proc, self.target, timeout, on_line)

    def upload(self, local: Path, remote: str, sha256: str) -> bool:
        dest = self._path(remote)
        if dest.is_file() and _sha256(dest) == sha256:
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.uploading")
        shutil.copyfile(local, tmp)
        if _sha256(tmp) != sha256:
            tmp.unlink()
            raise TransportError(f"{remote}: sha256 mismatch after copy", target=self.target, operation="upload")
        os.replace(tmp, dest)
        return True

    def close(self) -> None:
        pass


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            tail.append(line)
            if on_line:
                on_line(line)
        code = proc.wait()
    finally:
        if timer:
            timer.cancel()
    if timed_out.is_set():
        raise TransportError(f"timed out after {time.monotonic() - started:.0f}s (limit {timeout:g}s); "
                             "the script was killed", target=target, operation="run")
    return RunResult(code, list(tail))
