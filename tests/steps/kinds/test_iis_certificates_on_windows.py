"""The certificate half of ``iis-website`` on real Windows (issue 15 item 4): run by
.github/workflows/windows-iis.yml (``pytest -m windows tests/steps``) on a Windows runner with IIS; skipped
everywhere else — on Linux the WS-Management stand-in *emulates* certificate-import.ps1
(test_iis_certificates.py). Here: .NET imports the PFX into Cert:\\LocalMachine\\My with its key, the app pool
identity gets read on the key file, and IIS's HTTPS binding carries the certificate's hash."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapshots.certificates import parse
from snapshots.model.steps import Binding
from steps.kinds import executor
from steps.transports.winrm import WinRmTransport
from tests import certs
from tests.steps.kinds.test_iis_website import build_package, context, sample_step

pytestmark = [
    pytest.mark.windows,
    pytest.mark.skipif(sys.platform != "win32" or not os.environ.get("FERRY_WINDOWS_HOST"),
                       reason="needs a Windows host with IIS and WinRM over HTTPS "
                              "(run by .github/workflows/windows-iis.yml, which sets FERRY_WINDOWS_*)"),
]


@pytest.fixture
def windows() -> Iterator[WinRmTransport]:
    from tests.steps.kinds.test_iis_windows import spec

    transport = WinRmTransport("windows", spec())
    yield transport
    transport.close()


def _ps(windows: WinRmTransport, script: str) -> list[str]:
    result, lines = windows.invoke(script)
    assert result.ok, result.output_tail
    return [line.strip() for line in lines if line.strip()]


def test_the_certificate_is_imported_granted_and_bound(windows: WinRmTransport, tmp_path: Path) -> None:
    cert, key = certs.make("shop.ferry-test.local")
    loaded = parse(certs.pfx(cert, key, "pfx-pass"), "pfx-pass", name="site")
    step = sample_step()
    https = Binding(protocol="https", port=8443, host="shop.ferry-test.local", certificate="site", sni=True)
    step = step.model_copy(update={"site": step.site.model_copy(update={"bindings": [*step.site.bindings, https]})})
    ctx = context(step, windows, build_package("1.0.0", tmp_path))
    ctx.shared["certificates"] = {"site": loaded}
    executor("iis-website")(ctx)
    thumbprint = certs.thumbprint(cert)
    pool = step.app_pool.name if step.app_pool else ""
    assert _ps(windows, f"(Get-Item -LiteralPath 'Cert:\\LocalMachine\\My\\{thumbprint}').HasPrivateKey") == ["True"]
    bound = _ps(windows, "Import-Module WebAdministration; (Get-WebBinding -Name 'OctoFX' -Protocol https "
                         "-Port 8443 -HostHeader 'shop.ferry-test.local').certificateHash")
    assert bound == [thumbprint]
    acl = _ps(windows, f"""
$c = Get-Item -LiteralPath 'Cert:\\LocalMachine\\My\\{thumbprint}'
$k = [System.Security.Cryptography.X509Certificates.ECDsaCertificateExtensions]::GetECDsaPrivateKey($c)
$f = Join-Path $env:ProgramData ('Microsoft\\Crypto\\Keys\\' + $k.Key.UniqueName)
(Get-Acl -LiteralPath $f).Access | ForEach-Object {{ [string]$_.IdentityReference }}""")
    assert f"IIS APPPOOL\\{pool}".lower() in [a.lower() for a in acl]
