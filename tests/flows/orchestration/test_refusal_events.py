"""Issue 16: automations hear of deployments that never ran. A deployment refused while it is planned emits
``ferry.deployment.refused`` with the one-line reason — before anything was recorded (the CLI, the API) with
project, environment, release and who asked; as its flow run starts (the record exists, and says Failed) on the
deployment's own resource. A run stopped by ``--cancel-on-timeout`` emits ``ferry.deployment.cancelled`` saying
it timed out. Read back from the session's Prefect server (``/api/events/filter``), no automation involved."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.engine import prepared
from flows.engine.request import DeployRequest, check_and_record
from snapshots.store import records
from snapshots.workspace import Workspace
from tests.flows.cli.in_process import run_in_process
from tests.flows.local_project import LocalProject


def ferry_events(api: str, name: str, project: str, resource: str | None = None,
                 wait: float = 60.0) -> list[dict[str, Any]]:
    """The events called ``name`` about ``project`` (and ``resource``), once the server has stored at least one
    (it stores them a few seconds after they arrive)."""
    labels = {"ferry.project": [project], **({"prefect.resource.id": [resource]} if resource else {})}
    deadline = time.monotonic() + wait
    while True:
        page = httpx.post(f"{api}/events/filter", timeout=30, json={"filter": {
            "event": {"name": [name]}, "resource": {"labels": labels}}, "limit": 50})
        assert page.status_code == 200, page.text
        found = page.json()["events"]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.fixture
def project(tmp_path: Path, ferry_home: Path, prefect_env: dict[str, str]) -> LocalProject:
    shop = LocalProject(tmp_path / "refuse", run_in_process, environments={"Dev": 1, "Prod": 1}, name="Refuse")
    shop.write([{"name": "Install", "kind": "script", "roles": ["web"], "script": "sleep 60"}])
    shop.apply()
    shop.release("1.0.0")
    return shop


def test_refusals_before_and_after_the_record_emit_refused_with_the_reason(
        project: LocalProject, prefect_env: dict[str, str]) -> None:
    api = prefect_env["PREFECT_API_URL"]
    refused = project.deploy("1.0.0", "Prod")  # the lifecycle wants Dev first: refused, nothing recorded
    assert refused.exit_code == 3 and project.deployments() == []
    reason = refused.stderr.strip().removeprefix("error: ")
    (event,) = ferry_events(api, "ferry.deployment.refused", "Refuse")
    labels = event["resource"]
    assert (labels["ferry.project"], labels["ferry.environment"], labels["ferry.release"]) == (
        "Refuse", "Prod", "1.0.0")
    assert labels["ferry.actor"] == "tester" and labels["prefect.resource.id"].startswith("ferry.deployment.refused.")
    assert event["payload"]["reason"] == event["payload"]["error"] == reason and "lifecycle" in reason

    # recorded while Dev had succeeded; by the time its run starts, Dev's success is gone: refused by the flow
    ctx = Workspace()
    with ctx.store.begin() as conn:
        dev = records.create(conn, project="Refuse", release_id=1, environment="Dev", variable_snapshot_id=1,
                             parameters={}, actor="tester", state=records.SUCCESS)
    deployment_id, _ = check_and_record(ctx, DeployRequest("Refuse", "1.0.0", "Prod"))
    prepared.take(deployment_id)  # as for a run in another process: it plans again
    with ctx.store.begin() as conn:
        records.set_state(conn, dev, records.FAILED, error="test: no longer a success")
    from flows.orchestration.deploy_flow import deploy_release

    state = deploy_release(project="Refuse", environment="Prod", release="1.0.0", deployment_id=deployment_id,
                           return_state=True)
    assert state.is_failed()
    record = project.show(deployment_id)
    assert record["state"] == "Failed" and "lifecycle" in record["error"]
    mine = ferry_events(api, "ferry.deployment.refused", "Refuse", f"ferry.deployment.{deployment_id}")
    assert len(mine) == 1, mine
    assert mine[0]["payload"]["reason"] == record["error"] and mine[0]["payload"]["state"] == "Failed"
    assert mine[0]["resource"]["ferry.deployment-id"] == str(deployment_id)


def test_cancel_on_timeout_emits_cancelled_saying_it_timed_out(project: LocalProject,
                                                              prefect_env: dict[str, str]) -> None:
    result = project.deploy("1.0.0", "Dev", "--timeout", "1", "--cancel-on-timeout")
    assert result.exit_code == 124, result.output
    record = project.deployments()[0]
    assert record["state"] == "Cancelled"
    (event,) = ferry_events(prefect_env["PREFECT_API_URL"], "ferry.deployment.cancelled", "Refuse")
    assert event["resource"]["prefect.resource.id"] == f"ferry.deployment.{record['id']}"
    assert event["payload"]["error"] == "timed out after 1s (--cancel-on-timeout)"
    assert event["payload"]["state"] == "Cancelled"
