"""The real thing for the windows-service step: windows-service.ps1 against the real Service Control Manager.
Run by .github/workflows/windows-iis.yml on a Windows runner (which sets FERRY_WINDOWS_*; the runner is its own
target); skipped everywhere else — on Linux the step is tested against the WS-Management stand-in's emulation.

The service is a small C# ServiceBase program compiled here with the .NET Framework's csc.exe; a copy with a
``FAIL`` file beside it throws in OnStart, so the Service Control Manager reports that it could not start."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapshots.errors import StepFailed
from steps.context import PackageRef
from steps.kinds import executor
from steps.transports.winrm import WinRmTransport
from tests.steps.kinds.test_iis_windows import spec
from tests.steps.kinds.test_windows_service import context, step

pytestmark = [
    pytest.mark.windows,
    pytest.mark.skipif(sys.platform != "win32" or not os.environ.get("FERRY_WINDOWS_HOST"),
                       reason="needs a Windows host with WinRM over HTTPS (run by .github/workflows/windows-iis.yml)"),
]

SERVICE_CS = r"""
using System;
using System.IO;
using System.ServiceProcess;

public class FerryTestWorker : ServiceBase {
    public static void Main(string[] args) { ServiceBase.Run(new FerryTestWorker()); }
    protected override void OnStart(string[] args) {
        string here = AppDomain.CurrentDomain.BaseDirectory;
        if (File.Exists(Path.Combine(here, "FAIL"))) { throw new InvalidOperationException("configured to fail"); }
    }
    protected override void OnStop() { }
}
"""
CSC = Path(os.environ.get("WINDIR", r"C:\Windows")) / "Microsoft.NET" / "Framework64" / "v4.0.30319" / "csc.exe"
NAME = "FerryTestWorker"


def build(folder: Path, version: str, *, failing: bool = False) -> PackageRef:
    source = folder / "worker.cs"
    source.write_text(SERVICE_CS)
    exe = folder / "OctoFX.Worker.exe"
    if not exe.exists():
        subprocess.run([str(CSC), "/nologo", "/target:exe", f"/out:{exe}", "/reference:System.ServiceProcess.dll",
                        str(source)], check=True, capture_output=True)
    path = folder / f"OctoFX.Worker.{version}.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(exe, "bin/OctoFX.Worker.exe")
        archive.writestr("VERSION", version)
        if failing:
            archive.writestr("bin/FAIL", "")
    return PackageRef("OctoFX.Worker", version, hashlib.sha256(path.read_bytes()).hexdigest(), path.name, path)


@pytest.fixture
def windows() -> Iterator[WinRmTransport]:
    transport = WinRmTransport("windows", spec())
    try:
        yield transport
    finally:
        transport.invoke(f"Stop-Service -Name {NAME} -Force -ErrorAction SilentlyContinue; "
                         f"& sc.exe delete {NAME} | Out-Null")
        transport.close()


def status(windows: WinRmTransport) -> list[str]:
    result, lines = windows.invoke(f"$s = Get-CimInstance -ClassName Win32_Service | Where-Object {{ $_.Name -eq "
                                   f"'{NAME}' }}; Write-Output $s.State; Write-Output $s.PathName")
    assert result.ok, result.output_tail
    return lines


def test_install_update_and_a_failing_start_reverts_on_windows(windows: WinRmTransport, tmp_path: Path) -> None:
    model = step(service_name=NAME, display_name="ferry test worker", executable="bin/OctoFX.Worker.exe",
                 arguments="", start_mode="manual", stop_timeout=60, start_timeout=60)
    run = executor("windows-service")
    run(context(model, windows, build(tmp_path, "1.0.0")))
    state, path = status(windows)[:2]
    assert state == "Running" and r"\OctoFX.Worker\1.0.0\bin\OctoFX.Worker.exe" in path
    run(context(model, windows, build(tmp_path, "2.0.0")))
    state, path = status(windows)[:2]
    assert state == "Running" and r"\OctoFX.Worker\2.0.0\bin" in path
    with pytest.raises(StepFailed, match="left on"):
        run(context(model, windows, build(tmp_path, "3.0.0", failing=True)))
    state, path = status(windows)[:2]
    assert state == "Running" and r"\OctoFX.Worker\2.0.0\bin" in path  # reverted, running the old folder again
