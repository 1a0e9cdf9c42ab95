"""Issue 16: a redeploy of the release every target already has runs nothing, says so once ("all N targets
already have 1.0.0; --force redeploys") and is recorded as Success with ``no_change`` — shown as such by
``deployment show|list`` (+ ``--json``), ``status`` and the dashboard artifact, and counted for the lifecycle
as a success. One target out of date is an ordinary deployment. The real `ferry` command in this process, on
local targets, against the session's Prefect server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from snapshots.store import records
from snapshots.workspace import Workspace
from tests.flows.cli.in_process import run_in_process
from tests.flows.local_project import LocalProject
from tests.flows.orchestration.test_ui_artifacts import artifacts, table

LINE = "all 2 targets already have 1.0.0; --force redeploys"


@pytest.fixture
def project(tmp_path: Path, ferry_home: Path, prefect_env: dict[str, str]) -> LocalProject:
    shop = LocalProject(tmp_path / "same", run_in_process, environments={"Dev": 2, "Prod": 1}, name="Same")
    shop.write([{"name": "Roll out", "roles": ["web"], "rolling": {"window": 1},
                 "steps": [{"name": "Install", "kind": "script", "script": shop.script("echo installing")}]}])
    shop.apply()
    shop.release("1.0.0")
    return shop


def run_log(prefect_env: dict[str, str], flow_run_id: str) -> list[str]:
    """The flow run's log lines as the Prefect API has them (what `ferry deploy --wait` streams)."""
    found = httpx.post(f"{prefect_env['PREFECT_API_URL']}/logs/filter", timeout=30, json={
        "logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_ASC"}).json()
    return [entry["message"] for entry in found]


def deploy(project: LocalProject, *args: str) -> Any:
    result = project.deploy("1.0.0", "Dev", *args)
    assert result.exit_code == 0, result.output
    return result


def test_a_redeploy_with_every_target_current_runs_nothing_and_is_recorded_as_no_change(
        project: LocalProject, prefect_env: dict[str, str]) -> None:
    deploy(project)
    project.events_file.unlink()
    # the first deployment's record lost (e.g. reclaimed as abandoned): the no-change one must open the next phase
    with Workspace().store.begin() as conn:
        records.set_state(conn, 1, records.FAILED, error="lost")

    again = deploy(project, "--json")
    assert project.events() == []  # the script step did not run on either target
    assert "deployment #2 succeeded: no change" in again.stderr  # with --json, people's lines go to stderr
    document = json.loads(again.stdout)
    assert (document["outcome"], document["exit_code"]) == ("succeeded", 0)
    assert [(d["state"], d["no_change"]) for d in document["deployments"]] == [("Success", True)]
    shown = project.show(2)
    lines = run_log(prefect_env, shown["flow_run_id"])
    assert sum(LINE in line for line in lines) == 1 and not any("skipping it" in line for line in lines), lines

    assert (shown["state"], shown["no_change"], shown["error"]) == ("Success", True, None)
    assert {(r["target"], r["state"]) for r in shown["results"]} == {("dev-01", "skipped"), ("dev-02", "skipped")}
    text = run_in_process("deployment", "show", "2")
    assert "Dev: Success (no change)" in text.stdout and "no step ran" in text.stdout
    listed = {d["id"]: d for d in project.deployments()}
    assert listed[2]["no_change"] is True and listed[1]["no_change"] is False
    assert "Success (no change)" in run_in_process("deployment", "list", "Same").stdout
    status = json.loads(run_in_process("status", "Same", "--json").stdout)
    assert status["latest"]["Dev"]["no_change"] is True and status["current"]["Dev"]["release"] == "1.0.0"
    assert status["releases"][0]["cells"]["Dev"] == "Success (no change)"
    dashboard = table(artifacts(prefect_env["PREFECT_API_URL"], "ferry-same-dashboard")[0])
    assert next(r for r in dashboard if r["release"] == "1.0.0")["Dev"].startswith("Success (no change) · ")

    # counted for the lifecycle exactly as a success: Prod (the next phase) is open
    prod = project.deploy("1.0.0", "Prod")
    assert prod.exit_code == 0, prod.output
    assert [e.target for e in project.events() if e.kind == "start"] == ["prod-01"]


def test_one_target_out_of_date_is_an_ordinary_deployment(project: LocalProject) -> None:
    deploy(project, "--target", "dev-01")
    project.events_file.unlink()
    rest = deploy(project)
    assert [e.target for e in project.events() if e.kind == "start"] == ["dev-02"]
    assert "already have" not in rest.output and "deployment #2 succeeded\n" in rest.stdout
    shown = project.show(2)
    assert (shown["state"], shown["no_change"]) == ("Success", False)
    got = {r["target"]: (r["state"], r["message"]) for r in shown["results"]}
    assert got == {"dev-01": ("skipped", "already at 1.0.0 (journal); use --force to redeploy"),
                   "dev-02": ("success", None)}
