"""The Engine called directly inside a Prefect flow (on the session's real Prefect server), on local
targets running real bash: results recorded per (step, target), the target journal, skip when current,
a failure stopping the rollout, skip reasons, retries and masking — no ``ferry`` subprocess."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from flows.engine.plan import DeploymentPlan
from flows.orchestration.execution import Engine
from snapshots import releases
from snapshots.store import records
from tests.flows.local_store import Shop
from tests.flows.prefect_api import prefect_api  # noqa: F401  (fixture)

pytestmark = pytest.mark.postgres  # the session's Prefect server keeps its database on the test PostgreSQL

SECRET = "pa55-w0rd-value"


@pytest.fixture
def shop(ferry_home: Path, tmp_path: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> Shop:  # noqa: F811
    monkeypatch.setenv("SHOP_SECRET", SECRET)
    return Shop.at(tmp_path / "shop")


def execute(shop: Shop, plan: DeploymentPlan) -> tuple[Engine, int]:
    """Run ``plan`` the way the deploy flow does: an Engine inside a flow run, against a deployment record."""
    deployment_id = shop.record(plan)
    engines: list[Engine] = []

    @flow(name="engine-under-test", persist_result=False)
    def engine_flow() -> None:
        engine = Engine(plan=plan, deployment_id=deployment_id, store=shop.ctx.store, feed=shop.ctx.feed,
                        vault=shop.ctx.vault, home=shop.ctx.settings.home, created_by=shop.ctx.actor)
        engines.append(engine)
        engine.run()

    engine_flow()
    return engines[0], deployment_id


def states(shop: Shop, deployment_id: int) -> dict[tuple[str, str | None], str]:
    return {(r.step, r.target): r.state for r in shop.results(deployment_id)}


def journal(shop: Shop, target: str) -> dict[str, Any]:
    path = shop.local.target_dir(target) / ".ferry" / "journal.json"
    return json.loads(path.read_text()) if path.exists() else {}


def rolling(window: Any, *scripts: str) -> list[dict[str, Any]]:
    steps = [{"name": f"Step {i + 1}", "kind": "script", "script": body} for i, body in enumerate(scripts)]
    return [{"name": "Roll out", "roles": ["web"], "rolling": {"window": window}, "steps": steps}]


def ready(shop: Shop, process: list[dict[str, Any]], variables: list[dict[str, Any]] | None = None) -> None:
    shop.write(process, variables)
    shop.apply()
    shop.release("1.0.0")
    shop.mark_deployed("1.0.0", "Dev")


INSTALL = 'echo "$(ferry_var Release.Number)" >> "$HOME/installed"'


def test_every_step_and_target_is_recorded_and_the_journal_written(shop: Shop) -> None:
    ready(shop, rolling(2, INSTALL, 'test "$(cat "$HOME/installed")" = 1.0.0'))
    engine, deployment_id = execute(shop, shop.prepare("1.0.0", "Prod"))
    assert not engine.failed and engine.errors == []
    targets = shop.local.targets("Prod")
    assert states(shop, deployment_id) == {(step, t): "success" for t in targets for step in ("Step 1", "Step 2")}
    assert all(r.attempts == 1 and r.started_at and r.finished_at for r in shop.results(deployment_id))
    assert len(engine.summary) == 8
    release = shop.prepare("1.0.0", "Prod").current.release
    for target in targets:
        entry = journal(shop, target)["Shop/Prod"]
        assert (entry["release"], entry["digest"], entry["deployment_id"]) == ("1.0.0", release.digest, deployment_id)
        assert entry["variables_revision"] == 1


def test_a_target_already_at_the_release_is_skipped_unless_forced(shop: Shop) -> None:
    ready(shop, rolling(4, INSTALL))
    execute(shop, shop.prepare("1.0.0", "Prod", targets=["prod-01", "prod-02"]))
    engine, again = execute(shop, shop.prepare("1.0.0", "Prod"))
    assert not engine.failed
    results = {r.target: r for r in shop.results(again)}
    assert results["prod-01"].state == results["prod-02"].state == "skipped"
    assert results["prod-01"].message == "already at 1.0.0 (journal); use --force to redeploy"
    assert results["prod-03"].state == results["prod-04"].state == "success"
    installs = {t: (shop.local.target_dir(t) / "installed").read_text().split() for t in shop.local.targets("Prod")}
    assert all(lines == ["1.0.0"] for lines in installs.values())  # each target installed once
    _, forced = execute(shop, shop.prepare("1.0.0", "Prod", targets=["prod-01"], force=True))
    assert states(shop, forced) == {("Step 1", "prod-01"): "success"}
    assert (shop.local.target_dir("prod-01") / "installed").read_text().split() == ["1.0.0", "1.0.0"]


def test_new_release_variables_make_a_target_not_current(shop: Shop) -> None:
    ready(shop, rolling(1, INSTALL), [{"name": "Colour", "value": "blue"}])
    execute(shop, shop.prepare("1.0.0", "Dev"))
    shop.write(rolling(1, INSTALL), [{"name": "Colour", "value": "green"}])
    shop.apply()
    with shop.ctx.store.begin() as conn:
        releases.update_variables(conn, "Shop", "1.0.0", "tester", vault=shop.ctx.vault)
    _, deployment_id = execute(shop, shop.prepare("1.0.0", "Dev"))
    assert states(shop, deployment_id) == {("Step 1", "dev-01"): "success"}
    assert journal(shop, "dev-01")["Shop/Dev"]["variables_revision"] == 2
    assert journal(shop, "dev-01")["Shop/Dev"]["history"][0]["variables_revision"] == 1


def test_a_failed_target_stops_the_rollout_and_says_why(shop: Shop) -> None:
    fail_on_2 = 'echo "trying"; [ "$(ferry_var Machine.Name)" != prod-02 ] || { echo "disk full" >&2; exit 7; }'
    ready(shop, rolling(1, fail_on_2, INSTALL))
    engine, deployment_id = execute(shop, shop.prepare("1.0.0", "Prod"))
    assert engine.failed and not engine.aborted
    [error] = engine.errors
    assert error.startswith("Roll out: 1 target(s) failed, 2 not started; Step 1 failed on prod-02: ")
    assert "exit code 7" in error
    found = states(shop, deployment_id)
    assert found[("Step 1", "prod-01")] == found[("Step 2", "prod-01")] == "success"
    assert found[("Step 1", "prod-02")] == "failed"
    assert found[("Step 2", "prod-02")] == "skipped"  # condition success: not after a failed step
    for target in ("prod-03", "prod-04"):
        assert found[("Step 1", target)] == found[("Step 2", target)] == "NotStarted"
    assert "Shop/Prod" in journal(shop, "prod-01")
    assert all(journal(shop, t) == {} for t in ("prod-03", "prod-04"))
    # prod-02 records no release, only that its unit did not finish (issue 13: the next run completes it)
    assert set(journal(shop, "prod-02")["Shop/Prod"]) == {"in_progress"}


def test_skip_reasons_worker_steps_and_conditions(shop: Shop, tmp_path: Path) -> None:
    worker_log = tmp_path / "worker.log"
    process = [
        {"name": "Announce", "kind": "script", "run_on": "worker", "script": f'echo "once" >> {worker_log}'},
        {"name": "Disabled", "kind": "script", "roles": ["web"], "enabled": False, "script": "exit 1"},
        {"name": "Prod only", "kind": "script", "roles": ["web"], "environments": ["Prod"], "script": "exit 1"},
        {"name": "Database", "kind": "script", "roles": ["db"], "allow_no_targets": True, "script": "exit 1"},
        {"name": "Skip me", "kind": "script", "roles": ["web"], "script": "exit 1"},
        {"name": "On failure", "kind": "script", "roles": ["web"], "condition": "failure", "script": "exit 1"},
        {"name": "When flag", "kind": "script", "roles": ["web"], "condition": "#{if Flag}true#{/if}",
         "script": 'touch "$HOME/flag"'},
    ]
    shop.write(process, [{"name": "Flag", "value": "True"}])
    shop.apply()
    shop.release("1.0.0")
    engine, deployment_id = execute(shop, shop.prepare("1.0.0", "Dev", skip_steps=["Skip me"]))
    assert not engine.failed, engine.errors
    got = {(r.step, r.target): (r.state, r.message) for r in shop.results(deployment_id)}
    assert got == {
        ("Announce", None): ("success", None),
        ("Disabled", None): ("skipped", "disabled"),
        ("Prod only", None): ("skipped", "runs only in Prod"),
        ("Database", None): ("skipped", "no target in Dev has role(s) db (allow_no_targets)"),
        ("Skip me", None): ("skipped", "skipped on request (--skip)"),
        ("On failure", None): ("skipped", "condition 'failure' not met"),  # a top-level step's own test
        ("When flag", "dev-01"): ("success", None),
    }
    assert worker_log.read_text() == "once\n"
    assert (shop.local.target_dir("dev-01") / "flag").exists()


def test_retries_are_counted_and_secrets_never_reach_the_record(shop: Shop, tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    process = [
        {"name": "Flaky", "kind": "script", "roles": ["web"], "retries": 2, "retry_delay": 0.1,
         "script": f'n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ "$n" -ge 1 ]'},
        {"name": "Leaky", "kind": "script", "roles": ["web"],
         "script": 'echo "connecting with $(ferry_var Db.Password)"; exit 2'},
    ]
    shop.write(process, [{"name": "Db.Password", "sensitive": True, "value": {"from_env": "SHOP_SECRET"}}])
    shop.apply()
    shop.release("1.0.0")
    engine, deployment_id = execute(shop, shop.prepare("1.0.0", "Dev"))
    results = {r.step: r for r in shop.results(deployment_id)}
    assert (results["Flaky"].state, results["Flaky"].attempts) == ("success", 2)
    assert counter.read_text().strip() == "2"
    leaky = results["Leaky"]
    assert leaky.state == "failed" and "connecting with ********" in (leaky.message or "")
    assert engine.failed
    everything = json.dumps([r.as_dict() for r in shop.results(deployment_id)]) + json.dumps(engine.summary)
    assert SECRET not in everything + " ".join(engine.errors)


def test_auto_rollback_puts_the_previous_release_back_on_updated_targets(shop: Shop) -> None:
    fail_new_on_3 = ('[ "$(ferry_var Release.Number)-$(ferry_var Machine.Name)" != 1.1.0-prod-03 ] '
                     '|| { echo "migration failed" >&2; exit 4; }')
    process = [{"name": "Roll out", "roles": ["web"], "rolling": {"window": 1, "auto_rollback": True},
                "steps": [{"name": "Install", "kind": "script", "script": f"{fail_new_on_3}\n{INSTALL}"}]}]
    ready(shop, process)
    _, first = execute(shop, shop.prepare("1.0.0", "Prod"))
    with shop.ctx.store.begin() as conn:
        records.set_state(conn, first, records.SUCCESS)  # 1.0.0 is what Prod runs
    shop.release("1.1.0")
    shop.mark_deployed("1.1.0", "Dev")
    engine, deployment_id = execute(shop, shop.prepare("1.1.0", "Prod"))
    assert engine.failed
    assert engine.errors[0].startswith("Roll out: 1 target(s) failed, 1 not started; Install failed on prod-03")
    assert engine.errors[1] == "auto-rollback to 1.0.0: rolled back"
    installed = {t: (shop.local.target_dir(t) / "installed").read_text().split() for t in shop.local.targets("Prod")}
    assert installed["prod-01"] == installed["prod-02"] == ["1.0.0", "1.1.0", "1.0.0"]  # updated, then put back
    assert installed["prod-03"] == installed["prod-04"] == ["1.0.0"]  # failed before installing / never started
    assert journal(shop, "prod-01")["Shop/Prod"]["release"] == "1.0.0"
    assert journal(shop, "prod-04")["Shop/Prod"]["release"] == "1.0.0"
    on_prod_01 = [r.state for r in shop.results(deployment_id) if r.target == "prod-01"]
    assert on_prod_01 == ["success", "success"]  # 1.1.0, then 1.0.0 again: both in the deployment's record
