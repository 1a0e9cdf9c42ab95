"""The bad-input catalogue (issue 13): every case in ``cases.yaml`` is a bad input a person can give ferry.

Each must end with exactly one ``error: …`` line on stderr (a usage error: click's usage line, then that one
line), the case's exit code, no traceback, and the store and the feed exactly as they were: every row of every
table and the sha256 of every file under ``FERRY_HOME`` are compared before and after.

Cases run in-process (``flows.cli.app`` with argv, stdout and stderr swapped, a fresh copy of a prepared
``FERRY_HOME``) unless they need a process of their own (``subprocess: true``: resource limits, a file system
mounted for the case). ``cases.yaml`` documents its own schema at the top.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bad_inputs.state import state
from tests.conftest import EXAMPLES
from tests.ferry_in_process import run_main
from tests.sample import SECRET

HERE = Path(__file__).resolve().parent
CASES: list[dict[str, Any]] = yaml.safe_load((HERE / "cases.yaml").read_text(encoding="utf-8"))["cases"]
FERRY = Path(sys.executable).parent / "ferry"


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


@dataclass
class Case:
    """One case's directory: ``dir`` holds the sample's YAML and packages, ``home`` its FERRY_HOME."""

    dir: Path
    home: Path
    env: dict[str, str | None] = field(default_factory=dict)
    cleanup: list[Any] = field(default_factory=list)

    def expand(self, text: Any) -> str:
        """``{dir}`` and ``{home}`` in a path, value or argument (literally: ``#{...}`` stays as written)."""
        return str(text).replace("{dir}", str(self.dir)).replace("{home}", str(self.home))

    def path(self, name: str) -> Path:
        return self.dir / self.expand(name)


# -- the prepared FERRY_HOMEs, built once per session ---------------------------------------------------------

def _run_inprocess(args: list[str], env: dict[str, str | None], stdin: str = "") -> Outcome:
    """``ferry ARGS`` in this process, as ``main`` would run it (``gc.freeze`` aside)."""
    return Outcome(*run_main(args, env, stdin))


def _run_subprocess(args: list[str], env: dict[str, str | None], stdin: str = "",
                    prlimit: list[str] | None = None) -> Outcome:
    full = {k: v for k, v in os.environ.items()}
    for key, value in env.items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    command = [str(FERRY), *args]
    if prlimit:
        command = ["prlimit", *prlimit, "--", *command]
    proc = subprocess.run(command, capture_output=True, text=True, env=full, input=stdin, timeout=300)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


BASE_ENV = {"FERRY_DATABASE_URL": None, "FERRY_MASTER_KEY": None, "FERRY_SERVER": None, "FERRY_API_KEY": None,
            "FERRY_USER": "tester", "COLUMNS": "200", "OCTOFX_DB_PASSWORD": SECRET}


RUNBOOKS = """
runbooks:
  - name: Drain for maintenance
    environments: [Test, Production]
    process:
      - {name: Drain, kind: load-balancer, roles: [web], balancer: web-lb, action: remove}
      - {name: Restore, kind: load-balancer, roles: [web], balancer: web-lb, action: add}
  - name: Check health
    process:
      - {name: Probe, kind: http-check, roles: [web], url: "http://#{Machine.Hostname}:#{App.Prot}/health"}
"""
"""The ``runbook`` base: the sample with two runbooks, the first published (snapshot 1), the second not (its
step names a variable the project does not have: publishing it is refused)."""


CHANNELS = """
channels:
  - {name: Beta, description: pre-releases for Development, rules: [{packages: [OctoFX.Web], tag: "^beta"}]}
"""
FREEZES = """
freezes:
  - {name: Change freeze, start: 2020-01-01T00:00:00Z, end: 2099-01-01T00:00:00Z, environments: [Production],
     reason: the year-end change freeze}
"""
"""The ``frozen`` base: the released sample with a Beta channel (pre-releases tagged beta only) and a freeze of
Production that is always in force."""


def _prepare(root: Path, kind: str) -> Path:
    """A case template: ``root/dir`` (sample YAML, packages 1.0.0 and 2.0.0) and ``root/home``, ``kind`` being
    ``empty`` (nothing in the store), ``applied`` (infrastructure + project) or ``released`` (and OctoFX.Web 1.0.0
    pushed, release 1.0.0 created)."""
    sample, home = root / "dir", root / "home"
    sample.mkdir(parents=True)
    for name in ("project.yaml", "infrastructure.yaml"):
        shutil.copy(EXAMPLES / "octofx" / name, sample / name)
    if kind == "runbook":
        with open(sample / "project.yaml", "a") as project:
            project.write(RUNBOOKS)
    if kind == "frozen":
        with open(sample / "project.yaml", "a") as project:
            project.write(CHANNELS)
        with open(sample / "infrastructure.yaml", "a") as infrastructure:
            infrastructure.write(FREEZES)
    for version in ("1.0.0", "2.0.0"):
        subprocess.run([sys.executable, str(EXAMPLES / "octofx" / "build_package.py"), version, str(sample)],
                       check=True, capture_output=True)
    env = {**BASE_ENV, "FERRY_HOME": str(home)}
    steps = {"empty": [], "applied": [["apply", "infrastructure.yaml", "project.yaml"]],
             "frozen": [["apply", "infrastructure.yaml", "project.yaml"],
                        ["package", "push", "OctoFX.Web.1.0.0.tar.gz"],
                        ["release", "create", "OctoFX", "--version", "1.0.0"]],
             "released": [["apply", "infrastructure.yaml", "project.yaml"],
                          ["package", "push", "OctoFX.Web.1.0.0.tar.gz"],
                          ["release", "create", "OctoFX", "--version", "1.0.0"]],
             "runbook": [["apply", "infrastructure.yaml", "project.yaml"],
                         ["runbook", "publish", "OctoFX", "Drain for maintenance"]]}[kind]
    with contextlib.chdir(sample):
        for args in steps:
            outcome = _run_inprocess(args, env)
            assert outcome.code == 0, (args, outcome)
        if kind == "empty":  # the store, and the master key a first command generates for an empty store
            assert _run_inprocess(["package", "list"], env).code == 0
            assert _run_inprocess(["apply", "project.yaml"], env).code == 1  # no infrastructure: refused
            assert (home / "master.key").is_file()
    return root


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("bad-input-templates")
    return {kind: _prepare(base / kind, kind) for kind in ("empty", "applied", "released", "frozen", "runbook")}


# -- setup actions ---------------------------------------------------------------------------------------------

def _bytes(spec: Any) -> bytes:
    if isinstance(spec, dict):
        if "b64" in spec:
            return base64.b64decode(spec["b64"])
        if "repeat" in spec:
            return str(spec["repeat"]).encode() * int(spec["times"])
        if "size" in spec:
            return os.urandom(int(spec["size"]))
    return str(spec).encode("utf-8")


def _archive(case: Case, spec: dict[str, Any]) -> None:
    """Write a zip or tar.gz with the listed entries (``name`` + ``data``, ``dir``, ``symlink``, ``hardlink``,
    ``fifo``), for the archive cases."""
    target = case.path(spec["file"])
    entries = spec["entries"]
    if spec["file"].endswith((".zip", ".nupkg")):
        with zipfile.ZipFile(target, "w") as archive:
            for entry in entries:
                if "symlink" in entry:
                    info = zipfile.ZipInfo(entry["name"])
                    info.external_attr = (0o120777 << 16)
                    archive.writestr(info, entry["symlink"])
                else:
                    archive.writestr(entry["name"], _bytes(entry.get("data", "")))
        return
    with tarfile.open(target, "w:gz") as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry["name"])
            data = b""
            if "symlink" in entry:
                info.type, info.linkname = tarfile.SYMTYPE, entry["symlink"]
            elif "hardlink" in entry:
                info.type, info.linkname = tarfile.LNKTYPE, entry["hardlink"]
            elif entry.get("fifo"):
                info.type = tarfile.FIFOTYPE
            elif entry.get("dir"):
                info.type = tarfile.DIRTYPE
            else:
                data = _bytes(entry.get("data", ""))
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _mount_tmpfs(case: Case, where: Path, size: str, readonly: bool = False) -> None:
    """A tmpfs (root only) holding what ``where`` held, optionally read-only: a full or read-only disk."""
    saved = where.parent / (where.name + ".saved")
    where.rename(saved)
    where.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if result.returncode != 0:
        where.rmdir()
        saved.rename(where)
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    case.cleanup.append(lambda: subprocess.run(["umount", "-l", str(where)], check=False))
    subprocess.run(["cp", "-a", f"{saved}/.", str(where)], check=True)
    if readonly:
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


