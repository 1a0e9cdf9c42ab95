"""The package step as ONE session per install on an SSH target (issue 17 item 4), on the real lab: the package,
values and rendered config travel on one exec's stdin to one program on the target, and the step still logs a
line (with its time) per phase, substitutes, passes values as data, skips a known package and runs
DeployFailed.sh at the failing phase. The transport's ``channels_opened`` counts the sessions it opened."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from snapshots.errors import StepFailed
from steps.kinds import package as package_step
from steps.transports.service_messages import OutputValue, capture
from steps.transports.ssh import SshTransport
from tests.servers.ssh_lab import LabInfo
from tests.steps.kinds.test_package_step import SCRIPTS, TRICKY, context, make_package, read, root

__all__ = ["root"]  # the fixture, shared with the phased tests

NO_PREDEPLOY = {name: text for name, text in SCRIPTS.items() if name != "PreDeploy.sh"}


def test_one_exec_per_install_with_every_phase_logged(dev: SshTransport, lab: LabInfo, root: str,
                                                      tmp_path: Path) -> None:
    base = f"{root}/Test/App"
    ref = make_package(tmp_path, "1.0.0")  # rebuilt below without PreDeploy.sh (which keeps the phased install)
    post = NO_PREDEPLOY["PostDeploy.sh"] + 'ferry_set Api.Key "k-$(ferry_var Machine.Name)" -sensitive\n'
    files = {**NO_PREDEPLOY, "VERSION": "1.0.0\n",
             "PostDeploy.sh": post,
             "config/app.conf": "release=#{Release.Number}\n",
             "config/settings.json": '{"Db": {"Host": "localhost"}}\n'}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(text.encode()), 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(text.encode()))
    ref.path.write_bytes(raw.getvalue())
    ref = type(ref)(ref.id, ref.version, hashlib.sha256(raw.getvalue()).hexdigest(), ref.filename, ref.path)

    log: list[str] = []
    got: list[OutputValue] = []
    ctx = context(dev, lab, ref, root, log)
    ctx.transport = capture(dev, got.append, log.append)  # as the engine wraps every step's transport
    before = dev.channels_opened
    package_step.run(ctx)
    assert dev.channels_opened - before == 1  # one exec: no SFTP, no separate upload, script or switch sessions
    release = f"{base}/1.0.0"
    for expected in ("uploaded App.1.0.0.tar.gz", f"extracted into {release}", "running Deploy.sh",
                     "Deploy.sh finished in ", "running PostDeploy.sh", "PostDeploy.sh finished in ",
                     f"current -> {release}", "retention (keep 3): kept 1.0.0"):
        assert any(line.startswith(expected) for line in log), (expected, log)
    assert read(dev, f"{base}/tricky.txt") == TRICKY  # a value reached the script as data, byte for byte
    assert got == [OutputValue("Api.Key", "k-dev-01", True)]  # an output variable, out of the log
    assert not any("setVariable" in line for line in log)
    assert read(dev, f"{release}/config/app.conf") == "release=1.0.0\n"
    assert json.loads(read(dev, f"{release}/config/settings.json")) == {"Db": {"Host": "db-dev-01"}}
    assert dev.run(f"stat -c %a {release}/config/app.conf | grep -qx 640").ok  # config_file_mode, as phased
    assert dev.run("ls /tmp | grep -q '^ferry-install-'").exit_code != 0  # values stayed in memory

    log = []
    dev.run(f"touch {base}/fail-deploy")
    before = dev.channels_opened
    with pytest.raises(StepFailed) as failure:
        package_step.run(context(dev, lab, ref, root, log))
    assert dev.channels_opened - before == 2  # the install, then DeployFailed.sh (a failure's extra session)
    assert "Install App · dev-01: Deploy.sh failed (exit code 4)" in str(failure.value)
    assert failure.value.output_tail[-1] == "deploy broke"
    assert any("upload skipped" in line for line in log)
    order = [line.split()[0] for line in read(dev, f"{base}/order.log").splitlines() if line.startswith("./")]
    assert order[-2:] == ["./Deploy.sh", "./DeployFailed.sh"]  # DeployFailed.sh at the failing phase
    assert dev.run(f'[ "$(readlink {base}/current)" = {release} ]').ok  # the live release did not change
