"""What a deployment leaves in the Prefect UI, read back through the Prefect API: the progress table (a row per
target, updated in place), the summary with a link to each step's log, and the project's dashboard under a
stable key, updated after every deployment."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.flows.local_project import LocalProject


def artifacts(api: str, key: str) -> list[dict[str, Any]]:
    """Every version of the artifact with this key, newest first."""
    found = httpx.post(f"{api}/artifacts/filter", timeout=30,
                       json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC"}).json()
    assert isinstance(found, list), found
    return found


def table(artifact: dict[str, Any]) -> list[dict[str, Any]]:
    data = artifact["data"]
    return json.loads(data) if isinstance(data, str) else data


def test_progress_summary_and_dashboard_artifacts(tmp_path, ferry, prefect_env) -> None:  # type: ignore[no-untyped-def]
    api = prefect_env["PREFECT_API_URL"]
    project = LocalProject(tmp_path / "board", ferry, environments={"Dev": 1, "Prod": 3}, name="Board")
    project.write([{"name": "Roll out", "roles": ["web"], "rolling": {"window": 2},
                    "steps": [{"name": "Install", "kind": "script", "script": "echo installed"},
                              {"name": "Check", "kind": "script", "script": "echo checked"}]}])
    project.apply()
    project.release("1.0.0")
    project.release("1.1.0")
    assert project.deploy("1.0.0", "Dev").exit_code == 0
    assert project.deploy("1.0.0", "Prod").exit_code == 0
    assert project.deploy("1.1.0", "Dev").exit_code == 0
    prod_run = project.show(2)["flow_run_id"]

    progress = [a for a in artifacts(api, "ferry-board-prod-progress") if a["flow_run_id"] == prod_run]
    assert len(progress) == 1 and progress[0]["type"] == "table"  # one artifact, updated in place
    rows = table(progress[0])
    assert [(r["target"], r["state"], r["step"]) for r in rows] == [
        (t, "done", "Check") for t in ("prod-01", "prod-02", "prod-03")]
    assert all(r["elapsed"].endswith("s") for r in rows)
    assert "3 done, 0 failed, 0 remaining" in progress[0]["description"]
    assert "window Roll out: 2 at a time" in progress[0]["description"]

    summary = [a for a in artifacts(api, "ferry-board-prod-summary") if a["flow_run_id"] == prod_run]
    links = {(r["step"], r["target"]): r["log"] for r in table(summary[0])}
    ui = api.removesuffix("/api")
    assert all(link.startswith(f"{ui}/runs/task-run/") for link in links.values()) and len(links) == 6

    dashboard = artifacts(api, "ferry-board-dashboard")[0]  # the latest: after the third deployment
    cells = {r["release"]: r for r in table(dashboard)}
    assert cells["current"]["Dev"] == "1.1.0" and cells["current"]["Prod"] == "1.0.0"
    actor = project.show(3)["created_by"]
    assert cells["1.1.0"]["Dev"].startswith("Success · ") and cells["1.1.0"]["Dev"].endswith(f" · {actor} · #3")
    assert cells["1.1.0"]["Prod"] == ""
    assert cells["1.0.0"]["Prod"].startswith("Success · ")
