"""The ``windows-service`` step: the parameters windows-service.ps1 gets (pinned, values as data), and the step
against the WS-Management STAND-IN's simulated Service Control Manager (tests/standins/service_standin.py) —
not Windows: it proves ferry's side and the script's intended sequence, not that the .ps1 runs so on Windows."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snapshots.errors import StepFailed
from snapshots.model.steps import WindowsServiceStep
from snapshots.octostache import render
from steps.context import PackageRef, StepContext
from steps.kinds import executor
from steps.kinds.windows_service import service_parameters
from steps.transports.winrm import WinRmTransport
from tests.standins.windows_lab import Standin

SECRET = "p@ss'w\"rd $(whoami) `n"
ROOT = r"C:\ferry\Applications"


def step(**fields: Any) -> WindowsServiceStep:
    return WindowsServiceStep.model_validate({
        "name": "Install worker", "kind": "windows-service", "package": "OctoFX.Worker",
        "service_name": "OctoFX.Worker", "display_name": "OctoFX worker (#{Environment.Name})",
        "executable": "bin/OctoFX.Worker.exe", "arguments": "--port #{Worker.Port}", **fields})


def make_package(folder: Path, version: str, *, failing: bool = False) -> PackageRef:
    path = folder / f"OctoFX.Worker.{version}.zip"
    with zipfile.ZipFile(path, "w") as archive:
        exe = b"MZ worker " + version.encode() + (b" FAIL-TO-START" if failing else b"")
        archive.writestr("bin/OctoFX.Worker.exe", exe)
        archive.writestr("OctoFX.Worker.exe.config", '<configuration><appSettings><add key="Release" '
                                                     'value="#{Release.Number}"/></appSettings></configuration>')
    data = path.read_bytes()
    return PackageRef("OctoFX.Worker", version, hashlib.sha256(data).hexdigest(), path.name, path)


def context(model: WindowsServiceStep, transport: Any, ref: PackageRef, logs: list[str] | None = None) -> StepContext:
    values = {"Worker.Port": "8081", "Environment.Name": "Production", "Release.Number": ref.version,
              "Worker.Password": SECRET}
    sink = logs if logs is not None else []
    return StepContext(deployment_id=1, project="OctoFX", release=ref.version, environment="Production", step=model,
                       target=None, transport=transport, variables=values,
                       render=lambda text, where: render(text, values, where=where), log=sink.append,
                       packages={ref.id: ref})


def test_parameters_are_pinned() -> None:
    ref = PackageRef("OctoFX.Worker", "2.0.0", "5" * 64, "OctoFX.Worker.2.0.0.zip", Path("/x"))
    model = step(start_mode="delayed", account="custom", username=r".\svc-octofx", password="#{Worker.Password}",
                 dependencies=["W3SVC"], recovery={"actions": ["restart", "none"], "restart_delay_ms": 5000,
                                                   "reset_period": 3600}, stop_timeout=30)
    assert service_parameters(context(model, None, ref)).parameters == {
        "Project": "OctoFX", "Environment": "Production",
        "Package": {"Id": "OctoFX.Worker", "Version": "2.0.0", "Sha256": "5" * 64,
                    "File": r"C:\ferry\Applications\.packages\OctoFX.Worker.2.0.0.zip"},
        "Folder": r"C:\ferry\Applications\Production\OctoFX.Worker\2.0.0",
        "Journal": r"C:\ferry\Applications\DeploymentJournal.json", "Overrides": [], "ConfigDigest": "",
        "ServiceName": "OctoFX.Worker", "DisplayName": "OctoFX worker (Production)", "Description": "",
        "Executable": r"bin\OctoFX.Worker.exe", "Arguments": "--port 8081", "StartMode": "delayed",
        "Account": "custom", "UserName": r".\svc-octofx", "Password": SECRET, "Dependencies": ["W3SVC"],
        "Recovery": {"Actions": ["restart", "none"], "RestartDelayMilliseconds": 5000, "ResetPeriodSeconds": 3600},
        "Keep": 3, "StopTimeoutSeconds": 30, "StartTimeoutSeconds": 120}


def test_parameters_name_every_param_of_the_script() -> None:
    """Every key ferry sends is a parameter windows-service.ps1 declares (a typo would be silently ignored)."""
    import re

    from steps.kinds.powershell_scripts import compose

    params = compose("windows-service.ps1").split("$ErrorActionPreference")[0]
    declared = set(re.findall(r"\$([A-Za-z]+)\s*(?:=|,|\)\s*$)", params, re.M))
    ref = PackageRef("OctoFX.Worker", "2.0.0", "5" * 64, "OctoFX.Worker.2.0.0.zip", Path("/x"))
    assert set(service_parameters(context(step(), None, ref)).parameters) <= declared


@pytest.fixture
def win(winrm_http: Standin) -> Iterator[WinRmTransport]:
    (winrm_http.state_dir / "services.json").unlink(missing_ok=True)
    shutil.rmtree(winrm_http.fs(ROOT), ignore_errors=True)
    with WinRmTransport("win-01", winrm_http.spec()) as transport:
        yield transport


def services(server: Standin) -> dict[str, Any]:
    return json.loads((server.state_dir / "services.json").read_text())["services"]  # type: ignore[no-any-return]


def test_install_update_and_a_service_that_fails_to_start_reverts(win: WinRmTransport, winrm_http: Standin,
                                                                   tmp_path: Path) -> None:
    model = step(account="custom", username=r".\svc-octofx", password="#{Worker.Password}", start_mode="delayed",
                 dependencies=[], substitute={"files": ["*.config"]})
    run = executor("windows-service")
    logs: list[str] = []
    run(context(model, win, make_package(tmp_path, "1.0.0"), logs))
    worker = services(winrm_http)["OctoFX.Worker"]
    v1 = rf"{ROOT}\Production\OctoFX.Worker\1.0.0"
    assert worker["status"] == "Running" and worker["pathName"] == rf'"{v1}\bin\OctoFX.Worker.exe" --port 8081'
    assert worker["startName"] == r".\svc-octofx" and worker["delayedAutoStart"] is True
    assert worker["passwordSha256"] == hashlib.sha256(SECRET.encode()).hexdigest()  # arrived intact, as data
    assert worker["recovery"] == {"reset": 86400, "actions": "restart/60000/restart/60000//0"}  # sc.exe's syntax
    assert worker["displayName"] == "OctoFX worker (Production)"
    config = winrm_http.fs(v1 + r"\OctoFX.Worker.exe.config").read_text()
    assert 'value="1.0.0"' in config  # substituted on the worker
    assert any("service OctoFX.Worker: created, Running" in line for line in logs), logs
    # the password travelled as data: not in the step's log, the stand-in's state or its own log
    assert not any(SECRET in line for line in logs)
    assert SECRET not in (winrm_http.state_dir / "services.json").read_text()
    assert SECRET not in (winrm_http.state_dir / "standin.log").read_text(errors="replace")

    run(context(model, win, make_package(tmp_path, "2.0.0")))
    v2 = rf"{ROOT}\Production\OctoFX.Worker\2.0.0"
    worker = services(winrm_http)["OctoFX.Worker"]
    assert worker["status"] == "Running" and worker["pathName"].startswith(f'"{v2}\\')
    ops = [e["op"] for e in json.loads((winrm_http.state_dir / "services.json").read_text())["log"]]
    assert ops[-3:] == ["Stop-Service", "Change", "Start-Service"]  # stop → switch → start

    with pytest.raises(StepFailed) as failed:
        run(context(model, win, make_package(tmp_path, "3.0.0", failing=True)))
    assert "Cannot start service OctoFX.Worker" in str(failed.value)
    assert f"left on \"{v2}\\bin\\OctoFX.Worker.exe\" --port 8081" in str(failed.value)
    worker = services(winrm_http)["OctoFX.Worker"]
    assert worker["status"] == "Running" and worker["pathName"].startswith(f'"{v2}\\')  # reverted and restarted
    journal = json.loads(winrm_http.fs(ROOT + r"\DeploymentJournal.json").read_text())["entries"]
    assert [e["version"] for e in journal if e.get("service") == "OctoFX.Worker"] == ["2.0.0", "1.0.0"]


def test_a_service_that_does_not_stop_in_time_fails_the_step(win: WinRmTransport, winrm_http: Standin,
                                                             tmp_path: Path) -> None:
    model = step(stop_timeout=5)
    run = executor("windows-service")
    run(context(model, win, make_package(tmp_path, "1.0.0")))
    table = json.loads((winrm_http.state_dir / "services.json").read_text())
    table["services"]["OctoFX.Worker"]["stop_hangs"] = True
    (winrm_http.state_dir / "services.json").write_text(json.dumps(table))
    with pytest.raises(StepFailed, match="did not reach Stopped within 5 s"):
        run(context(model, win, make_package(tmp_path, "2.0.0")))
    v1 = rf"{ROOT}\Production\OctoFX.Worker\1.0.0"
    assert services(winrm_http)["OctoFX.Worker"]["pathName"].startswith(f'"{v1}\\')  # the old path stays


def test_windows_service_refuses_an_ssh_style_transport(tmp_path: Path) -> None:
    ref = make_package(tmp_path, "1.0.0")
    with pytest.raises(StepFailed, match="winrm transport"):
        executor("windows-service")(context(step(), object(), ref))
