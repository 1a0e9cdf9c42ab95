"""The served health check (issue 15 item 1): ``ferry serve`` registers (through ``sync_health_checks``, called
by its sync) one interval-scheduled deployment per machine policy in use; a run checks the policy's targets,
records them and publishes a table artifact."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from snapshots.workspace import Workspace
from tests.fleet.cli import ferry, ferry_json
from tests.fleet.test_targets import dead_ssh_target, write_infra
from tests.flows.prefect_api import prefect_api  # noqa: F401  (fixture: this process's Prefect client)


def test_a_health_check_per_policy_is_registered_and_a_run_records_and_publishes(
        tmp_path: Path, ferry_home: Path, prefect_env: dict[str, str], prefect_api: str,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.orchestration.health_serving import sync_health_checks, target_health_check

    for name in ("web-01", "web-02", "db-01"):
        (tmp_path / name).mkdir()
    infra = write_infra(tmp_path, extra_targets=[dead_ssh_target(policy="Tolerant")])
    assert ferry(ferry_home, "apply", str(infra)).code == 0
    said: list[str] = []
    registered = asyncio.run(sync_health_checks(Workspace(), None, None, None, said.append))
    assert said == ["machine policy Default: health check every 3600s registered "
                    "(target-health-check/policy-default)",
                    "machine policy Tolerant: health check every 600s registered "
                    "(target-health-check/policy-tolerant)"]
    assert asyncio.run(sync_health_checks(Workspace(), None, None, registered, said.append)) == registered
    assert len(said) == 2  # nothing changed: nothing registered again
    api = prefect_env["PREFECT_API_URL"]
    response = httpx.get(f"{api}/deployments/name/target-health-check/policy-tolerant", timeout=30)
    assert response.status_code == 200, response.text
    deployment = response.json()
    assert [s["schedule"]["interval"] for s in deployment["schedules"]] == [600.0]
    assert deployment["parameters"] == {"policy": "Tolerant"}

    result = target_health_check(policy="Tolerant")  # what a scheduled run runs
    assert result == {"policy": "Tolerant", "checked": 1, "unreachable": ["gone-01"]}
    listed = {t["name"]: t for t in ferry_json(ferry_home, "target", "list")}
    assert listed["gone-01"]["health"]["reachable"] is False
    assert listed["web-01"]["health"] is None  # another policy's targets: not this run's
    artifacts = httpx.post(f"{api}/artifacts/filter",
                           json={"artifacts": {"key": {"any_": ["ferry-health-policy-tolerant"]}}}).json()
    assert artifacts and artifacts[0]["type"] == "table" and "gone-01" in str(artifacts[0]["data"])
