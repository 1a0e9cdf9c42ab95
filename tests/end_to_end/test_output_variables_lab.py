"""Output variables on the real SSH lab, through the real CLI and a real Prefect server: a rolling step on
test-01 and test-02 (sshd targets) sets a per-target value and a sensitive one with ``set_octopusvariable``; a
later step reads them per target and unindexed; the log shows neither the service lines nor the secret; and
``ferry deployment show`` lists the values (the sensitive one masked)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.flows.local_project import LocalProject
from tests.servers.ssh_lab import LabInfo

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TARGETS = ["test-01", "test-02"]


def test_output_variables_over_ssh(lab: LabInfo, tmp_path: Path, ferry: Any, ferry_home: Path,
                                   prefect_env: dict[str, str]) -> None:
    secret = f"lab-secret-{uuid.uuid4().hex[:10]}"
    infra = yaml.safe_load(lab.lab.infrastructure_file.read_text())
    infra["lifecycles"] = [{"name": "Default", "phases": [{"name": "Test", "environments": ["Test"]}]}]
    infra["targets"] = [t for t in infra["targets"] if t["name"] in TARGETS]
    (tmp_path / "infrastructure.yaml").write_text(yaml.safe_dump(infra, sort_keys=False))
    name = f"Outputs-{uuid.uuid4().hex[:6]}"
    result_file = f"outputs-{name}.txt"
    project = {"project": name, "lifecycle": "Default", "process": [
        {"name": "Roll", "roles": ["web"], "rolling": {"window": 1}, "steps": [
            {"name": "Measure", "kind": "script",
             "script": 'set_octopusvariable Build "b-$(hostname -s 2>/dev/null || true)-$(ferry_var Machine.Name)"\n'
                       f'set_octopusvariable Token "{secret}" -sensitive\necho measured'},
            {"name": "Report", "kind": "script",
             "script": 'own=$(ferry_var "Octopus.Action[Measure].Output.Build")\n'
                       'first=$(ferry_var "Octopus.Action[Measure].Output[test-01].Build")\n'
                       f'echo "$own|$first" > "$HOME/{result_file}"\n'
                       'echo "token $(ferry_var "Octopus.Action[Measure].Output.Token")"'},
        ]}]}
    (tmp_path / "project.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    assert ferry("apply", str(tmp_path / "infrastructure.yaml"), str(tmp_path / "project.yaml")).exit_code == 0
    assert ferry("release", "create", name, "--version", "1.0.0").exit_code == 0

    deployed = ferry("deploy", name, "1.0.0", "--to", "Test", "--wait", "--local")
    assert deployed.exit_code == 0, deployed.output
    assert "token ********" in deployed.output and secret not in deployed.output
    assert "##ferry[setVariable" not in deployed.output
    for target in TARGETS:
        own, first = (lab.lab.user_home(target) / result_file).read_text().strip().split("|")
        assert own.endswith(f"-{target}") and first.endswith("-test-01")

    (record,) = LocalProject(tmp_path, ferry, name=name).deployments()
    shown = ferry("deployment", "show", str(record["id"]), "--json")
    assert shown.exit_code == 0, shown.output
    outputs = {(o["target"], o["name"]): o["value"] for o in json.loads(shown.stdout)["outputs"]}
    assert outputs[("test-02", "Token")] == "********" and outputs[("test-02", "Build")].endswith("-test-02")
    text = ferry("deployment", "show", str(record["id"]))
    assert "output variables" in text.stdout and secret not in text.stdout + shown.stdout
