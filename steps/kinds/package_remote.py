"""The package install as ONE program on a Linux target (issue 17 item 4): run by ``python3`` over a single SSH
session, it never imports ferry (standard library only) and is sent, not installed.

ferry writes on the session's stdin: this program's length and text (the command line's bootstrap compiles
it), then a JSON header (paths, the fixed phase scripts, the variables, the rendered config files). The
program then, phase by phase: checks whether the package file already holds the pinned sha256 (else asks
for the bytes, which follow on stdin, hashes them as they land in a temp file and renames it into place only
when they match), extracts, runs PreDeploy.sh, writes the substituted config files, runs Deploy.sh, switches
``current``, runs PostDeploy.sh and applies retention. Each phase is framed by a structured line

    ##ferry[phase name='Deploy.sh' event='start|end|timeout' exit='0' seconds='0.190' token='<install token>']

carrying a token scripts never see, so a script's output cannot fake a phase. The first failing phase ends
the program (ferry then runs DeployFailed.sh, as it always has).

Values stay data: the scripts read them from an anonymous in-memory file (``memfd_create``; ``FERRY_DATA``
is ``/proc/self/fd/N``), gone with the last process holding it. When the session's stdin reaches end of file
(ferry killed, connection cut) the running phase's process group is ended (TERM, then KILL) and a partly
received package file removed, so a re-run starts from clean state.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

LINGER = 1.0  # seconds of silence after a phase exits before its background processes' output is let go
_state: dict[str, Any] = {"proc": None, "partial": None, "scratch": None}


def _out(text: str) -> None:
    sys.stdout.buffer.write(text.encode("utf-8", "replace") + b"\n")
    sys.stdout.buffer.flush()


def _message(token: str, kind: str, **fields: object) -> None:
    parts = " ".join(f"{key}='{value}'" for key, value in fields.items())
    _out(f"##ferry[{kind} {parts} token='{token}']")


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """TERM the phase's process group, KILL it after 2 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except OSError:
        return
    for _ in range(20):
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)


def _cleanup() -> None:
    partial, scratch = _state["partial"], _state["scratch"]
    for path in (partial, scratch):
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _watch_stdin() -> None:
    """ferry holds stdin open for the whole install: end of file means it is gone. End everything."""
    try:
        while sys.stdin.buffer.read(65536):
            pass
    except OSError:
        pass
    proc = _state["proc"]
    if proc is not None:
        _end_group(proc)
    _cleanup()
    os._exit(125)


