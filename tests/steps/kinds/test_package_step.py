"""The ``package`` step against a real lab target over SSH (no mocks): versioned folders, the ``current``
switch, Octopus's script order, values as data, config substitution, retention and skipped uploads."""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapshots.errors import StepFailed
from snapshots.model.steps import PackageStep
from snapshots.octostache import render
from steps.context import PackageRef, StepContext
from steps.kinds import package as package_step
from steps.transports.ssh import SshTransport
from tests.servers.ssh_lab import LabInfo

ORDER = 'echo "$0 $(ferry_var Machine.Name) $PWD" >> "$FERRY_APP_STATE/order.log"\n'
SCRIPTS = {
    "PreDeploy.sh": ORDER,
    "Deploy.sh": ORDER + 'printf "%s" "$(ferry_var Tricky)" > "$FERRY_APP_STATE/tricky.txt"\n'
                         'echo "installed=$(ferry_var "Package[App].InstalledPath")" >> "$FERRY_APP_STATE/order.log"\n'
                         '[ ! -e "$FERRY_APP_STATE/fail-deploy" ] || { echo "deploy broke"; exit 4; }\n',
    "PostDeploy.sh": ORDER + 'echo "current=$(readlink "$FERRY_CURRENT")" >> "$FERRY_APP_STATE/order.log"\n',
    "DeployFailed.sh": ORDER,
}
TRICKY = "it's \"$(touch /tmp/ferry-pwned)\" `id` ; $HOME\nline two"


def make_package(folder: Path, version: str, extra: dict[str, str] | None = None) -> PackageRef:
    """A tar.gz package ``App.<version>.tar.gz`` with the scripts above and two config files."""
    files = {**SCRIPTS, "VERSION": f"{version}\n",
             "config/app.conf": "release=#{Release.Number}\nmachine=#{Machine.Name}\n",
             "config/settings.json": '{\n  "Db": {"Host": "localhost"},\n  "Keep": "me"\n}\n',
             **(extra or {})}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    path = folder / f"App.{version}.tar.gz"
    path.write_bytes(raw.getvalue())
    return PackageRef("App", version, hashlib.sha256(raw.getvalue()).hexdigest(), path.name, path)



@pytest.fixture
def root(dev: SshTransport) -> Iterator[str]:
    """A fresh app root on the target, removed afterwards."""
    path = f"/srv/pkgtest-{secrets.token_hex(4)}"
    try:
        yield path
    finally:
        dev.run(f"rm -rf -- {path}")


def context(dev: SshTransport, lab: LabInfo, ref: PackageRef, root: str, log: list[str], **step: object) -> StepContext:
    model = PackageStep(name="Install App", kind="package", package="App", root="#{App.Root}",
                        substitute={"files": ["config/*.conf"], "structured": ["config/settings.json"]},
                        **step)  # type: ignore[arg-type]
    variables = {"App.Root": root, "Release.Number": ref.version, "Machine.Name": "dev-01", "Tricky": TRICKY,
                 "Db:Host": "db-#{Machine.Name}"}
    return StepContext(deployment_id=1, project="Shop", release=ref.version, environment="Test", step=model,
                       target=lab.target("dev-01"), transport=dev, variables=variables,
                       render=lambda text, where: render(text, variables, where=where), log=log.append,
                       packages={"App": ref})


def read(dev: SshTransport, path: str) -> str:
    data = dev.read_file(path)
    assert data is not None, f"{path} is missing"
    return data.decode()


def test_install_switches_current_runs_scripts_in_order_and_substitutes(dev: SshTransport, lab: LabInfo,
                                                                         root: str, tmp_path: Path) -> None:
    ref = make_package(tmp_path, "1.0.0")
    log: list[str] = []
    package_step.run(context(dev, lab, ref, root, log))
    base = f"{root}/Test/App"
    release = f"{base}/1.0.0"
    assert dev.run(f'[ "$(readlink {base}/current)" = {release} ]').ok
    order = read(dev, f"{base}/order.log").splitlines()
    assert order == [f"./PreDeploy.sh dev-01 {release}", f"./Deploy.sh dev-01 {release}",
                     f"installed={release}", f"./PostDeploy.sh dev-01 {release}", f"current={release}"]
    assert read(dev, f"{base}/tricky.txt") == TRICKY  # a value reached the script as data, byte for byte
    assert dev.run("test ! -e /tmp/ferry-pwned").ok
    assert read(dev, f"{release}/config/app.conf") == "release=1.0.0\nmachine=dev-01\n"
    assert json.loads(read(dev, f"{release}/config/settings.json")) == {"Db": {"Host": "db-dev-01"}, "Keep": "me"}
    assert dev.run(f"test -x {release}/Deploy.sh && test -f {base}/.packages/App.1.0.0.tar.gz").ok
    assert any(f"Package[App].InstalledPath = {release}" in line for line in log)
    assert any(line.startswith("uploaded App.1.0.0.tar.gz") for line in log)


