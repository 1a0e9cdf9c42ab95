"""Output variables between steps (issue 14, item 1), on local targets running real bash inside a real flow run:
a script sets values, later steps read them per target and unindexed as data, conditions test them, sensitive
ones are masked from the next line on and encrypted in the record, and a retried step's value replaces the old."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from snapshots.store.outputs import for_deployment, output_variables
from tests.flows.local_project import LocalProject
from tests.flows.local_store import Shop
from tests.flows.orchestration.test_execution import execute, shop  # noqa: F401  (fixture)
from tests.flows.prefect_api import prefect_api  # noqa: F401  (fixture)

pytestmark = pytest.mark.postgres

TOKEN = "tok-9f8e7d6c5b4a"


def test_later_steps_read_outputs_per_target_and_secrets_stay_masked(shop: Shop, tmp_path: Path) -> None:  # noqa: F811
    process = [
        {"name": "Roll out", "roles": ["web"], "rolling": {"window": 1}, "steps": [
            {"name": "Pick port", "kind": "script",
             "script": 'ferry_set Port "80$(ferry_var Machine.Name | tr -dc 0-9)"\n'
                       f'set_octopusvariable Token "{TOKEN}-$(ferry_var Machine.Name)" -sensitive\n'
                       'echo "token is $(ferry_var Machine.Name)"'},
            {"name": "Use port", "kind": "script",
             "script": 'echo "$(ferry_var "Octopus.Action[Pick port].Output.Port")'
                       ' $(ferry_var "Octopus.Action[Pick port].Output[prod-01].Port")" > "$HOME/port"'},
        ]},
        {"name": "Announce", "kind": "script", "run_on": "worker",
         "script": f'ferry_var "Octopus.Action[Pick port].Output.Port" > {tmp_path / "last"}\n'
                   'ferry_set Done yes'},
        {"name": "Only if announced", "kind": "script", "roles": ["web"],
         "condition": '#{if Octopus.Action[Announce].Output.Done == "yes"}true#{/if}',
         "script": 'echo "leaking $(ferry_var "Octopus.Action[Pick port].Output.Token")"; exit 3'},
    ]
    shop.write(process)
    shop.apply()
    shop.release("1.0.0")
    shop.mark_deployed("1.0.0", "Dev")
    engine, deployment_id = execute(shop, shop.prepare("1.0.0", "Prod"))
    targets = shop.local.targets("Prod")
    for target in targets:  # its own value unindexed, prod-01's by index
        number = target.removeprefix("prod-")
        assert (shop.local.target_dir(target) / "port").read_text() == f"80{number} 8001\n"
    assert (tmp_path / "last").read_text() == "8004"  # no target on the worker: the newest value
    # the condition saw Announce's output; the step ran and its output leaked nothing
    leaks = [r for r in shop.results(deployment_id) if r.step == "Only if announced"]
    assert len(leaks) == 4 and all(r.state == "failed" for r in leaks)
    assert all("leaking ********" in (r.message or "") and TOKEN not in (r.message or "") for r in leaks)
    assert engine.failed
    with shop.ctx.store.read() as conn:
        shown = [o.as_dict() for o in for_deployment(conn, deployment_id, shop.ctx.vault)]
        stored = json.dumps([list(r) for r in conn.execute(select(output_variables))])
    assert {(o["target"], o["name"]): o["value"] for o in shown} == {
        **{(t, "Port"): f"80{t.removeprefix('prod-')}" for t in targets},
        **{(t, "Token"): "********" for t in targets}, (None, "Done"): "yes"}
    assert TOKEN not in stored and "8001" not in stored  # encrypted at rest
    assert TOKEN not in json.dumps(engine.summary) + " ".join(engine.errors)


def test_a_retried_step_replaces_its_earlier_value(shop: Shop, tmp_path: Path) -> None:  # noqa: F811
    counter = tmp_path / "attempts"
    process = [
        {"name": "Flaky", "kind": "script", "roles": ["web"], "retries": 1, "retry_delay": 0.1,
         "script": f'n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}\n'
                   'ferry_set Attempt "$n"; [ "$n" -ge 2 ]'},
        {"name": "Read", "kind": "script", "roles": ["web"],
         "script": 'ferry_var "Octopus.Action[Flaky].Output.Attempt" > "$HOME/attempt"'},
    ]
    shop.write(process)
    shop.apply()
    shop.release("1.0.0")
    engine, deployment_id = execute(shop, shop.prepare("1.0.0", "Dev"))
    assert not engine.failed, engine.errors
    assert (shop.local.target_dir("dev-01") / "attempt").read_text() == "2"
    with shop.ctx.store.read() as conn:
        assert [(o.name, o.value) for o in for_deployment(conn, deployment_id, shop.ctx.vault)] == [("Attempt", "2")]


def test_a_guided_failure_retry_replaces_the_value_and_show_lists_it(tmp_path: Path, ferry: Any,
                                                                     prefect_env: dict[str, str]) -> None:
    """Through the real CLI: prod-02's step sets Attempt=1 and fails; a person answers retry; the retried step
    sets Attempt=2, which the next step reads and `deployment show` lists (one value per target)."""
    fault = tmp_path / "fault"
    fault.touch()
    project = LocalProject(tmp_path / "shop", ferry, environments={"Prod": 2})
    project.write([{"name": "Roll out", "roles": ["web"], "rolling": {"window": 1}, "steps": [
        {"name": "Measure", "kind": "script",
         "script": 'n=$(( $(cat "$HOME/attempts" 2>/dev/null || echo 0) + 1 )); echo $n > "$HOME/attempts"\n'
                   'ferry_set Attempt "$n"\n'
                   f'[ "$(ferry_var Machine.Name)" != prod-02 ] || [ ! -e {fault} ]'},
        {"name": "Read", "kind": "script",
         "script": 'ferry_var "Octopus.Action[Measure].Output.Attempt" > "$HOME/attempt"'}]}])
    project.apply()
    project.release("1.0.0")
    proc = project.deploy_async("1.0.0", "Prod", "--guided-failure")
    paused = project.wait_for_state("Paused")
    fault.unlink()
    answered = project.run("deployment", "answer", str(paused["id"]), "retry")
    assert answered.exit_code == 0, answered.output
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert (project.target_dir("prod-02") / "attempt").read_text() == "2"
    shown = project.show(paused["id"])["outputs"]
    assert [(o["target"], o["name"], o["value"]) for o in shown] == [("prod-01", "Attempt", "1"),
                                                                      ("prod-02", "Attempt", "2")]
    text = project.run("deployment", "show", str(paused["id"]))
    assert "output variables" in text.stdout and "Attempt" in text.stdout
