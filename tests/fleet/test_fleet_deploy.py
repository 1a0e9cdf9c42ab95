"""Machine policies and certificates in real deployments (issue 15 items 1 and 4): local targets and a target on
a loopback port nothing listens on, through the CLI and a real Prefect server."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import certs
from tests.conftest import CliResult
from tests.fleet.cli import ferry as in_process
from tests.fleet.test_targets import dead_ssh_target
from tests.flows.local_project import LocalProject
from tests.flows.orchestration.test_schedules import package

POLICY = {"name": "Tolerant", "unavailable_targets": "skip", "exclude_unhealthy_for": "30m"}


def hybrid(ferry: Any, home: Path) -> Any:
    """``ferry deploy`` as a process of its own (it runs the flow); every other command in this process (no
    interpreter start: the suite is slow enough)."""

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> CliResult:
        if args[0] == "deploy":
            return ferry(*args, env=env, input=input)  # type: ignore[no-any-return]
        outcome = in_process(home, *args, env=env)
        return CliResult(outcome.code, outcome.stdout, outcome.stderr)

    return run


@pytest.fixture
def project(tmp_path: Path, ferry: Any, ferry_home: Path, prefect_env: dict[str, str]) -> LocalProject:
    return LocalProject(tmp_path / "shop", hybrid(ferry, ferry_home), environments={"Dev": 2})


def _edit_infra(project: LocalProject, change: Any) -> None:
    path = project.root / "infrastructure.yaml"
    infra = yaml.safe_load(path.read_text())
    change(infra)
    path.write_text(yaml.safe_dump(infra, sort_keys=False))


def _results(project: LocalProject, deployment_id: int) -> list[dict[str, Any]]:
    return project.show(deployment_id)["results"]  # type: ignore[no-any-return]


def test_a_skip_policy_leaves_an_unreachable_target_out_and_reports_it(project: LocalProject) -> None:
    project.write([{"name": "Install", "kind": "script", "roles": ["web"], "script": "echo installed"}])
    _edit_infra(project, lambda infra: (infra.setdefault("machine_policies", []).append(POLICY),
                                        infra["targets"].append(dead_ssh_target(environment="Dev"))))
    project.apply()
    project.release("1.0.0")
    first = project.deploy("1.0.0", "Dev")
    assert first.exit_code == 0, first.output
    assert "1 target(s) skipped as unreachable (machine policy): gone-01" in first.output
    record = project.deployments()[0]
    assert record["state"] == "Success"
    rows = {(r["step"], r["target"]): r for r in _results(project, record["id"])}
    assert rows[("Install", "gone-01")]["state"] == "skipped"
    assert rows[("Install", "gone-01")]["message"].startswith("skipped: unreachable (connect:")
    assert rows[("Install", "dev-01")]["state"] == rows[("Install", "dev-02")]["state"] == "success"
    listed = {t["name"]: t for t in json.loads(project.run("target", "list", "--json").stdout)["items"]}
    assert listed["dev-01"]["holds"]["Shop/Dev"]["release"] == "1.0.0"  # from the deployment records
    assert listed["gone-01"]["holds"] == {}

    # the health check records it unhealthy: the next deployment leaves it out before connecting
    assert project.run("target", "check", "gone-01").exit_code == 1
    second = project.deploy("1.0.0", "Dev", "--force")
    assert second.exit_code == 0, second.output
    rows = {(r["step"], r["target"]): r for r in _results(project, project.deployments()[0]["id"])}
    assert rows[("Machine policy", "gone-01")]["message"].startswith("skipped: unhealthy at the health check of")
    assert ("Install", "gone-01") not in rows
    assert rows[("Install", "dev-01")]["state"] == "success"


def test_the_package_step_writes_a_certificate_as_pem_files_and_an_expired_one_is_refused(
        project: LocalProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project.environments = {"Dev": 1}
    tls = tmp_path / "tls"
    project.write([{"name": "Web", "kind": "package", "package": "Shop.Web", "roles": ["web"],
                    "root": str(tmp_path / "apps"), "run_scripts": False,
                    "certificates": [{"name": "site", "path": str(tls)}]}], packages=["Shop.Web"])
    cert, key = certs.make("shop.example.test", days=20)
    (project.root / "site.pfx").write_bytes(certs.pfx(cert, key, "pfx-password"))
    monkeypatch.setenv("SITE_PFX_PASSWORD", "pfx-password")
    _edit_infra(project, lambda infra: infra.__setitem__("certificates", [
        {"name": "site", "source": "site.pfx", "password": {"from_env": "SITE_PFX_PASSWORD"}}]))
    project.apply()
    assert project.run("package", "push", str(package(tmp_path / "packages", "1.0.0"))).exit_code == 0
    project.release("1.0.0")
    deployed = project.deploy("1.0.0", "Dev")
    assert deployed.exit_code == 0, deployed.output
    assert "certificate 'site' (CN=shop.example.test) expires on" in deployed.output  # within 30 days: a warning
    crt, pem_key = tls / "site.crt", tls / "site.key"
    assert stat.S_IMODE(crt.stat().st_mode) == stat.S_IMODE(pem_key.stat().st_mode) == 0o600
    assert certs.key_lines(key)[0] in pem_key.read_text() and "BEGIN CERTIFICATE" in crt.read_text()
    assert not any(line in deployed.output for line in certs.key_lines(key))

    expired, old_key = certs.make("shop.example.test", expired=True)
    (project.root / "site.pfx").write_bytes(certs.pfx(expired, old_key, "pfx-password"))
    project.apply()
    before = len(project.deployments())
    refused = project.deploy("1.0.0", "Dev", "--force")
    assert refused.exit_code == 3  # refused before start
    assert refused.stderr.strip().startswith("error: certificate 'site' (CN=shop.example.test, thumbprint ")
    assert "expired on" in refused.stderr and refused.stderr.strip().count("\n") == 0
    assert len(project.deployments()) == before
