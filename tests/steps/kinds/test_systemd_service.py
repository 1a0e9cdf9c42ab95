"""The ``systemd-service`` step.

* Over real SSH against a real service manager: the lab's targets run supervisord (PID 1 here is not systemd),
  so the step installs, updates and — when the new release does not start — reverts a service end to end with
  ``manager: supervisor``.
* The systemd implementation as data: the unit file it writes and the exact command lines it runs, checked
  with ``systemd-analyze verify`` where that is installed. Nothing here starts a unit under systemd.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.lab.configs import SUPERVISOR_CONFIG, SUPERVISOR_UNITS
from snapshots.errors import ConfigError, StepFailed
from snapshots.model.steps import SystemdServiceStep
from snapshots.octostache import render
from steps.context import PackageRef, StepContext
from steps.kinds import systemd_service
from steps.kinds.service_managers import ARGV_SCRIPT, Supervisor, Systemd, UnitSpec, argv_env, systemd_quote
from steps.transports.ssh import SshTransport
from tests.servers.ssh_lab import LabInfo

SERVER = """#!/bin/bash
echo "server $(cat VERSION) starting with GREETING=$GREETING"
if [ -e FAIL ]; then echo "boom: $(cat VERSION) cannot start"; exit 3; fi
echo "$(cat VERSION) $$ $GREETING" > "$STATE_FILE"
exec sleep 600
"""
GREETING = "it's 100% $HOME, a=b"


def make_package(folder: Path, version: str, *, failing: bool = False) -> PackageRef:
    files = {"bin/server": SERVER, "VERSION": version, **({"FAIL": ""} if failing else {})}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(text.encode()), 0o755 if name.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(text.encode()))
    path = folder / f"Svc.{version}.tar.gz"
    path.write_bytes(raw.getvalue())
    return PackageRef("Svc", version, hashlib.sha256(raw.getvalue()).hexdigest(), path.name, path)


def context(transport: object, ref: PackageRef, log: list[str], root: str, **fields: object) -> StepContext:
    step = SystemdServiceStep.model_validate({
        "name": "Run Svc", "kind": "systemd-service", "package": "Svc", "service_name": fields.pop("name", "svc"),
        "executable": "bin/server", "root": root, "environment": {"STATE_FILE": f"{root}/running.txt",
                                                                   "GREETING": "#{Greeting}"}, **fields})
    variables = {"Greeting": GREETING, "Release.Number": ref.version}
    return StepContext(deployment_id=1, project="Shop", release=ref.version, environment="Test", step=step,
                       target=None, transport=transport, variables=variables,  # type: ignore[arg-type]
                       render=lambda text, where: render(text, variables, where=where), log=log.append,
                       packages={"Svc": ref})


@pytest.fixture
def root(dev: SshTransport) -> Iterator[str]:
    path = f"/srv/svctest-{secrets.token_hex(4)}"
    try:
        yield path
    finally:
        dev.run(f"rm -rf -- {path}")


@pytest.mark.slow
def test_install_update_and_a_failing_start_that_reverts_over_ssh(dev: SshTransport, lab: LabInfo, root: str,
                                                                  tmp_path: Path) -> None:
    name = f"svc-{secrets.token_hex(3)}"
    fields = {"name": name, "manager": "supervisor", "unit_dir": SUPERVISOR_UNITS,
              "supervisor_config": SUPERVISOR_CONFIG, "start_timeout": 8}
    ctl = ["supervisorctl", "-c", SUPERVISOR_CONFIG]

    def supervisor(*args: str) -> list[str]:
        out: list[str] = []
        dev.run(ARGV_SCRIPT, env=argv_env([*ctl, *args]), on_line=out.append)
        return out

    seen: list[str] = []

    def running() -> list[str]:
        """What the service wrote when it started, once it is a start not seen before (a loaded machine may
        take a moment past supervisord's startsecs to run the script's first lines)."""
        deadline = time.monotonic() + 10
        while True:
            data = dev.read_file(f"{root}/running.txt")
            words = data.decode().split() if data else []
            if (words and words[1] not in seen) or time.monotonic() > deadline:
                seen.extend(words[1:2])
                return words
            time.sleep(0.2)

    try:
        log1: list[str] = []
        systemd_service.run(context(dev, make_package(tmp_path, "1.0.0"), log1, root, **fields))
        first = running()
        version, pid1 = first[:2]
        assert version == "1.0.0"
        assert any(line.startswith(f"$ supervisorctl -c {SUPERVISOR_CONFIG} restart {name}") for line in log1)
        # the environment value arrived intact (quotes, %, $, comma): data, not shell or ini syntax
        assert " ".join(first[2:]) == GREETING
        unit = (dev.read_file(f"{SUPERVISOR_UNITS}/{name}.conf") or b"").decode()
        assert f"command={root}/Test/Svc/current/bin/server" in unit

        systemd_service.run(context(dev, make_package(tmp_path, "2.0.0"), [], root, **fields))
        version, pid2 = running()[:2]
        assert version == "2.0.0" and pid2 != pid1

        log3: list[str] = []
        with pytest.raises(StepFailed) as failed:
            systemd_service.run(context(dev, make_package(tmp_path, "3.0.0", failing=True), log3, root, **fields))
        message = str(failed.value)
        assert "did not become active" in message or "restarting" in message
        assert f"reverted to {root}/Test/Svc/2.0.0" in message
        assert any("boom: 3.0.0 cannot start" in line for line in log3), log3  # the service's log, shown
        current = []
        dev.run(f"readlink {root}/Test/Svc/current", on_line=current.append)
        assert current == [f"{root}/Test/Svc/2.0.0"]
        version, pid3 = running()[:2]
        assert version == "2.0.0" and pid3 != pid2  # started again on the previous release
        staged: list[str] = []  # the unit file (it may hold Environment= secrets) was not left behind staged
        dev.run(f"ls -A {root}/Test/Svc/.units", on_line=staged.append)
        assert staged == []
    finally:
        dev.run(f"rm -f -- {SUPERVISOR_UNITS}/{name}.conf")
        supervisor("update")  # removes (and stops) the program


# ------------------------------------------------------------------------------------------ systemd as data

SPEC = UnitSpec(name="octofx-worker", description="OctoFX worker", user="octofx",
                exec_start=["/opt/ferry/apps/Production/OctoFX.Worker/current/bin/worker", "--port", "80 80",
                            'say "hi"', "100%", "$HOME"],
                working_directory="/opt/ferry/apps/Production/OctoFX.Worker/current",
                current="/opt/ferry/apps/Production/OctoFX.Worker/current",
                environment={"DOTNET_ENVIRONMENT": "Production", "Db": "a b;c"})


def test_systemd_unit_file_is_pinned() -> None:
    assert Systemd().unit(SPEC) == (
        "# Written by ferry (systemd-service step): changes here are replaced at the next deployment.\n"
        "[Unit]\nDescription=OctoFX worker\nAfter=network.target\n\n"
        "[Service]\nType=simple\n"
        'ExecStart="/opt/ferry/apps/Production/OctoFX.Worker/current/bin/worker" "--port" "80 80" '
        '"say \\"hi\\"" "100%%" "$$HOME"\n'
        "WorkingDirectory=/opt/ferry/apps/Production/OctoFX.Worker/current\nUser=octofx\n"
        'Environment="DOTNET_ENVIRONMENT=Production"\nEnvironment="Db=a b;c"\n'
        "Restart=on-failure\nRestartSec=5\n\n[Install]\nWantedBy=multi-user.target\n")


def test_systemd_command_lines_are_pinned() -> None:
    manager = Systemd()
    assert manager.unit_path("octofx-worker") == "/etc/systemd/system/octofx-worker.service"
    assert manager.install("/tmp/x.unit", "octofx-worker") == [
        ["install", "-m", "0640", "-T", "--", "/tmp/x.unit", "/etc/systemd/system/octofx-worker.service"],
        ["rm", "-f", "--", "/tmp/x.unit"]]
    assert manager.reload("octofx-worker") == [["systemctl", "daemon-reload"],
                                               ["systemctl", "enable", "--", "octofx-worker.service"]]
    assert manager.restart("octofx-worker") == [["systemctl", "restart", "--", "octofx-worker.service"]]
    assert manager.is_active("octofx-worker") == ["systemctl", "is-active", "--quiet", "--", "octofx-worker.service"]
    assert manager.logs("octofx-worker") == ["journalctl", "-u", "octofx-worker.service", "-n", "50", "--no-pager"]
    assert Systemd(sudo=True).restart("w") == [["sudo", "-n", "systemctl", "restart", "--", "w.service"]]


def test_a_line_break_in_a_value_cannot_add_a_directive() -> None:
    with pytest.raises(ConfigError):
        systemd_quote("x\nExecStartPre=/bin/rm -rf /")
    with pytest.raises(ConfigError):
        Supervisor().unit(UnitSpec("w", "d", ["/bin/true"], "/", "/", environment={"A": "1\n[program:evil]"}))
    with pytest.raises(ConfigError, match="supervisor cannot carry"):  # no escape exists in its environment=
        Supervisor().unit(UnitSpec("w", "d", ["/bin/true"], "/", "/", environment={"A": "it's \"x\""}))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """systemd's own parser reads the unit (offline: it needs no running systemd). The executable must exist."""
    exe = tmp_path / "current" / "bin" / "worker"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    spec = UnitSpec(name="ferry-verify", description="verify", exec_start=[str(exe), "--a", "100%"],
                    working_directory=str(tmp_path / "current"), current=str(tmp_path / "current"),
                    environment={"K": 'v "q"'})
    unit = tmp_path / "ferry-verify.service"
    unit.write_text(Systemd().unit(spec))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                            timeout=60)
    problems = [line for line in (result.stderr + result.stdout).splitlines() if "ferry-verify" in line]
    assert result.returncode == 0 and problems == [], result.stderr


def test_a_unit_template_gets_service_values_and_project_variables(tmp_path: Path) -> None:
    ref = PackageRef("Svc", "1.2.0", "0" * 64, "Svc.1.2.0.tar.gz", tmp_path / "x")
    template = "[Service]\nExecStart=#{Service.ExecStart}\nEnvironment=\"RELEASE=#{Release.Number}\"\n"
    ctx = context(None, ref, [], "/opt/apps", unit_template=template, arguments=["--greet", "#{Greeting}"])
    spec = systemd_service.unit_spec(ctx, "/opt/apps/Test/Svc")
    text = systemd_service.unit_text(ctx, Systemd(), spec)
    assert text == ('[Service]\nExecStart="/opt/apps/Test/Svc/current/bin/server" "--greet" '
                    '"it\'s 100%% $$HOME, a=b"\nEnvironment="RELEASE=1.2.0"\n')
