"""The iis-website install as ONE PowerShell invocation (issue 17 item 4): the package upload and iis-deploy.ps1 share
one ``powershell -Command -`` process, tested through the WS-Management STAND-IN (not Windows, not PowerShell:
it proves the protocol and the order of lines, not what real PowerShell does with them)."""

from __future__ import annotations

from pathlib import Path

from steps.kinds import executor
from steps.transports.service_messages import capture
from steps.transports.winrm import WinRmTransport
from tests.standins.windows_lab import Standin
from tests.steps.kinds.test_iis_website import build_package, context, get, sample_step, web

__all__ = ["web"]  # the fixture, shared with the other iis-website tests


def test_an_iis_install_is_one_powershell_invocation(web: WinRmTransport, winrm_http: Standin,
                                                     tmp_path: Path) -> None:
    run = executor("iis-website")
    step = sample_step()
    package = build_package("1.0.0", tmp_path)
    logs: list[str] = []
    before = web.commands_started
    run(context(step, capture(web, lambda value: None, logs.append), package, logs=logs))
    assert web.commands_started - before == 1  # upload and deployment script: one invocation
    assert any(line.startswith("sent OctoFX.Web.1.0.0.zip") for line in logs)
    assert any("created web site OctoFX" in line for line in logs)
    assert get(f"http://{winrm_http.config.address}:8080/health.htm") == (200, "ok 1.0.0\n")

    logs.clear()
    before = web.commands_started
    run(context(step, web, package, logs=logs))  # the same package again: nothing sent, still one invocation
    assert web.commands_started - before == 1
    assert any("OctoFX.Web.1.0.0.zip is already on the target (same sha256)" in line for line in logs)
    assert any("repointed to the kept folder" in line for line in logs)
