"""Deployment freezes through the real `ferry` command (in this process) on local targets: a deployment or
promotion that would start inside a freeze is refused before anything is recorded (exit 3, one line naming the
freeze, its end and reason), --plan shows the check, --override-freeze lets it through and the record keeps
who overrode which freeze (shown by `deployment show`), and a deployment scheduled into a freeze is refused for
its start time while one scheduled after it is not."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.engine.request import DeployRequest, check_and_record
from snapshots.errors import DeploymentFrozen
from snapshots.store import records
from snapshots.workspace import Workspace
from tests.bad_inputs.state import state
from tests.flows.cli.in_process import run_in_process
from tests.flows.cli.test_cli_channels import write_shop

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def ferry(ferry_home: Path) -> Any:
    """`ferry` in this process (many commands per test)."""
    return run_in_process


@pytest.fixture
def shop(ferry: Any, tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    write_shop(root, freezes=[
        {"name": "Quarter close", "start": (NOW - timedelta(hours=1)).isoformat(),
         "end": (NOW + timedelta(hours=2)).isoformat(), "environments": ["Prod"], "reason": "finance closes the books"},
        {"name": "Other team", "start": (NOW - timedelta(hours=1)).isoformat(),
         "end": (NOW + timedelta(hours=2)).isoformat(), "environments": ["Dev"], "projects": ["Billing"],
         "reason": "not ours"},
    ])
    project = yaml.safe_load((root / "project.yaml").read_text())
    project.pop("channels")
    project["packages"] = []
    (root / "project.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    result = ferry("apply", str(root / "infrastructure.yaml"), str(root / "project.yaml"))
    assert result.exit_code == 0, result.output
    assert ferry("release", "create", "Shop", "--version", "1.0.0").exit_code == 0
    ctx = Workspace()
    check_and_record(ctx, DeployRequest("Shop", "1.0.0", "Dev"))  # not frozen: Other team's freeze is Billing's
    with ctx.store.begin() as conn:
        records.set_state(conn, 1, records.SUCCESS)
    return root


def test_a_deployment_into_a_freeze_is_refused_before_anything_is_recorded(ferry: Any, shop: Path,
                                                                          ferry_home: Path) -> None:
    until = (NOW + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M UTC")
    expected = (f"error: Prod is frozen by freeze 'Quarter close' until {until}: finance closes the books "
                "(--override-freeze to deploy anyway)")
    before = state(ferry_home)
    for args in (["deploy", "Shop", "1.0.0", "--to", "Prod"], ["promote", "Shop", "--from", "Dev", "--to", "Prod"],
                 ["deploy", "Shop", "latest", "--to", "Prod", "--wait"]):
        refused = ferry(*args)
        assert (refused.exit_code, refused.stderr.strip()) == (3, expected), args
    assert state(ferry_home) == before

    plan = ferry("deploy", "Shop", "1.0.0", "--to", "Prod", "--plan")
    assert plan.exit_code == 0, plan.output
    assert "freeze: REFUSED — freeze 'Quarter close' is in force until" in plan.stdout
    doc = json.loads(ferry("deploy", "Shop", "1.0.0", "--to", "Prod", "--plan", "--json", "--override-freeze").stdout)
    assert (doc["freeze"]["frozen"], doc["freeze"]["allowed"], doc["freeze"]["freeze"]) == (True, True, "Quarter close")
    dev = json.loads(ferry("deploy", "Shop", "1.0.0", "--to", "Dev", "--plan", "--json").stdout)
    assert dev["freeze"]["frozen"] is False


def test_an_override_is_recorded_and_shown_and_a_schedule_is_checked_for_its_start(ferry: Any, shop: Path) -> None:
    ctx = Workspace()
    deployment_id, _ = check_and_record(ctx, DeployRequest("Shop", "1.0.0", "Prod", override_freeze=True))
    shown = json.loads(ferry("deployment", "show", str(deployment_id), "--json").stdout)
    override = shown["parameters"]["freeze_override"]
    assert (override["freeze"], override["by"], override["reason"]) == ("Quarter close", "tester",
                                                                        "finance closes the books")
    text = ferry("deployment", "show", str(deployment_id)).stdout
    assert "freeze overridden by tester: 'Quarter close' (until " in text

    with pytest.raises(DeploymentFrozen, match=r"Prod is frozen at .* by freeze 'Quarter close'"):
        check_and_record(ctx, DeployRequest("Shop", "1.0.0", "Prod"), at=NOW + timedelta(hours=1))
    later, _ = check_and_record(ctx, DeployRequest("Shop", "1.0.0", "Prod"), at=NOW + timedelta(hours=3))
    assert "freeze_override" not in json.loads(ferry("deployment", "show", str(later), "--json").stdout)["parameters"]