def _store_revision_with(db: Path, variables: list[dict[str, str]]) -> None:
    """Append a revision of OctoFX with these extra variables straight into the store (revisions are append-only:
    an INSERT, as an older ferry would have done it)."""
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT * FROM project_revisions WHERE project='OctoFX' ORDER BY revision DESC LIMIT 1")
        names = [d[0] for d in row.description]
        latest = dict(zip(names, row.fetchone(), strict=True))
        document = json.loads(latest["document"])
        document["variables"] += [{"name": v["name"], "value": v["value"], "sensitive": False, "description": "",
                                   "prompt": None, "scope": {"environment": [], "role": [], "target": [], "step": [],
                                                             "channel": []}} for v in variables]
        latest.update(id=None, revision=latest["revision"] + 1, document=json.dumps(document, sort_keys=True),
                      content_digest="0" * 64)
        conn.execute(f"INSERT INTO project_revisions ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                     [latest[n] for n in names])
        conn.commit()
    finally:
        conn.close()


def setup(case: Case, actions: list[dict[str, Any]]) -> None:
    for action in actions:
        (kind, spec), = action.items()
        if kind == "replace":
            path = case.path(spec["file"])
            text = path.read_text()
            assert spec["old"] in text, f"case setup: {spec['old']!r} is not in {spec['file']}"
            path.write_text(text.replace(spec["old"], spec["new"], 1))
        elif kind == "append":
            path = case.path(spec["file"])
            path.write_text(path.read_text() + spec["text"])
        elif kind == "write":
            path = case.path(spec["file"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_bytes(spec.get("text", spec.get("data", ""))))
        elif kind == "copy":
            source, target = case.path(spec["from"]), case.path(spec["to"])
            target.parent.mkdir(parents=True, exist_ok=True)
            data = source.read_bytes()
            if "truncate" in spec:
                data = data[: int(spec["truncate"])]
            if "flip" in spec:  # corrupt one byte
                at = int(spec["flip"]) % len(data)
                data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
            target.write_bytes(data + _bytes(spec.get("append", "")))
        elif kind == "archive":
            _archive(case, spec)
        elif kind == "env":
            case.env.update({k: (None if v is None else case.expand(v)) for k, v in spec.items()})
        elif kind == "home":  # replace FERRY_HOME's store or the whole of it
            if spec == "file":
                shutil.rmtree(case.home)
                case.home.write_text("not a directory\n")
            elif spec == "garbage-store":
                (case.home / "ferry.db").write_bytes(b"this is not a SQLite database" * 100)
            elif spec == "garbage-key":
                (case.home / "master.key").write_text("not%a%key\n")
            elif spec == "no-key":
                (case.home / "master.key").unlink()
            else:
                raise AssertionError(f"unknown home setup {spec!r}")
        elif kind == "chmod":
            os.chmod(case.path(spec["file"]), int(str(spec["mode"]), 8))
        elif kind == "tmpfs":  # {path: home|feed, size: 1m, readonly: bool}
            where = case.home if spec["path"] == "home" else case.home / spec["path"]
            _mount_tmpfs(case, where, str(spec.get("size", "4m")), bool(spec.get("readonly", False)))
        elif kind == "stored-variables":  # a project revision stored by an older ferry, never template-checked
            _store_revision_with(case.home / "ferry.db", spec)
        elif kind == "partial":  # a dead push's partial file in the feed
            folder = case.home / "feed" / spec["package"]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / spec["name"]).write_bytes(b"partial")
        else:
            raise AssertionError(f"unknown setup action {kind!r}")


@pytest.fixture
def case(spec: dict[str, Any], templates: dict[str, Path], tmp_path: Path) -> Iterator[Case]:
    """A fresh copy of the case's template, with the case's setup done."""
    source = templates[spec.get("base", "released")]
    shutil.copytree(source / "dir", tmp_path / "dir", symlinks=True)
    shutil.copytree(source / "home", tmp_path / "home", symlinks=True)
    made = Case(tmp_path / "dir", tmp_path / "home", {**BASE_ENV, "FERRY_HOME": str(tmp_path / "home")})
    try:
        setup(made, spec.get("setup") or [])
        yield made
    finally:
        for undo in reversed(made.cleanup):
            undo()


def _ids() -> list[str]:
    ids = [c["id"] for c in CASES]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"duplicate case ids: {duplicates}"
    return ids


def _starts(args: list[str]) -> bool:
    """A command that starts deployments (deploy, promote, rollback, runbook run; not --plan): its refusals exit 3."""
    words = [a for a in args if not a.startswith("-")]
    starts = words[:1] in (["deploy"], ["promote"], ["rollback"]) or words[:2] == ["runbook", "run"]
    return starts and "--plan" not in args


TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s+File \"", re.MULTILINE)


