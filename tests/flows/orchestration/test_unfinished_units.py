"""Issue 13 items 1 and 2 on the Engine (local targets, real bash, the session's Prefect server):

- a unit that stopped midway (its ``in_progress`` marker in the target's journal) gets its remaining
  steps on a plain re-run even though the journal says the release is installed, and no more;
- a step that finds no target fails the deployment (role typo, or every target excluded, each said
  differently) unless ``allow_no_targets`` is set on the step or the project; ``apply`` warns about a role
  no target has.

The balancer half of item 1 (a current target left in MAINT) runs on the real lab: tests/end_to_end/
test_fault_injection.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from snapshots import projects
from snapshots.projects import unused_roles
from tests.flows.local_project import LocalProject
from tests.flows.local_store import Shop
from tests.flows.orchestration.test_execution import execute, ready, rolling, states
from tests.flows.prefect_api import prefect_api  # noqa: F401  (fixture)

pytestmark = pytest.mark.postgres


@pytest.fixture
def shop(ferry_home: Path, tmp_path: Path, prefect_api: str) -> Shop:  # noqa: F811
    return Shop.at(tmp_path / "shop", environments={"Dev": 2, "Prod": 1})


def journal(shop: Shop, target: str) -> dict[str, Any]:
    path = shop.local.target_dir(target) / ".ferry" / "journal.json"
    return json.loads(path.read_text())["Shop/Dev"] if path.exists() else {}


def ran(shop: Shop, target: str) -> list[str]:
    path = shop.local.target_dir(target) / "ran"
    return path.read_text().split() if path.exists() else []


STEP = 'echo "{n}" >> "$HOME/ran"'
FAILS_WHEN_TOLD = '[ ! -e "$HOME/fail" ] || { echo "told to fail" >&2; exit 3; }\n' + STEP.format(n=2)


def test_a_unit_stopped_midway_gets_its_remaining_steps_on_a_plain_rerun(shop: Shop) -> None:
    ready(shop, rolling(1, STEP.format(n=1), FAILS_WHEN_TOLD, STEP.format(n=3)))
    execute(shop, shop.prepare("1.0.0", "Dev"))
    assert journal(shop, "dev-01")["release"] == "1.0.0" and "in_progress" not in journal(shop, "dev-01")
    # a forced redeploy stops inside the unit on dev-01: the journal still says 1.0.0, the marker says unfinished
    (shop.local.target_dir("dev-01") / "fail").touch()
    engine, forced = execute(shop, shop.prepare("1.0.0", "Dev", targets=["dev-01"], force=True))
    assert engine.failed
    marker = journal(shop, "dev-01")["in_progress"]
    assert (marker["deployment_id"], marker["done"], marker["unit"]) == (forced, [0], 0)
    assert ran(shop, "dev-01") == ["1", "2", "3", "1"]

    (shop.local.target_dir("dev-01") / "fail").unlink()
    engine, rerun = execute(shop, shop.prepare("1.0.0", "Dev"))
    assert not engine.failed, engine.errors
    assert ran(shop, "dev-01") == ["1", "2", "3", "1", "2", "3"]  # step 1 not redone, 2 and 3 run
    assert ran(shop, "dev-02") == ["1", "2", "3"]  # finished and current: not redone
    got = {(r.step, r.target): (r.state, r.message) for r in shop.results(rerun)}
    assert got[("Step 1", "dev-01")] == (
        "skipped", f"done in deployment #{forced}, which stopped before the unit ended")
    assert got[("Step 2", "dev-01")][0] == got[("Step 3", "dev-01")][0] == "success"
    assert {got[(s, "dev-02")][0] for s in ("Step 1", "Step 2", "Step 3")} == {"skipped"}
    entry = journal(shop, "dev-01")
    assert "in_progress" not in entry and entry["deployment_id"] == rerun
    # converged: the next plain run has nothing to do
    _, again = execute(shop, shop.prepare("1.0.0", "Dev"))
    assert set(states(shop, again).values()) == {"skipped"}
    assert ran(shop, "dev-01") == ["1", "2", "3", "1", "2", "3"]


def test_a_failed_first_deployment_is_resumed_from_its_marker(shop: Shop) -> None:
    ready(shop, rolling(1, STEP.format(n=1), FAILS_WHEN_TOLD))
    (shop.local.target_dir("dev-01") / "fail").parent.mkdir(parents=True, exist_ok=True)
    (shop.local.target_dir("dev-01") / "fail").touch()
    engine, _ = execute(shop, shop.prepare("1.0.0", "Dev", targets=["dev-01"]))
    assert engine.failed
    entry = journal(shop, "dev-01")
    assert "release" not in entry and entry["in_progress"]["done"] == [0]
    (shop.local.target_dir("dev-01") / "fail").unlink()
    engine, _ = execute(shop, shop.prepare("1.0.0", "Dev", targets=["dev-01"]))
    assert not engine.failed
    assert ran(shop, "dev-01") == ["1", "2"]  # the marker is for this release: only what was left ran
    entry = journal(shop, "dev-01")
    assert entry["release"] == "1.0.0" and entry["history"] == [] and "in_progress" not in entry


def test_no_target_with_the_role_fails_the_deployment(shop: Shop) -> None:
    process = [{"name": "Web", "kind": "script", "roles": ["web"], "script": STEP.format(n=1)},
               {"name": "Typo", "kind": "script", "roles": ["webb"], "script": STEP.format(n=2)}]
    ready(shop, process)
    engine, deployment_id = execute(shop, shop.prepare("1.0.0", "Dev"))
    assert engine.failed
    assert engine.errors == ["Typo: no target in Dev has role(s) webb "
                             "(allow_no_targets: true on the step or project allows it)"]
    assert states(shop, deployment_id)[("Typo", None)] == "failed"


def test_every_target_excluded_fails_and_says_they_were_excluded(shop: Shop) -> None:
    ready(shop, rolling(1, STEP.format(n=1)))
    engine, _ = execute(shop, shop.prepare("1.0.0", "Dev", exclude_targets=["dev-01", "dev-02"]))
    assert engine.failed
    assert engine.errors == ["Roll out: every target in Dev with role(s) web was left out of this deployment "
                             "(--target/--exclude-target): dev-01, dev-02 (allow_no_targets: true on the step "
                             "or project allows it)"]


@pytest.mark.parametrize("where", ["step", "project"])
def test_allow_no_targets_skips_the_step(shop: Shop, where: str) -> None:
    process = [{"name": "Typo", "kind": "script", "roles": ["webb"], "script": STEP.format(n=2),
                **({"allow_no_targets": True} if where == "step" else {})}]
    shop.write(process, **({"allow_no_targets": True} if where == "project" else {}))
    shop.apply()
    shop.release("1.0.0")
    shop.mark_deployed("1.0.0", "Dev")
    engine, deployment_id = execute(shop, shop.prepare("1.0.0", "Dev"))
    assert not engine.failed, engine.errors
    [result] = shop.results(deployment_id)
    assert (result.state, result.message) == ("skipped", "no target in Dev has role(s) webb (allow_no_targets)")


def test_apply_warns_about_a_role_no_target_has(shop: Shop) -> None:
    shop.write([{"name": "Typo", "kind": "script", "roles": ["webb"], "script": "true"},
                {"name": "Fine", "kind": "script", "roles": ["web"], "script": "true"},
                {"name": "Allowed", "kind": "script", "roles": ["db"], "allow_no_targets": True, "script": "true"}])
    with shop.ctx.store.begin() as conn:
        applied = projects.apply(conn, [shop.local.root / "infrastructure.yaml", shop.local.root / "project.yaml"],
                                 shop.ctx.vault, shop.ctx.actor)
    project = next(a for a in applied if a.kind == "project")
    assert project.warnings == ("project Shop: step 'Typo': no target in any environment has role(s) webb (known "
                                "roles: web); its deployments will fail unless it sets allow_no_targets: true",)
    with shop.ctx.store.read() as conn:
        stored, infra = projects.require_project(conn, "Shop").model(), projects.require_infrastructure(conn)
    assert len(unused_roles(stored, infra)) == 1
    assert unused_roles(stored.model_copy(update={"allow_no_targets": True}), infra) == []


# -- through the CLI: exit code, one line, the lifecycle not satisfied, the apply warning ---------------------------

@pytest.fixture
def cli_project(tmp_path: Path, ferry: Any, prefect_env: dict[str, str]) -> LocalProject:
    project = LocalProject(tmp_path / "cli", ferry, environments={"Dev": 1, "Prod": 1})
    project.write([{"name": "Install", "kind": "script", "roles": ["web"], "script": "true"}])
    project.apply()
    project.release("1.0.0")
    return project


def test_cli_excluding_every_target_fails_and_the_next_phase_stays_closed(cli_project: LocalProject) -> None:
    result = cli_project.deploy("1.0.0", "Dev", "--exclude-target", "dev-01")
    assert result.exit_code == 1, result.output
    [line] = [text for text in result.stderr.splitlines() if text.startswith("error:")]  # the rest: the run's log
    assert line == ("error: deployment #1 failed: Install: every target in Dev with role(s) web was left out of "
                    "this deployment (--target/--exclude-target): dev-01 (allow_no_targets: true on the step or "
                    "project allows it)")
    assert cli_project.deployments()[0]["state"] == "Failed"
    refused = cli_project.deploy("1.0.0", "Prod")
    assert refused.exit_code == 3 and "cannot be deployed to Prod yet" in refused.stderr  # refused before start


def test_cli_apply_warns_about_a_role_typo_on_stderr(cli_project: LocalProject) -> None:
    cli_project.write([{"name": "Install", "kind": "script", "roles": ["webb"], "script": "true"}])
    result = cli_project.run("apply", str(cli_project.root / "infrastructure.yaml"),
                             str(cli_project.root / "project.yaml"))
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (
        "warning: project Shop: step 'Install': no target in any environment has role(s) webb (known roles: web); "
        "its deployments will fail unless it sets allow_no_targets: true")
    assert "webb" not in result.stdout