def test_redeploy_skips_the_upload_and_gets_a_fresh_folder(dev: SshTransport, lab: LabInfo, root: str,
                                                           tmp_path: Path) -> None:
    ref = make_package(tmp_path, "1.0.0")
    package_step.run(context(dev, lab, ref, root, []))
    remote = f"{root}/Test/App/.packages/App.1.0.0.tar.gz"
    inode = dev.run(f"stat -c %i {remote} > {root}/inode").ok and read(dev, f"{root}/inode")
    log: list[str] = []
    package_step.run(context(dev, lab, ref, root, log))
    assert any("the target already holds these bytes" in line and "upload skipped" in line for line in log)
    assert not any(line.startswith("uploaded") for line in log)
    dev.run(f"stat -c %i {remote} > {root}/inode")
    assert read(dev, f"{root}/inode") == inode  # the same file: not a byte was sent again
    assert dev.run(f'[ "$(readlink {root}/Test/App/current)" = {root}/Test/App/1.0.0_1 ]').ok


def test_retention_keeps_the_newest_n_and_their_packages(dev: SshTransport, lab: LabInfo, root: str,
                                                         tmp_path: Path) -> None:
    for i, version in enumerate(["1.0.0", "1.1.0", "1.2.0", "1.3.0"]):
        log: list[str] = []
        package_step.run(context(dev, lab, make_package(tmp_path, version), root, log, keep=2))
        dev.run(f"touch -d '-{10 - i} min' {root}/Test/App/{version}")  # install times a clear order apart
    base = f"{root}/Test/App"
    listing = dev.run(f"cd {base} && ls -1 . .packages > {root}/ls").ok and read(dev, f"{root}/ls")
    assert "1.3.0\n" in listing and "1.2.0\n" in listing
    assert "1.0.0\n" not in listing and "1.1.0\n" not in listing
    assert "App.1.3.0.tar.gz" in listing and "App.1.2.0.tar.gz" in listing and "App.1.0.0.tar.gz" not in listing
    assert any("retention (keep 2): kept 1.3.0, 1.2.0; removed 1.1.0" in line for line in log)


def test_the_folder_in_use_is_never_removed(dev: SshTransport, lab: LabInfo, root: str, tmp_path: Path) -> None:
    base = f"{root}/Test/App"
    for i, version in enumerate(["1.0.0", "1.1.0", "1.2.0"]):
        package_step.run(context(dev, lab, make_package(tmp_path, version), root, [], keep=3))
        dev.run(f"touch -d '-{10 - i} min' {base}/{version}")
    dev.run(f"ln -sfn {base}/1.0.0 {base}/current")  # a person pointed `current` back at the oldest by hand
    log: list[str] = []
    ctx = context(dev, lab, make_package(tmp_path, "1.2.0"), root, log, keep=1)
    package_step._retain(package_step._Run(ctx, ctx.packages["App"], base))
    assert dev.run(f"test -d {base}/1.2.0 && test -d {base}/1.0.0 && test ! -e {base}/1.1.0").ok
    assert any("retention (keep 1): kept 1.2.0, 1.0.0; removed 1.1.0" in line for line in log)


def test_a_failing_deploy_script_runs_deploy_failed_and_leaves_current(dev: SshTransport, lab: LabInfo, root: str,
                                                                       tmp_path: Path) -> None:
    package_step.run(context(dev, lab, make_package(tmp_path, "1.0.0"), root, []))
    base = f"{root}/Test/App"
    dev.run(f"touch {base}/fail-deploy && rm {base}/order.log")
    log: list[str] = []
    with pytest.raises(StepFailed) as failure:
        package_step.run(context(dev, lab, make_package(tmp_path, "1.1.0"), root, log))
    message = str(failure.value)
    assert "Install App · dev-01: Deploy.sh failed (exit code 4)" in message
    assert failure.value.output_tail[-1] == "deploy broke"
    order = read(dev, f"{base}/order.log").splitlines()
    assert [line.split()[0] for line in order if line.startswith("./")] == [
        "./PreDeploy.sh", "./Deploy.sh", "./DeployFailed.sh"]
    assert dev.run(f'[ "$(readlink {base}/current)" = {base}/1.0.0 ]').ok  # the live release did not change


def test_unknown_package_and_unsafe_names_are_refused(dev: SshTransport, lab: LabInfo, root: str,
                                                      tmp_path: Path) -> None:
    ref = make_package(tmp_path, "1.0.0")
    ctx = context(dev, lab, ref, root, [])
    ctx.packages = {}
    with pytest.raises(StepFailed, match="the release has no package 'App'"):
        package_step.run(ctx)
    ctx = context(dev, lab, ref, root, [])
    ctx.environment = "../etc"
    with pytest.raises(StepFailed, match=re.escape("environment '../etc' cannot name a folder")):
        package_step.run(ctx)


@pytest.mark.parametrize(("pattern", "matches", "misses"), [
    ("config/*.json", ["config/a.json"], ["config/sub/a.json", "a.json", "config/a.jsonx"]),
    ("**/*.config", ["web.config", "a/b/web.config"], ["web.config.bak"]),
    ("**/settings.json", ["settings.json", "a/b/settings.json"], ["a/settings.jsonc"]),
    ("config/**", [], ["config/a", "config/b/c"]),
    ("app?.[ch]", ["app1.c", "appx.h"], ["app12.c", "app1.o"]),
])
def test_glob_matching_follows_path_glob(pattern: str, matches: list[str], misses: list[str],
                                         tmp_path: Path) -> None:
    regex = package_step.glob_regex(pattern)
    for name in matches + misses:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    found = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob(pattern) if p.is_file())
    assert sorted(n for n in matches + misses if regex.match(n)) == found == sorted(matches)