@pytest.mark.parametrize("spec", CASES, ids=_ids())
def test_bad_input(spec: dict[str, Any], case: Case) -> None:
    args = [case.expand(a) for a in spec["args"]]
    before = state(case.home)
    with contextlib.chdir(case.dir):
        if spec.get("subprocess") or spec.get("prlimit"):
            outcome = _run_subprocess(args, case.env, spec.get("stdin", ""), spec.get("prlimit"))
        else:
            outcome = _run_inprocess(args, case.env, spec.get("stdin", ""))
    shown = f"exit {outcome.code}\nstdout:\n{outcome.stdout}\nstderr:\n{outcome.stderr}"
    assert not TRACEBACK.search(outcome.stdout + outcome.stderr), shown
    lines = outcome.stderr.splitlines()
    expected_code = int(spec.get("exit", 2 if spec.get("usage") else 3 if _starts(args) else 1))
    assert outcome.code == expected_code, shown
    if spec.get("usage"):
        assert len(lines) == 2 and lines[0].startswith("Usage: ferry"), shown
        lines = lines[1:]
    assert len(lines) == 1, shown
    assert lines[0].startswith("error: ") and not lines[0].startswith("error: internal"), shown
    assert re.search(spec["error"], lines[0]), f"{spec['error']!r} not in: {lines[0]}"
    for secret in (SECRET, *spec.get("never", [])):
        assert secret not in outcome.stdout + outcome.stderr, shown
    assert state(case.home) == before, "the store or the feed changed"
    for path in spec.get("absent", []):
        assert not list(case.home.glob(path)), f"{path} exists after the case"


