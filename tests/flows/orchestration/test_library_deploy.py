"""A release that uses a library variable set and a step template, deployed to local targets through the real
CLI and Prefect server: the template's step runs under the project's step name with its parameters (one from
the set, one defaulted, one sensitive) as data, and the secret stays masked in what the deployment prints."""

from __future__ import annotations

import hashlib

import pytest

from tests.flows.local_project import LocalProject

SECRET = "Lib-Admin-S3cret/42"


@pytest.fixture
def project(tmp_path, ferry, prefect_env, monkeypatch) -> LocalProject:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LIB_ADMIN_PASSWORD", SECRET)
    return LocalProject(tmp_path / "shop", ferry, environments={"Dev": 1})


def test_a_template_step_runs_with_its_parameters_and_the_sets_variables(project: LocalProject) -> None:
    out = project.root / "migrated.txt"
    (project.root / "lib").mkdir(parents=True)
    (project.root / "lib" / "database.yaml").write_text(
        "library_variable_set: Database\nvariables:\n"
        "  - {name: Db.Name, value: shop_dev, scope: {environment: [Dev]}}\n"
        "  - {name: Db.AdminPassword, sensitive: true, value: {from_env: LIB_ADMIN_PASSWORD}}\n")
    (project.root / "lib" / "migrate.yaml").write_text(
        "step_template: Migrate DB\nparameters:\n"
        "  - {name: DbName, label: Database name}\n"
        "  - {name: Timeout, default: 30}\n"
        "  - {name: AdminPassword, sensitive: true, default: '#{Db.AdminPassword}'}\n"
        "step:\n  kind: script\n  roles: [web]\n  script: |\n"
        f"    pw=$(printf %s \"$(ferry_var AdminPassword)\" | sha256sum | cut -c1-64)\n"
        f"    echo \"$(ferry_var Step.Name) $(ferry_var DbName) $(ferry_var Timeout) $pw\" >> {out}\n"
        "    echo \"the password is $(ferry_var AdminPassword)\"\n")
    project.write([{"name": "Migrate", "template": "Migrate DB", "parameters": {"DbName": "#{Db.Name}"}}],
                  include=["Database"])
    files = [project.root / "lib" / "database.yaml", project.root / "lib" / "migrate.yaml",
             project.root / "infrastructure.yaml", project.root / "project.yaml"]
    applied = project.run("apply", *map(str, files))
    assert applied.exit_code == 0, applied.output
    assert "library variable set Database: stored revision 1" in applied.stdout
    project.release("1.0.0")
    result = project.deploy("1.0.0", "Dev")
    assert result.exit_code == 0, result.output
    assert out.read_text().split() == ["Migrate", "shop_dev", "30", hashlib.sha256(SECRET.encode()).hexdigest()]
    assert SECRET not in result.output
    shown = project.run("deployment", "show", str(project.deployments()[0]["id"]), "--json")
    assert shown.exit_code == 0 and SECRET not in shown.output
