"""Decrypted values on the local transport never land in a file that outlives the process: ``ferry deploy``
SIGKILLed in the middle of a local-target script leaves no file holding the secret (issue 12, item 7)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import tempfile
import time
from pathlib import Path

from steps.scratch import sweep
from steps.transports.local import LocalTransport
from tests.flows.local_project import LocalProject


def files_holding(needle: bytes, roots: list[Path], since: float) -> list[Path]:
    """Regular files under ``roots`` changed since ``since`` that contain ``needle``."""
    found = []
    for root in roots:
        for folder, _dirs, names in os.walk(root, onerror=lambda _e: None):
            for name in names:
                path = Path(folder) / name
                try:
                    info = path.lstat()
                    if not path.is_file() or path.is_symlink() or info.st_mtime < since or info.st_size > 50 << 20:
                        continue
                    if needle in path.read_bytes():
                        found.append(path)
                except OSError:
                    continue
    return found


def test_values_reach_the_script_without_a_file(tmp_path: Path) -> None:
    transport = LocalTransport("t", tmp_path / "target")
    lines: list[str] = []
    long_script = "true # " + "x" * 70_000 + "\n"  # long scripts are not passed as an argument either
    result = transport.run(long_script + 'ferry_var Db.Password; echo; echo "$FERRY_DATA"',
                           data={"variables": {"Db.Password": "s3cr3t"}}, on_line=lines.append)
    transport.close()
    assert result.exit_code == 0 and lines[0] == "s3cr3t"
    assert lines[1].startswith("/proc/self/fd/")  # an in-memory file the script inherited, gone with it


def test_scratch_folders_of_dead_processes_are_swept() -> None:
    """Folders a killed deployment left (the local fallback, rendered config files, the worker's shell folder)
    are removed by the next one; a live process's are not."""
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    stale = [Path(tempfile.mkdtemp(prefix=f"ferry-{kind}-{dead}-")) for kind in ("run", "substitute", "iis", "worker")]
    for folder in stale:
        (folder / "web.config").write_text('<add key="Password" value="s3cr3t"/>')
    live = Path(tempfile.mkdtemp(prefix=f"ferry-substitute-{os.getpid()}-"))
    try:
        sweep()
        assert [f for f in stale if f.exists()] == []
        assert live.exists()
    finally:
        for folder in [*stale, live]:
            if folder.exists():
                for child in folder.iterdir():
                    child.unlink()
                folder.rmdir()


def test_sigkill_during_a_local_script_leaves_no_file_holding_the_secret(  # type: ignore[no-untyped-def]
        tmp_path: Path, ferry, ferry_home: Path, prefect_env, monkeypatch) -> None:
    secret = "Kill-Me-" + secrets.token_hex(12)
    monkeypatch.setenv("SHOP_DB_PASSWORD", secret)
    project = LocalProject(tmp_path / "shop", ferry, environments={"Dev": 1})
    started, pid_file = tmp_path / "started", tmp_path / "script.pid"
    project.write([{"name": "Install", "kind": "script", "roles": ["web"],
                    "script": f"echo $$ > {pid_file}\nferry_var Db.Password | sha256sum > {started}\nsleep 120"}],
                  variables=[{"name": "Db.Password", "sensitive": True, "value": {"from_env": "SHOP_DB_PASSWORD"}}])
    project.apply()
    project.release("1.0.0")
    since = time.time() - 1
    deploy = project.deploy_async("1.0.0", "Dev")
    script_pid = None
    try:
        deadline = time.monotonic() + 180
        while not (started.exists() and started.stat().st_size and pid_file.exists()):
            assert deploy.poll() is None, deploy.communicate()[0]
            assert time.monotonic() < deadline, "the script never started"
            time.sleep(0.2)
        # the script really had the value
        assert started.read_text().split()[0] == hashlib.sha256(secret.encode()).hexdigest()
        script_pid = int(pid_file.read_text())
        deploy.send_signal(signal.SIGKILL)
        deploy.wait()
    finally:
        if deploy.poll() is None:
            deploy.kill()
            deploy.wait()
        if script_pid is not None:  # the script, in a session of its own, outlives ferry: end it too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(script_pid, signal.SIGKILL)
    # the next command, then look everywhere a file could have been left
    assert ferry("deployment", "list", project.name).exit_code == 0
    roots = [Path(tempfile.gettempdir()), ferry_home, tmp_path]
    assert files_holding(secret.encode(), roots, since) == []


def test_template_error_inside_a_secret_never_shows_a_fragment_of_it(  # type: ignore[no-untyped-def]
        tmp_path: Path, ferry, prefect_env, monkeypatch) -> None:
    """The issue's reproduction: a secret ``Pa#{ssWord9Z}qq`` used in a step parameter failed with
    "unknown variable 'ssWord9Z'" in the CLI, the logs and Prefect. The error names the variable instead."""
    monkeypatch.setenv("SHOP_DB_PASSWORD", "Pa#{ssWord9Z}qq")
    project = LocalProject(tmp_path / "shop", ferry, environments={"Dev": 1})
    project.write([{"name": "Install", "kind": "script", "roles": ["web"], "parameters": {"DB_PW": "#{Db.Password}"},
                    "script": 'test -n "$DB_PW"'}],
                  variables=[{"name": "Db.Password", "sensitive": True, "value": {"from_env": "SHOP_DB_PASSWORD"}}])
    project.apply()
    project.release("1.0.0")
    result = project.deploy("1.0.0", "Dev")
    assert result.exit_code != 0
    assert "the value of sensitive variable 'Db.Password' does not evaluate as a template" in result.output, \
        result.output
    [record] = project.deployments()
    shown = ferry("deployment", "show", str(record["id"]), "--json")
    for text in (result.output, shown.stdout, str(record)):
        assert "ssWord9Z" not in text and "Pa#{" not in text
