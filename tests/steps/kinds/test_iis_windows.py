"""The real thing: ferry's WinRM transport against the Windows WinRM service, and the iis-website step against
real IIS. Run by .github/workflows/windows-iis.yml on a Windows runner (which sets FERRY_WINDOWS_*); skipped
everywhere else — on Linux the same behaviour is tested against the WS-Management stand-in."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import urllib.request
from pathlib import Path

import pytest

from snapshots.errors import StepFailed, TransportError
from snapshots.model.infrastructure import WinRmTransport as WinRmSpec
from steps.kinds import executor
from steps.transports.winrm import WinRmTransport
from tests.steps.conftest import ECHO_SCRIPT
from tests.steps.kinds.test_iis_website import build_package, context, sample_step
from tests.steps.transports.test_winrm import TRICKY

pytestmark = [
    pytest.mark.windows,
    pytest.mark.skipif(sys.platform != "win32" or not os.environ.get("FERRY_WINDOWS_HOST"),
                       reason="needs a Windows host with IIS and WinRM over HTTPS "
                              "(run by .github/workflows/windows-iis.yml, which sets FERRY_WINDOWS_*)"),
]


def spec(**changes: object) -> WinRmSpec:
    base = {"kind": "winrm", "host": os.environ.get("FERRY_WINDOWS_HOST", "localhost"), "scheme": "https",
            "auth": "ntlm", "username": os.environ.get("FERRY_WINDOWS_USER", "ferrydeploy"),
            "password": {"from_env": "FERRY_WINDOWS_PASSWORD"}, "ca_file": os.environ.get("FERRY_WINDOWS_CA")}
    base.update(changes)
    return WinRmSpec.model_validate(base)


@pytest.fixture
def windows() -> WinRmTransport:
    transport = WinRmTransport("windows", spec())
    yield transport  # type: ignore[misc]
    transport.close()


def test_values_arrive_unchanged_in_real_powershell(windows: WinRmTransport) -> None:
    result, lines = windows.invoke(ECHO_SCRIPT.read_text(encoding="utf-8"),
                                   parameters={"Values": TRICKY, "EnvNames": ["FERRY_TEST"]},
                                   env={"FERRY_TEST": TRICKY["subexpression"]}, data={"k": TRICKY["newlines"]})
    assert result.ok, result.output_tail
    reply = json.loads(base64.b64decode(next(x for x in lines if x.startswith("##ferry-echo ")).split(" ", 1)[1]))
    assert reply["values"] == TRICKY
    assert reply["env"] == {"FERRY_TEST": TRICKY["subexpression"]}
    assert reply["data"] == {"k": TRICKY["newlines"]}


def test_script_errors_and_exit_codes_come_back_as_text(windows: WinRmTransport) -> None:
    lines: list[str] = []
    result = windows.run("Write-Output 'before'; throw 'it broke: quote '' and `$(x)'", on_line=lines.append)
    assert result.exit_code == 1
    assert lines[0] == "before" and any("ERROR: it broke: quote ' and $(x)" in line for line in lines)
    assert windows.run("exit 7").exit_code == 7


def test_upload_read_write_on_real_windows(windows: WinRmTransport, tmp_path: Path) -> None:
    package = tmp_path / "pkg.bin"
    package.write_bytes(os.urandom(3_000_000))
    digest = hashlib.sha256(package.read_bytes()).hexdigest()
    assert windows.upload(package, r"C:\ferry\test\pkg.bin", digest) is True
    assert windows.upload(package, r"C:\ferry\test\pkg.bin", digest) is False
    windows.write_file(".ferry/journal.json", b'{"x": 1}')
    assert windows.read_file(".ferry/journal.json") == b'{"x": 1}'


def test_wrong_password_and_untrusted_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TransportError, match="refused the credentials"):
        WinRmTransport("windows", spec(password="wrong-password-for-sure"))
    with pytest.raises(TransportError, match="is not trusted"):
        WinRmTransport("windows", spec(ca_file=None))


def test_iis_rolls_v2_over_v1_and_keeps_v1(windows: WinRmTransport, tmp_path: Path) -> None:
    run = executor("iis-website")
    step = sample_step()
    run(context(step, windows, build_package("1.0.0", tmp_path)))
    run(context(step, windows, build_package("2.0.0", tmp_path)))
    _, lines = windows.invoke("Import-Module WebAdministration; (Get-Item 'IIS:\\Sites\\OctoFX').physicalPath; "
                              "(Get-WebAppPoolState -Name OctoFX).Value")
    root = r"C:\ferry\Applications\Production\OctoFX.Web"
    assert lines[:2] == [root + r"\2.0.0", "Started"]
    assert windows.read_file(root + r"\1.0.0\VERSION") == b"1.0.0\n"
    with urllib.request.urlopen("http://localhost:8080/health.htm", timeout=10) as reply:
        assert reply.read().decode().strip() == "ok 2.0.0"


def test_iis_https_binding_without_the_certificate_fails_and_keeps_the_site(windows: WinRmTransport,
                                                                           tmp_path: Path) -> None:
    run = executor("iis-website")
    step = sample_step()
    run(context(step, windows, build_package("1.0.0", tmp_path)))
    broken = step.model_copy(deep=True)
    broken.site.bindings.append(broken.site.bindings[0].model_copy(update={
        "protocol": "https", "port": 8443, "thumbprint": "0" * 40}))
    with pytest.raises(StepFailed, match=r"certificate 0{40} with a private key is not in"):
        run(context(broken, windows, build_package("2.0.0", tmp_path)))
    _, lines = windows.invoke("Import-Module WebAdministration; (Get-Item 'IIS:\\Sites\\OctoFX').physicalPath")
    assert lines[0].endswith(r"\1.0.0")
