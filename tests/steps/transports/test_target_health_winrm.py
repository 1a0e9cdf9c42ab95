"""``ferry target check`` on a WinRM target, through the WS-Management STAND-IN: the real transport (WS-Man,
NTLM, message encryption) runs ferry's target-health.ps1, whose effect the stand-in emulates in Python. What it
proves: the request, the parameters as data and the reply's parsing; the PowerShell version it reports is the
stand-in's. That the script itself gives those facts on Windows only a Windows host proves."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.engine.target_health import check_target
from snapshots.model import Target
from tests.standins.iis_standin import STANDIN_PS_VERSION
from tests.standins.windows_lab import Standin


def test_a_winrm_target_reports_its_powershell_free_disk_and_clock(winrm_http: Standin, tmp_path: Path) -> None:
    target = Target(name="win-01", environment="Prod", transport=winrm_http.spec())
    check = check_target(target, home=tmp_path)
    assert check.reachable, check.reason
    assert check.powershell == STANDIN_PS_VERSION
    assert check.free_bytes is not None and check.free_bytes > 0
    assert check.clock_skew_s is not None and abs(check.clock_skew_s) < 2
    assert check.latency_ms is not None and check.latency_ms > 0


def test_a_wrong_password_is_one_line(winrm_http: Standin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_TEST_WINRM_PASSWORD", "wrong")
    check = check_target(Target(name="win-01", environment="Prod", transport=winrm_http.spec()), home=tmp_path)
    assert not check.reachable and check.reason and "\n" not in check.reason
