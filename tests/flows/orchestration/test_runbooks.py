"""Runbooks (issue 14, item 3) through the real CLI on local targets running real bash, in real Prefect flow runs:
a published snapshot runs (not the live recipe) with the project's variables and output variables between its
steps, only on the targets asked for; the run is recorded beside deployments with who asked; it writes no
journal and moves no lifecycle; a changed recipe is flagged until published again, and an older snapshot can
still be run. Refusals are one line and record nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.flows.local_project import LocalProject

pytestmark = pytest.mark.postgres

PROCESS = [{"name": "Install", "kind": "script", "roles": ["web"], "script": 'echo "installed" > "$HOME/installed"'}]


def _runbook(message: str) -> dict[str, Any]:
    return {"name": "Recycle app pool", "description": "Recycle the pool on the web servers",
            "environments": ["Prod"], "roles": ["web"],
            "process": [
                {"name": "Stop pool", "kind": "script", "roles": ["web"],
                 "script": 'ferry_set StoppedAt "$(ferry_var Pool.Name)@$(ferry_var Machine.Name)"'},
                {"name": "Start pool", "kind": "script", "roles": ["web"],
                 "script": f'echo "{message} $(ferry_var "Octopus.Action[Stop pool].Output.StoppedAt")" '
                           '>> "$HOME/recycled"'}]}


def _json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_published_runbook_runs_on_chosen_targets_and_moves_nothing(tmp_path: Path, ferry: Any,
                                                                      prefect_env: dict[str, str]) -> None:
    project = LocalProject(tmp_path / "shop", ferry, environments={"Dev": 1, "Prod": 3})
    variables = [{"name": "Pool.Name", "value": "ShopPool"}]
    project.write(PROCESS, variables, runbooks=[_runbook("v1")])
    project.apply()
    project.release("1.0.0")

    unpublished = project.run("runbook", "run", "Shop", "Recycle app pool", "--to", "Prod", "--wait")
    assert unpublished.exit_code == 3  # not found
    assert "error: runbook 'Recycle app pool' of Shop has no published snapshot" in unpublished.stderr
    published = _json(project.run("runbook", "publish", "Shop", "Recycle app pool", "--json"))
    assert published["snapshot"] == 1 and len(published["digest"]) == 64

    ran = project.run("runbook", "run", "Shop", "Recycle app pool", "--to", "Prod", "--target", "prod-01",
                      "--target", "prod-03", "--wait")
    assert ran.exit_code == 0, ran.output
    assert "runbook run #1: Shop 'Recycle app pool' snapshot 1 → Prod" in ran.stdout
    # the project's variables and the first step's output reached the second step, per target
    for target in ("prod-01", "prod-03"):
        assert (project.target_dir(target) / "recycled").read_text() == f"v1 ShopPool@{target}\n"
        assert not (project.target_dir(target) / ".ferry" / "journal.json").exists()  # no release installed
    assert not (project.target_dir("prod-02") / "recycled").exists()

    # recorded like a deployment (kind runbook, who asked), shown by deployment show; Prod still holds nothing
    shown = project.show(1)
    assert (shown["kind"], shown["runbook"], shown["state"], shown["created_by"]) == \
        ("runbook", "Recycle app pool", "Success", "tester")
    assert {(o["target"], o["value"]) for o in shown["outputs"]} == {("prod-01", "ShopPool@prod-01"),
                                                                      ("prod-03", "ShopPool@prod-03")}
    status = _json(project.run("status", "Shop", "--json"))
    assert "Prod" not in status["current"] and "Prod" not in status["latest"]
    runs = _json(project.run("runbook", "runs", "Shop", "--json"))["items"]
    assert [(r["id"], r["runbook"], r["environment"]) for r in runs] == [(1, "Recycle app pool", "Prod")]

    # the recipe changes: runs keep using the published snapshot until it is published again
    project.write(PROCESS, variables, runbooks=[_runbook("v2")])
    project.apply()
    listed = _json(project.run("runbook", "list", "Shop", "--json"))["items"]
    assert [(r["name"], r["snapshot"], r["changed"]) for r in listed] == [("Recycle app pool", 1, True)]
    assert project.run("runbook", "publish", "Shop", "Recycle app pool").exit_code == 0
    again = project.run("runbook", "run", "Shop", "Recycle app pool", "--to", "Prod", "--target", "prod-02",
                        "--snapshot", "1", "--wait")
    assert again.exit_code == 0, again.output
    newest = project.run("runbook", "run", "Shop", "Recycle app pool", "--to", "Prod", "--target", "prod-02",
                         "--wait")
    assert newest.exit_code == 0, newest.output
    assert (project.target_dir("prod-02") / "recycled").read_text() == "v1 ShopPool@prod-02\nv2 ShopPool@prod-02\n"
    listed = _json(project.run("runbook", "list", "Shop", "--json"))["items"]
    assert [(r["snapshot"], r["changed"]) for r in listed] == [(2, False)]


def test_a_failing_runbook_step_fails_the_run_with_the_step_and_target(tmp_path: Path, ferry: Any,
                                                                       prefect_env: dict[str, str]) -> None:
    project = LocalProject(tmp_path / "shop", ferry, environments={"Dev": 1, "Prod": 2})
    runbook = {"name": "Rotate logs", "process": [
        {"name": "Rotate", "kind": "script", "roles": ["web"],
         "script": '[ "$(ferry_var Machine.Name)" != prod-02 ] || { echo "disk full"; exit 4; }\n'
                   'touch "$HOME/rotated"'}]}
    project.write(PROCESS, runbooks=[runbook])
    project.apply()
    assert project.run("runbook", "publish", "Shop", "rotate LOGS").exit_code == 0  # names compare without case
    failed = project.run("runbook", "run", "Shop", "Rotate logs", "--to", "Prod", "--wait")
    assert failed.exit_code == 1
    assert "error: runbook run #1 failed:" in failed.stderr and "prod-02" in failed.stderr
    assert (project.target_dir("prod-01") / "rotated").exists()
    assert project.show(1)["state"] == "Failed"
