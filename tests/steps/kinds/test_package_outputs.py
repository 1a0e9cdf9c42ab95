"""A package's own scripts (Deploy.sh …) set output variables with ``set_octopusvariable`` as Octopus's do: over
SSH to a real lab target, through the capturing transport the engine puts around every step."""

from __future__ import annotations

from pathlib import Path

from steps.kinds import package as package_step
from steps.transports.service_messages import OutputValue, capture
from steps.transports.ssh import SshTransport
from tests.servers.ssh_lab import LabInfo
from tests.steps.kinds.test_package_step import context, make_package, root  # noqa: F401  (fixture)


def test_deploy_sh_sets_output_variables(dev: SshTransport, lab: LabInfo, root: str,  # noqa: F811
                                         tmp_path: Path) -> None:
    ref = make_package(tmp_path, "1.0.0", {"PostDeploy.sh": 'set_octopusvariable Installed "$FERRY_CURRENT"\n'
                                                            'ferry_set Api.Key "k-$(ferry_var Machine.Name)-9z" '
                                                            '-sensitive\n'})
    log: list[str] = []
    got: list[OutputValue] = []
    ctx = context(dev, lab, ref, root, log)
    ctx.transport = capture(dev, got.append, log.append)
    package_step.run(ctx)
    assert got == [OutputValue("Installed", f"{root}/Test/App/current", False),
                   OutputValue("Api.Key", "k-dev-01-9z", True)]
    assert not any("setVariable" in line for line in log)
