"""XDT transforms inside the steps: worker-side before upload, in Octopus's order (#{...} substitution, then
Release/<Environment>/listed transforms, then structured variables) — iis-website (computed overrides, no
target needed) and the Linux package step against a lab target over SSH."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from snapshots.errors import ConfigError
from snapshots.model.steps import PackageStep
from snapshots.octostache import render
from steps.context import PackageRef, StepContext
from steps.kinds import package as package_step
from steps.kinds.iis_website import substituted_files
from steps.transports.ssh import SshTransport
from tests.servers.ssh_lab import LabInfo
from tests.steps.kinds.test_iis_website import context as iis_context
from tests.steps.kinds.test_iis_website import sample_step

NS = 'xmlns:xdt="http://schemas.microsoft.com/XML-Document-Transform"'
WEB = ('<?xml version="1.0"?>\n<configuration>\n  <appSettings>\n    <add key="Banner" value="#{Site.Banner}" />\n'
       '  </appSettings>\n  <system.web>\n    <compilation debug="true" targetFramework="4.8" />\n'
       '  </system.web>\n</configuration>\n')
FILES = {
    "web.config": WEB,
    "web.Release.config": f'<configuration {NS}><system.web><compilation xdt:Transform="RemoveAttributes(debug)"/>'
                          "</system.web></configuration>",
    "web.Production.config": f'<configuration {NS}><appSettings><add key="Env" value="prod" '
                             'xdt:Transform="Insert"/></appSettings></configuration>',
    "web.Test.config": f'<configuration {NS}><appSettings xdt:Transform="RemoveAll"/></configuration>',
    "web.Custom.config": f'<configuration {NS}><appSettings><add key="Custom" value="#{{Machine.Name}}" '
                         'xdt:Transform="Insert"/></appSettings></configuration>',
}
EXPECTED = ('<?xml version="1.0"?>\n<configuration>\n  <appSettings>\n    <add key="Banner" value="OctoFX" />\n'
            '    <add key="Env" value="prod" />\n    <add key="Custom" value="web-01" />\n  </appSettings>\n'
            '  <system.web>\n    <compilation targetFramework="4.8" />\n  </system.web>\n</configuration>\n')


def zip_package(folder: Path, files: dict[str, str]) -> PackageRef:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    path = folder / "OctoFX.Web.3.0.0.zip"
    path.write_bytes(raw.getvalue())
    return PackageRef("OctoFX.Web", "3.0.0", hashlib.sha256(raw.getvalue()).hexdigest(), path.name, path)


def test_iis_step_substitutes_then_transforms_release_environment_and_listed(tmp_path: Path) -> None:
    step = type(sample_step()).model_validate({
        **sample_step().model_dump(), "substitute": {"files": ["*.config"], "structured": []},
        "transforms": ["web.Custom.config => web.config",
                       {"transform": "web.Absent.config => web.config", "optional": True}]})
    package = zip_package(tmp_path, FILES)
    logs: list[str] = []
    overrides = substituted_files(iis_context(step, None, package, logs=logs), package.path)
    changed = {o["Path"]: base64.b64decode(o["Content"]).decode() for o in overrides}
    assert changed["web.config"] == EXPECTED
    assert "transform: web.config: applied web.Release.config" in logs
    assert "web.Test.config" not in " ".join(logs)  # another environment's file is not applied


def test_iis_step_refuses_a_missing_required_transform_before_any_upload(tmp_path: Path) -> None:
    step = type(sample_step()).model_validate(
        {**sample_step().model_dump(), "transforms": ["web.#{Environment.Name}.Extra.config => web.config"]})
    package = zip_package(tmp_path, FILES)
    with pytest.raises(ConfigError, match=r"^transform 'web.Production.Extra.config => web.config': the package has "
                                          r"no file 'web.Production.Extra.config' \(mark the entry optional"):
        substituted_files(iis_context(step, None, package), package.path)


def test_package_step_transforms_on_the_worker_and_writes_back_over_ssh(dev: SshTransport, lab: LabInfo,
                                                                         tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in FILES.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "App.1.0.0.tar.gz"
    path.write_bytes(raw.getvalue())
    ref = PackageRef("App", "1.0.0", hashlib.sha256(raw.getvalue()).hexdigest(), path.name, path)
    root = f"/srv/xdt-{ref.sha256[:8]}"
    variables = {"Site.Banner": "OctoFX", "Machine.Name": "web-01"}
    step = PackageStep(name="Install", kind="package", package="App", root=root,
                       substitute={"files": ["*.config"]},  # type: ignore[arg-type]
                       transforms=["web.Custom.config"])  # type: ignore[list-item]
    ctx = StepContext(deployment_id=1, project="Shop", release="1.0.0", environment="Production", step=step,
                      target=lab.target("dev-01"), transport=dev, variables=variables,
                      render=lambda text, where: render(text, variables, where=where), log=lambda _l: None,
                      packages={"App": ref})
    try:
        package_step.run(ctx)
        data = dev.read_file(f"{root}/Production/App/1.0.0/web.config")
        assert data is not None and data.decode() == EXPECTED
    finally:
        dev.run(f"rm -rf -- {root}")


@pytest.mark.parametrize("files", [{"web.config": WEB.replace("#{Site.Banner}", "OctoFX"),
                                    "web.Release.config": FILES["web.Release.config"]},
                                   {"web.config": WEB}])
def test_package_step_automatic_transforms_without_substitution(dev: SshTransport, lab: LabInfo, tmp_path: Path,
                                                                files: dict[str, str]) -> None:
    """No substitute: and no transforms: — the worker's copy of the package says whether X.Release.config exists;
    when it does the transform runs, when it does not the file is left exactly as packaged."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, body in files.items():
            data = body.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "App.2.0.0.tar.gz"
    path.write_bytes(raw.getvalue())
    ref = PackageRef("App", "2.0.0", hashlib.sha256(raw.getvalue()).hexdigest(), path.name, path)
    root = f"/srv/xdt-auto-{ref.sha256[:8]}"
    step = PackageStep(name="Install", kind="package", package="App", root=root)
    ctx = StepContext(deployment_id=1, project="Shop", release="2.0.0", environment="Production", step=step,
                      target=lab.target("dev-01"), transport=dev, variables={},
                      render=lambda text, where: render(text, {}, where=where), log=lambda _l: None,
                      packages={"App": ref})
    try:
        package_step.run(ctx)
        data = dev.read_file(f"{root}/Production/App/2.0.0/web.config")
        assert data is not None
        if "web.Release.config" in files:
            assert data.decode() == files["web.config"].replace(' debug="true"', "")
        else:
            assert data.decode() == files["web.config"]
    finally:
        dev.run(f"rm -rf -- {root}")
