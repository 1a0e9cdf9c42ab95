"""`ferry deploy … --plan` through the real `ferry` command on local targets: phases and windows in order, the
min_healthy arithmetic, steps per target that run, skip (and why) or need a person, variables masked, the
journal read only with --check-targets — and the store and the targets byte-identical afterwards."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from snapshots.workspace import Workspace
from steps import journal
from steps.transports.local import LocalTransport
from tests.flows.local_project import LocalProject
from tests.flows.local_store import Shop

SECRET = "s3cr3t-plan-value"


def store_state(home: Path) -> tuple[Any, ...]:
    """Every row of every table of the SQLite store: equal before and after means nothing was written."""
    conn = sqlite3.connect(home / "ferry.db")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return tuple((t, conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()) for t in tables)
    finally:
        conn.close()


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its sha256 (the targets' folders): equal means untouched."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def shop(ferry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalProject:
    monkeypatch.setenv("PLAN_SECRET", SECRET)
    local = LocalProject(tmp_path / "shop", ferry, environments={"Dev": 1, "Prod": 4})
    local.write([
        {"name": "Roll out", "roles": ["web"], "rolling": {"window": [1, 2], "min_healthy": "#{MinHealthy}"}, "steps": [
            {"name": "Install", "kind": "script", "script": 'echo "$(ferry_var Release.Number)" > "$HOME/installed"'},
            {"name": "Warm up", "kind": "script", "condition": "#{if Warm}true#{/if}", "script": "true"},
            {"name": "Flag check", "kind": "script",
             "condition": '#{if Octopus.Action[Install].Output.Ok == "yes"}true#{/if}', "script": "true"},
        ]},
        {"name": "Approve", "kind": "manual", "instructions": "Look at #{Site.Url}", "environments": ["Prod"]},
        {"name": "Notify", "kind": "script", "roles": ["web"], "environments": ["Dev"], "script": "true"},
        {"name": "Cleanup", "kind": "script", "roles": ["web"], "script": "true"},
    ], [{"name": "Site.Url", "value": "https://#{Machine.Name}.example"},
        {"name": "Db.Password", "sensitive": True, "value": {"from_env": "PLAN_SECRET"}},
        {"name": "Warm", "value": "", "scope": {"target": ["prod-01"]}},
        {"name": "Warm", "value": "True"},
        {"name": "MinHealthy", "value": "2", "scope": {"environment": ["Prod"]}}, {"name": "MinHealthy", "value": "0"}])
    local.apply()
    local.release("1.0.0")
    return local


def deployed_to_dev(shop: LocalProject) -> None:
    """Dev succeeded with 1.0.0 (its record, and dev-01's journal as a finished deployment leaves it)."""
    store = Shop(shop, Workspace())
    deployment_id = store.mark_deployed("1.0.0", "Dev")
    release = store.prepare("1.0.0", "Dev").current
    journal.write(LocalTransport("dev-01", shop.target_dir("dev-01")), shop.name, "Dev", {
        "project": shop.name, "environment": "Dev", "release": "1.0.0", "digest": release.release.digest,
        "variables_revision": release.variables_revision, "deployment_id": deployment_id})


def plan(shop: LocalProject, *args: str) -> dict[str, Any]:
    result = shop.run("deploy", shop.name, "1.0.0", "--to", "Dev", "--plan", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_plan_shows_everything_and_touches_nothing(shop: LocalProject, ferry_home: Path) -> None:
    deployed_to_dev(shop)
    before, targets_before = store_state(ferry_home), tree(shop.root / "targets")
    db_before = (ferry_home / "ferry.db").read_bytes()
    result = shop.run("deploy", shop.name, "1.0.0", "--to", "Prod", "--plan", "--json", "--skip", "Cleanup")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (ferry_home / "ferry.db").read_bytes() == db_before and store_state(ferry_home) == before
    assert tree(shop.root / "targets") == targets_before
    assert not (shop.root / "targets" / "prod-01").exists()  # not even created: nothing connected

    assert doc["lifecycle"]["allowed"] and doc["lifecycle"]["phase"] == "Prod"
    assert "'Dev' 1 of 1 needed (Dev)" in doc["lifecycle"]["reason"]
    units = {u["name"]: u for u in doc["units"]}
    assert [u["name"] for u in doc["units"]] == ["Roll out", "Approve", "Notify", "Cleanup"]
    rolling = units["Roll out"]["rolling"]
    assert rolling["max_out_of_service"] == 2 and rolling["at_once"] == [1, 2]
    assert rolling["windows"] == [["prod-01"], ["prod-02", "prod-03"], ["prod-04"]]
    assert "at most 4 - 2 = 2 out of service" in rolling["arithmetic"]
    steps = {t["target"]: {r["step"]: (r["action"], r["reason"]) for r in t["steps"]}
             for t in units["Roll out"]["targets"]}
    assert steps["prod-01"]["Warm up"] == ("skip", "condition '#{if Warm}true#{/if}' not met")
    assert steps["prod-02"]["Warm up"][0] == "run"
    assert steps["prod-02"]["Flag check"][0] == "decided at run time"
    assert steps["prod-02"]["Install"] == ("run", None)
    assert units["Roll out"]["journal"].startswith("unknown (not connected): a target already at this release skips")
    assert {t["journal"]["state"] for t in doc["targets"]} == {"unknown (not connected)"}
    assert units["Approve"]["action"] == "needs a person"
    assert (units["Notify"]["action"], units["Notify"]["reason"]) == ("skip", "runs only in Dev")
    assert (units["Cleanup"]["action"], units["Cleanup"]["reason"]) == ("skip", "skipped on request (--skip)")
    assert doc["variables"]["prod-03"]["Site.Url"] == "https://prod-03.example"
    assert doc["variables"]["prod-03"]["Db.Password"] == "********"
    assert SECRET not in result.stdout + result.stderr


def test_check_targets_reads_the_journal_only(shop: LocalProject, ferry_home: Path) -> None:
    deployed_to_dev(shop)
    targets_before = tree(shop.root / "targets")
    before = store_state(ferry_home)
    doc = plan(shop, "--check-targets")
    assert store_state(ferry_home) == before and tree(shop.root / "targets") == targets_before
    assert doc["targets"][0]["journal"]["state"] == "current"
    install = doc["units"][0]["targets"][0]["steps"][0]
    assert install["action"] == "skip" and "already at this release" in install["reason"]
    forced = plan(shop, "--check-targets", "--force")["units"][0]["targets"][0]["steps"][0]
    assert forced["action"] == "run" and "redeployed (--force)" in forced["reason"]


def test_plan_as_text(shop: LocalProject) -> None:
    result = shop.run("deploy", shop.name, "1.0.0", "--to", "Dev", "--plan")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "plan: Shop 1.0.0 → Dev (nothing is deployed" in out
    assert "lifecycle Default: Dev is in phase 'Dev' (1 of 2): allowed" in out
    assert "Approve — manual intervention on the worker: skip (runs only in Prod)" in out
    assert "Db.Password = ********" in out and SECRET not in out


@pytest.mark.parametrize(("args", "message"), [
    (["--check-targets"], "error: --check-targets goes with --plan"),
    (["--check-targets", "--json"], "error: --check-targets goes with --plan"),
    (["--plan", "--json", "--wait"], "error: --plan only shows what would happen: it does not go with --wait"),
    (["--plan", "--wait"], "error: --plan only shows what would happen: it does not go with --wait"),
    (["--plan", "--local"], "error: --plan only shows what would happen: it does not go with --local"),
])
def test_bad_plan_options_are_one_line_errors(shop: LocalProject, ferry_home: Path, args: list[str],
                                              message: str) -> None:
    before = store_state(ferry_home)
    result = shop.run("deploy", shop.name, "1.0.0", "--to", "Dev", *args)
    assert result.exit_code != 0 and result.stderr.strip().splitlines() == [message + result.stderr.strip()
                                                                            .splitlines()[0][len(message):]]
    assert result.stderr.startswith(message)
    assert store_state(ferry_home) == before


def test_a_lifecycle_refusal_is_the_plan_s_one_line(shop: LocalProject) -> None:
    result = shop.run("deploy", shop.name, "1.0.0", "--to", "Prod", "--plan")
    assert result.exit_code != 0
    assert result.stderr.strip().startswith("error: release 1.0.0 cannot be deployed to Prod yet")
    assert len(result.stderr.strip().splitlines()) == 1