class Install:
    def __init__(self, header: dict[str, Any]) -> None:
        self.h = header
        self.token = header["token"]
        self.env = dict(os.environ)
        self.env.update(header["env"])
        self.fds: list[int] = []
        self.marks: dict[str, str] = {}
        self.scripts: list[str] = []

    def phase(self, name: str, event: str, **fields: object) -> None:
        _message(self.token, "phase", name=name, event=event, **fields)

    def shell(self, name: str, script: str, extra: dict[str, str] | None = None) -> int:
        """Run one fixed bash phase in its own process group; forward its output; return its exit code."""
        env = dict(self.env)
        env.update(extra or {})
        self.phase(name, "start")
        started = time.monotonic()
        proc = subprocess.Popen(["bash", "--noprofile", "--norc", "-c", self.h["preamble"] + script],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, pass_fds=self.fds, start_new_session=True)
        _state["proc"] = proc
        timeout = self.h.get("timeout")
        deadline = started + timeout if timeout else None
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        pending, heard, exited, timed_out = b"", 0.0, 0.0, False
        while True:
            if deadline is not None and time.monotonic() > deadline:
                _end_group(proc)
                timed_out = True
                break
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                heard = time.monotonic()
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    self.line(name, raw.decode("utf-8", "replace").rstrip("\r"))
                continue
            if not exited and proc.poll() is not None:
                exited = time.monotonic()
            if exited and time.monotonic() - max(heard, exited) >= LINGER:
                break
        if pending:
            self.line(name, pending.decode("utf-8", "replace").rstrip("\r"))
        proc.stdout.close()
        code = proc.wait()
        _state["proc"] = None
        seconds = f"{time.monotonic() - started:.3f}"
        if timed_out:
            self.phase(name, "timeout", exit=code, seconds=seconds, pid=proc.pid)
            return 124
        self.phase(name, "end", exit=code, seconds=seconds)
        return code

    def line(self, phase: str, text: str) -> None:
        if phase in ("extract", "switch", "retention") and text.startswith("@ferry ") and "=" in text:
            key, _, value = text[7:].partition("=")
            if key == "script":
                self.scripts.append(value)
            else:
                self.marks[key] = value
        _out(text)

    def receive(self) -> bool:
        """The package file: kept when it already holds the pinned bytes, else received on stdin and verified."""
        package = self.h["package"]
        path = package["file"]
        self.phase("upload", "start")
        started = time.monotonic()
        directory = os.path.dirname(path)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            _out(f"cannot create {directory}: {exc.strerror}")
            self.phase("upload", "end", exit=1, sent=0, seconds=f"{time.monotonic() - started:.3f}")
            return False
        if _sha256(path) == package["sha256"]:
            self.phase("upload", "end", exit=0, sent=0, seconds=f"{time.monotonic() - started:.3f}")
            return True
        fd, partial = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.ferry-", dir=directory)
        _state["partial"] = partial
        _message(self.token, "send", size=package["size"])
        digest, left = hashlib.sha256(), package["size"]
        with os.fdopen(fd, "wb") as out:
            while left:
                chunk = sys.stdin.buffer.read(min(left, 1 << 20))
                if not chunk:  # ferry went away mid-transfer
                    _cleanup()
                    os._exit(125)
                digest.update(chunk)
                out.write(chunk)
                left -= len(chunk)
        os.chmod(partial, 0o644)
        if digest.hexdigest() != package["sha256"]:
            _cleanup()
            _out(f"arrived with sha256 {digest.hexdigest()}, expected {package['sha256']}")
            self.phase("upload", "end", exit=3, sent=1, seconds=f"{time.monotonic() - started:.3f}")
            return False
        os.rename(partial, path)
        _state["partial"] = None
        self.phase("upload", "end", exit=0, sent=1, seconds=f"{time.monotonic() - started:.3f}")
        return True

    def values(self) -> str:
        """The variables as an in-memory file the scripts inherit (a 0600 file in a 0700 folder without memfd)."""
        data = dict(self.h["data"])
        variables = dict(data.get("variables", {}))
        for name in self.h["installed_path_names"]:
            variables[name] = self.marks.get("release_dir", "")
        data["variables"] = variables
        content = json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8")
        create = getattr(os, "memfd_create", None)
        fd = None
        if create is not None:
            try:
                fd = create("ferry-data", 0)
            except OSError:
                fd = None
        if fd is not None:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view):]
            self.fds.append(fd)
            return f"/proc/self/fd/{fd}"
        folder = tempfile.mkdtemp(prefix="ferry-install-")
        path = os.path.join(folder, "data.json")
        _state["scratch"] = path
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(content)
        return path

    def substitute(self) -> int:
        files = self.h["files"]
        if not files:
            return 0
        self.phase("substitute", "start")
        started = time.monotonic()
        try:
            for entry in files:
                path = os.path.join(self.marks["release_dir"], entry["path"])
                directory, name = os.path.split(path)
                tmp = os.path.join(directory, f".{name}.ferry-{os.urandom(6).hex()}")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    os.fchmod(out.fileno(), entry["mode"])
                    out.write(base64.b64decode(entry["content"]))
                os.rename(tmp, path)
        except OSError as exc:
            _out(f"cannot write {exc.filename}: {exc.strerror}")
            self.phase("substitute", "end", exit=1, seconds=f"{time.monotonic() - started:.3f}")
            return 1
        self.phase("substitute", "end", exit=0, seconds=f"{time.monotonic() - started:.3f}")
        return 0

    def script(self, name: str) -> int:
        if not self.h["run_scripts"] or name not in self.scripts:
            return 0
        return self.shell(name, self.h["run_script"], {"FERRY_SCRIPT": name})

    def run(self) -> int:
        h = self.h
        if self.shell("extract", h["extract"]) != 0 or "release_dir" not in self.marks:
            return 2
        base = self.marks.get("base", self.env["FERRY_APP_STATE"])
        self.env.update({"FERRY_APP_STATE": base, "FERRY_CURRENT": f"{base}/current",
                         "FERRY_RELEASE_DIR": self.marks["release_dir"],
                         "FERRY_PREVIOUS_RELEASE_DIR": self.marks.get("previous", ""),
                         "FERRY_PACKAGE_FILE": f"{base}/.packages/{h['package']['filename']}"})
        self.env["FERRY_DATA"] = self.values()
        for step in (lambda: self.script("PreDeploy.sh"), self.substitute, lambda: self.script("Deploy.sh"),
                     lambda: self.shell("switch", h["switch"]), lambda: self.script("PostDeploy.sh")):
            if step() != 0:
                return 1
        self.env.pop("FERRY_DATA", None)
        self.shell("retention", h["retain"], {"FERRY_KEEP": str(h["keep"])})
        return 0


def _sha256(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as source:
            while True:
                chunk = source.read(1 << 20)
                if not chunk:
                    break
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def main() -> None:
    size = int(sys.stdin.buffer.readline())
    install = Install(json.loads(sys.stdin.buffer.read(size)))
    received = install.receive()  # reads the package's bytes from stdin when they are asked for
    threading.Thread(target=_watch_stdin, daemon=True).start()  # from here on stdin only says ferry is there
    code = install.run() if received else 3
    _cleanup()
    sys.stdout.flush()
    os._exit(code)


if __name__ == "ferry_install":
    main()
