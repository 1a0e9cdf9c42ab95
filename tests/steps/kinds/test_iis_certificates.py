"""The iis-website step with an infrastructure certificate (issue 15 item 4), against the WS-Management STAND-IN:
the certificate travels as a PFX under a one-off password (data, never script text), certificate-import.ps1's
effect — import into Cert:\\LocalMachine\\My, read on the private key for the app pool identity — is recorded
by the stand-in's simulated IIS, and the HTTPS binding is made by its thumbprint. The .ps1 itself is parsed by
tree-sitter-powershell (test_iis_scripts.py); that it does this on Windows only a Windows host shows."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapshots.certificates import parse
from snapshots.model.steps import Binding
from steps.kinds import executor
from steps.kinds.iis_website import iis_parameters
from steps.transports.winrm import WinRmTransport
from tests import certs
from tests.standins.windows_lab import Standin
from tests.steps.kinds.test_iis_website import SHA, build_package, context, sample_step


@pytest.fixture
def web(winrm_http: Standin) -> Iterator[WinRmTransport]:
    winrm_http.edit_iis(lambda s: s.update(sites={}, appPools={}, faults={}, log=[], time_scale=0.001,
                                           certificates=[], certificate_store={}))
    shutil.rmtree(winrm_http.fs(r"C:\ferry\Applications"), ignore_errors=True)
    with WinRmTransport("web-01", winrm_http.spec()) as transport:
        yield transport


def _https_step():  # type: ignore[no-untyped-def]
    step = sample_step()
    https = Binding(protocol="https", port=8443, host="shop.example.test", certificate="site", sni=True)
    return step.model_copy(update={"site": step.site.model_copy(update={"bindings": [*step.site.bindings, https]})})


def test_the_binding_gets_the_certificates_thumbprint() -> None:
    from steps.context import PackageRef

    cert, key = certs.make()
    loaded = parse(certs.pem(cert, key), None, name="site")
    ctx = context(_https_step(), None, PackageRef("OctoFX.Web", "2.0.0", SHA, "OctoFX.Web.2.0.0.zip",
                                                  Path("/feed/OctoFX.Web.2.0.0.zip")))
    ctx.shared["certificates"] = {"site": loaded}
    https = [b for b in iis_parameters(ctx).parameters["Bindings"] if b["Protocol"] == "https"]
    assert https == [{"Protocol": "https", "Ip": "*", "Port": 8443, "Host": "shop.example.test",
                      "Thumbprint": certs.thumbprint(cert), "Sni": True}]


def test_the_certificate_is_imported_its_key_granted_to_the_pool_and_bound(
        web: WinRmTransport, winrm_http: Standin, tmp_path: Path) -> None:
    cert, key = certs.make("shop.example.test")
    loaded = parse(certs.pfx(cert, key, "pfx-pass"), "pfx-pass", name="site")
    package = build_package("1.0.0", tmp_path)
    logs: list[str] = []
    ctx = context(_https_step(), web, package, logs=logs)
    ctx.shared["certificates"] = {"site": loaded}
    executor("iis-website")(ctx)
    iis = winrm_http.iis()
    thumbprint = certs.thumbprint(cert)
    pool = ctx.step.app_pool.name
    assert thumbprint in iis["certificates"]
    assert iis["certificate_store"][thumbprint]["key_acl"] == [f"IIS AppPool\\{pool}"]
    assert iis["certificate_store"][thumbprint]["subject"] == "CN=shop.example.test"
    site = iis["sites"][ctx.step.site.name]
    assert {"protocol": "https", "bindingInformation": "*:8443:shop.example.test", "sslFlags": 1} in site["bindings"]
    assert any(f"certificate site ({thumbprint}) imported into Cert:\\LocalMachine\\My" in line for line in logs)
    assert not any(part in line for line in logs for part in certs.key_lines(key))

    executor("iis-website")(ctx)  # again: already there, only the grant is repeated
    assert [e["op"] for e in winrm_http.iis()["log"]].count("X509Store.Add") == 1
    assert any("is already in Cert:\\LocalMachine\\My" in line for line in logs)