def test_the_catalogue_is_big_enough() -> None:
    """Issue 13: at least 150 cases, across every group."""
    groups = {c.get("group") for c in CASES}
    assert len(CASES) >= 150, len(CASES)
    assert {"yaml", "references", "packages", "archives", "releases", "deploy", "usage", "environment",
            "master-key", "store"} <= groups, groups


# -- beside the table: what one row cannot say ------------------------------------------------------------------

def _fresh(templates: dict[str, Path], tmp_path: Path, kind: str) -> Case:
    shutil.copytree(templates[kind] / "dir", tmp_path / "dir")
    shutil.copytree(templates[kind] / "home", tmp_path / "home")
    return Case(tmp_path / "dir", tmp_path / "home", {**BASE_ENV, "FERRY_HOME": str(tmp_path / "home")})


def test_nothing_is_stored_when_one_of_several_files_is_bad(templates: dict[str, Path], tmp_path: Path) -> None:
    """A valid infrastructure beside a bad project: the infrastructure is not stored either (one transaction)."""
    case = _fresh(templates, tmp_path, "empty")
    before = state(case.home)
    project = case.dir / "project.yaml"
    project.write_text(project.read_text().replace("kind: http-check", "kind: nope") + "bogus: 1\n")
    with contextlib.chdir(case.dir):
        outcome = _run_inprocess(["apply", "infrastructure.yaml", "project.yaml"], case.env)
    assert outcome.code == 1 and outcome.stderr.startswith("error: project.yaml:"), outcome
    assert state(case.home) == before


def test_debug_shows_the_traceback(templates: dict[str, Path], tmp_path: Path) -> None:
    case = _fresh(templates, tmp_path, "released")
    outcome = _run_subprocess(["--debug", "release", "show", "OctoFX", "9.9.9"], case.env)
    assert outcome.code != 0 and "Traceback" in outcome.stderr and "NotFoundError" in outcome.stderr


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_pushs_partial_file_is_swept_by_the_next_push(templates: dict[str, Path], tmp_path: Path) -> None:
    """Partial files of a push that died (its process is gone) go at the next push into that package's folder;
    a live push's partial file stays."""
    from snapshots.store.feed import _host

    case = _fresh(templates, tmp_path, "released")
    folder = case.home / "feed" / "OctoFX.Web"
    dead = folder / f".push-{_host()}-{_dead_pid()}-abc123"
    live = folder / f".push-{_host()}-{os.getpid()}-def456"
    for partial in (dead, live):
        partial.write_bytes(b"half a package")
    with contextlib.chdir(case.dir):
        outcome = _run_inprocess(["package", "push", "OctoFX.Web.2.0.0.tar.gz"], case.env)
    assert outcome.code == 0, outcome
    assert not dead.exists() and live.exists()


@pytest.mark.slow
def test_a_killed_push_leaves_no_partial_file_after_the_next_push(templates: dict[str, Path], tmp_path: Path) -> None:
    """SIGKILL of ``ferry package push`` while it copies a large file: its partial file is left (nothing can
    clean up after SIGKILL), and the next push into the same package's folder removes it."""
    import signal
    import time

    case = _fresh(templates, tmp_path, "released")
    big = case.dir / "OctoFX.Web.9.0.0.tar.gz"
    with open(big, "wb") as fh:
        fh.truncate(400 << 20)  # sparse: cheap to make, slow enough to copy and hash
    env = {k: v for k, v in {**os.environ, **case.env}.items() if v is not None}
    proc = subprocess.Popen([str(FERRY), "package", "push", str(big)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    folder = case.home / "feed" / "OctoFX.Web"
    deadline = time.monotonic() + 60
    while not list(folder.glob(".push-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(folder.glob(".push-*")), "the push was not caught while copying"
    with contextlib.chdir(case.dir):
        outcome = _run_inprocess(["package", "push", "OctoFX.Web.2.0.0.tar.gz"], case.env)
    assert outcome.code == 0, outcome
    assert not list(folder.glob(".push-*"))
