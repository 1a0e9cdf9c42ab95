"""The ``iis-website`` step: the parameters iis-deploy.ps1 gets for the sample project (pinned), and the step
against the WS-Management STAND-IN's simulated IIS (not real IIS: see tests/standins/iis_standin.py)."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from snapshots.errors import StepFailed
from snapshots.model.project import Project
from snapshots.model.steps import IisWebsiteStep
from snapshots.octostache import render
from steps.context import PackageRef, StepContext
from steps.kinds import executor
from steps.kinds.iis_website import iis_parameters
from steps.transports.winrm import WinRmTransport
from tests.conftest import EXAMPLES
from tests.standins.windows_lab import Standin

WINDOWS = EXAMPLES / "octofx" / "windows"
SHA = "5" * 64


def sample_step() -> IisWebsiteStep:
    project = Project.model_validate(yaml.safe_load((WINDOWS / "project.yaml").read_text()))
    parent = project.process[0]
    return next(s for s in parent.steps if s.kind == "iis-website")  # type: ignore[union-attr]


def variables(release: str, machine: str = "web-01") -> dict[str, str]:
    return {"App.Port": "8080", "Site.Banner": "OctoFX", "Site:Banner": "OctoFX", "Release.Number": release,
            "Machine.Name": machine, "ConnectionStrings:Default": "Server=db01;Database=OctoFX",
            "Environment.Name": "Production"}


def build_package(version: str, out: Path) -> PackageRef:
    import importlib.util

    spec = importlib.util.spec_from_file_location("octofx_windows_build", WINDOWS / "build_package.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path: Path = module.build(version, out)
    return PackageRef("OctoFX.Web", version, hashlib.sha256(path.read_bytes()).hexdigest(), path.name, path)


def context(step: Any, transport: Any, package: PackageRef, *, release: str | None = None,
            extra: dict[str, str] | None = None, logs: list[str] | None = None) -> StepContext:
    values = variables(release or package.version) | (extra or {})
    sink = logs if logs is not None else []
    return StepContext(deployment_id=1, project="OctoFX", release=release or package.version,
                       environment="Production", step=step, target=None, transport=transport, variables=values,
                       render=lambda text, where: render(text, values, where=where), log=sink.append,
                       packages={package.id: package})


def test_parameters_for_the_sample_project_are_pinned() -> None:
    package = PackageRef("OctoFX.Web", "2.0.0", SHA, "OctoFX.Web.2.0.0.zip", Path("/feed/OctoFX.Web.2.0.0.zip"))
    plan = iis_parameters(context(sample_step(), None, package))
    assert plan.parameters == {
        "Project": "OctoFX",
        "Environment": "Production",
        "Package": {"Id": "OctoFX.Web", "Version": "2.0.0", "Sha256": SHA,
                    "File": r"C:\ferry\Applications\.packages\OctoFX.Web.2.0.0.zip"},
        "Folder": r"C:\ferry\Applications\Production\OctoFX.Web\2.0.0",
        "Journal": r"C:\ferry\Applications\DeploymentJournal.json",
        "Overrides": [],
        "ConfigDigest": "",
        "DeployAs": "website",
        "SiteName": "OctoFX",
        "VirtualPath": "",
        "Bindings": [{"Protocol": "http", "Ip": "*", "Port": 8080, "Host": "", "Thumbprint": None, "Sni": False}],
        "BindingMode": "replace",
        "AppPool": {"Name": "OctoFX", "Runtime": "no-managed-code", "Pipeline": "Integrated",
                    "Identity": "ApplicationPoolIdentity", "UserName": None, "Password": None,
                    "StartMode": "OnDemand"},
        "AppOffline": True,
        "Keep": 3,
        "MaxRetries": 5,
        "RetryDelayMilliseconds": 1000,
        "StopTimeoutSeconds": 120,
    }


def test_parameters_name_every_param_of_the_script() -> None:
    """Every key ferry sends is a parameter iis-deploy.ps1 declares (a typo would be silently ignored)."""
    import re

    from steps.kinds.iis_website import SCRIPTS
    from steps.transports.winrm import load_script

    declared = set(re.findall(r"\$([A-Za-z]+)\s*(?:=|,|\)\s*$)",
                              load_script("iis-deploy.ps1", SCRIPTS).split("$ErrorActionPreference")[0], re.M))
    package = PackageRef("OctoFX.Web", "2.0.0", SHA, "OctoFX.Web.2.0.0.zip", Path("/x"))
    assert set(iis_parameters(context(sample_step(), None, package)).parameters) <= declared


def test_specific_user_https_application_parameters() -> None:
    step = IisWebsiteStep.model_validate({
        "name": "Install API", "kind": "iis-website", "package": "OctoFX.Web", "deploy_as": "application",
        "virtual_path": "/api", "root": r"D:\apps",
        "site": {"name": "#{Site.Name}", "binding_mode": "merge", "bindings": [
            {"protocol": "https", "port": 443, "host": "octofx.example", "sni": True, "thumbprint": "#{Cert}"}]},
        "app_pool": {"name": "OctoFX-API", "identity": "SpecificUser", "username": "CORP\\svc-octofx",
                     "password": "#{Pool.Password}", "start_mode": "AlwaysRunning", "pipeline": "Classic"}})
    package = PackageRef("OctoFX.Web", "2.0.0", SHA, "OctoFX.Web.2.0.0.zip", Path("/x"))
    secret = "p@ss'w\"rd $(x) `n"
    params = iis_parameters(context(step, None, package, extra={
        "Site.Name": "OctoFX", "Cert": "ab" * 20, "Pool.Password": secret})).parameters
    assert params["Folder"] == r"D:\apps\Production\OctoFX.Web\2.0.0"
    assert params["DeployAs"] == "application" and params["VirtualPath"] == "/api"
    assert params["Bindings"] == [{"Protocol": "https", "Ip": "*", "Port": 443, "Host": "octofx.example",
                                   "Thumbprint": "AB" * 20, "Sni": True}]
    assert params["BindingMode"] == "merge"
    assert params["AppPool"] == {"Name": "OctoFX-API", "Runtime": "v4.0", "Pipeline": "Classic",
                                 "Identity": "SpecificUser", "UserName": "CORP\\svc-octofx", "Password": secret,
                                 "StartMode": "AlwaysRunning"}


def test_a_binding_port_variable_that_is_not_a_port_fails_the_step() -> None:
    package = PackageRef("OctoFX.Web", "2.0.0", SHA, "OctoFX.Web.2.0.0.zip", Path("/x"))
    with pytest.raises(StepFailed, match=r"site.bindings\[0\].port renders to 'eighty'"):
        iis_parameters(context(sample_step(), None, package, extra={"App.Port": "eighty"}))


@pytest.fixture
def web(winrm_http: Standin) -> Iterator[WinRmTransport]:
    """A fresh simulated IIS on the HTTP stand-in, and a transport to it."""
    winrm_http.edit_iis(lambda s: s.update(sites={}, appPools={}, faults={}, log=[], time_scale=0.001))
    shutil.rmtree(winrm_http.fs(r"C:\ferry\Applications"), ignore_errors=True)
    with WinRmTransport("web-01", winrm_http.spec()) as transport:
        yield transport


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_v2_over_v1_switches_the_site_and_keeps_v1(web: WinRmTransport, winrm_http: Standin,
                                                  tmp_path: Path) -> None:
    run = executor("iis-website")
    step = sample_step()
    v1, v2 = build_package("1.0.0", tmp_path), build_package("2.0.0", tmp_path)
    logs: list[str] = []
    run(context(step, web, v1, logs=logs))
    assert any("created web site OctoFX" in line for line in logs)
    run(context(step, web, v2, logs=logs))
    iis = winrm_http.iis()
    site, pool = iis["sites"]["OctoFX"], iis["appPools"]["OctoFX"]
    root = r"C:\ferry\Applications\Production\OctoFX.Web"
    assert site["physicalPath"] == root + r"\2.0.0"
    assert site["bindings"] == [{"protocol": "http", "bindingInformation": "*:8080:", "sslFlags": 0}]
    assert pool["state"] == "Started" and pool["managedRuntimeVersion"] == ""
    assert winrm_http.fs(root + r"\1.0.0").is_dir()  # kept for an instant rollback
    assert any(f"switched IIS:\\Sites\\OctoFX from {root}\\1.0.0 to {root}\\2.0.0" in line for line in logs)
    ops = [entry["op"] for entry in iis["log"]]
    last_stop = len(ops) - 1 - ops[::-1].index("Stop-WebAppPool")
    assert ops[last_stop:last_stop + 3] == ["Stop-WebAppPool", "switch", "Start-WebAppPool"]
    # the substituted files, served by the simulated site from its physical path
    address = winrm_http.config.address
    assert get(f"http://{address}:8080/health.htm") == (200, "ok 2.0.0\n")
    assert "OctoFX</h1><p>version 2.0.0 on web-01" in get(f"http://{address}:8080/")[1]
    config = winrm_http.fs(root + r"\2.0.0\web.config").read_text()
    assert '<add key="Site:Banner" value="OctoFX" />' in config
    settings = winrm_http.fs(root + r"\2.0.0\appsettings.json").read_text()
    assert '"Default": "Server=db01;Database=OctoFX"' in settings and '"Banner": "OctoFX"' in settings

    # a rollback to 1.0.0 repoints IIS at the kept folder instead of extracting again
    logs.clear()
    run(context(step, web, v1, logs=logs))
    assert winrm_http.iis()["sites"]["OctoFX"]["physicalPath"] == root + r"\1.0.0"
    assert any("repointed to the kept folder" in line for line in logs)
    assert get(f"http://{address}:8080/health.htm") == (200, "ok 1.0.0\n")


def test_a_failure_mid_switch_leaves_the_site_on_the_old_folder(web: WinRmTransport, winrm_http: Standin,
                                                                tmp_path: Path) -> None:
    run = executor("iis-website")
    step = sample_step()
    run(context(step, web, build_package("1.0.0", tmp_path)))
    message = "The service cannot accept control messages at this time. (Exception from HRESULT: 0x80070425)"
    winrm_http.edit_iis(lambda s: s["faults"].update({"Start-WebAppPool": {"message": message, "count": 5}}))
    logs: list[str] = []
    with pytest.raises(StepFailed) as failed:
        run(context(step, web, build_package("2.0.0", tmp_path), logs=logs))
    root = r"C:\ferry\Applications\Production\OctoFX.Web"
    assert str(failed.value) == (
        f"Install OctoFX.Web: IIS deployment failed: Start-WebAppPool OctoFX failed after 5 attempt(s): {message} "
        f"(IIS:\\Sites\\OctoFX left on {root}\\1.0.0) (exit code 1)")
    assert sum("Start-WebAppPool OctoFX failed (attempt" in line for line in logs) == 4  # retried as Calamari does
    iis = winrm_http.iis()
    assert iis["sites"]["OctoFX"]["physicalPath"] == root + r"\1.0.0"
    assert iis["appPools"]["OctoFX"]["state"] == "Started"
    assert get(f"http://{winrm_http.config.address}:8080/health.htm") == (200, "ok 1.0.0\n")


def test_target_pulls_the_package_from_the_feed_url(web: WinRmTransport, winrm_http: Standin,
                                                    tmp_path: Path) -> None:
    feed = tmp_path / "feed"
    package = build_package("3.0.0", feed)
    handler = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(feed)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        step = sample_step().model_copy(update={"acquire": "target-pulls",
                                                "feed_url": f"http://127.0.0.1:{server.server_address[1]}/"})
        logs: list[str] = []
        executor("iis-website")(context(step, web, package, logs=logs))
    finally:
        server.shutdown()
    assert any("the target downloaded http://127.0.0.1:" in line for line in logs)
    folder = winrm_http.iis()["sites"]["OctoFX"]["physicalPath"]
    assert folder.endswith(r"\3.0.0")
    assert winrm_http.fs(folder + r"\VERSION").read_text() == "3.0.0\n"


@pytest.mark.parametrize(("binding", "expected"), [
    ({"protocol": "https", "port": 443}, "an https binding needs a certificate thumbprint"),
    ({"protocol": "http", "port": 70000}, "port must be between 1 and 65535"),
    ({"protocol": "https", "port": 443, "thumbprint": "not-hex"}, "thumbprint must be 40 hex digits"),
    ({"protocol": "https", "port": 443, "thumbprint": "a" * 40, "sni": True}, "sni needs a host name"),
])
def test_a_bad_binding_is_refused_at_apply(ferry, tmp_path: Path, binding: dict[str, Any],  # type: ignore[no-untyped-def]
                                           expected: str) -> None:
    project = yaml.safe_load((WINDOWS / "project.yaml").read_text())
    project["process"][0]["steps"][1]["site"]["bindings"] = [binding]
    (tmp_path / "project.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    shutil.copy(WINDOWS / "infrastructure.yaml", tmp_path / "infrastructure.yaml")
    result = ferry("apply", str(tmp_path / "infrastructure.yaml"), str(tmp_path / "project.yaml"))
    assert result.exit_code == 1
    assert expected in result.stderr
    assert "project.yaml:" in result.stderr and "bindings" in result.stderr


def test_the_windows_sample_applies(ferry) -> None:  # type: ignore[no-untyped-def]
    result = ferry("apply", str(WINDOWS / "infrastructure.yaml"), str(WINDOWS / "project.yaml"),
                   env={"OCTOFX_DB_PASSWORD": "s3cret"})
    assert result.exit_code == 0, result.output
