"""People in the loop, concurrency, rollback, crash recovery, tamper refusal and secrets — the deploy flow
with a real Prefect server, real processes and the real CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.flows.local_project import LocalProject, max_overlap


@pytest.fixture
def project(tmp_path, ferry, prefect_env) -> LocalProject:  # type: ignore[no-untyped-def]
    return LocalProject(tmp_path / "shop", ferry)


def rolling(project: LocalProject, body: str, window=1, **options) -> list[dict]:  # type: ignore[no-untyped-def]
    return [{"name": "Roll out", "roles": ["web"], "rolling": {"window": window, **options},
             "steps": [{"name": "Install", "kind": "script", "script": project.script(body)}]}]


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def answer(project: LocalProject, deployment_id: int, action: str, *extra: str) -> None:
    result = project.run("deployment", "answer", str(deployment_id), action, *extra)
    assert result.exit_code == 0, result.output
    assert f"answered {action}" in result.stdout


@pytest.mark.parametrize("action", ["retry", "skip", "abort"])
def test_guided_failure_answered_from_the_cli(project: LocalProject, tmp_path: Path, action: str) -> None:
    fault = tmp_path / "fault"
    fault.touch()
    body = f'[ "$(ferry_var Machine.Name)" != prod-02 ] || [ ! -e {fault} ]'
    project.write(rolling(project, body))
    project.apply()
    project.release("1.0.0")
    assert project.deploy("1.0.0", "Dev").exit_code == 0
    proc = project.deploy_async("1.0.0", "Prod", "--guided-failure")
    paused = project.wait_for_state("Paused")
    wrong = project.run("deployment", "answer", str(paused["id"]), "proceed")
    assert wrong.exit_code == 1
    assert "is waiting for one of: retry, skip, ignore, abort" in wrong.stderr
    fault.unlink()  # a person fixes the problem...
    answer(project, paused["id"], action, "--notes", "fixed the disk")
    code, out = finish(proc)
    record = project.show(paused["id"])
    guided = [r for r in record["results"] if r["step"] == "Guided failure"]
    assert [(r["target"], r["state"], r["message"]) for r in guided] == [("prod-02", action, "fixed the disk")]
    installs = {r["target"]: r["state"] for r in record["results"] if r["step"] == "Install"}
    if action == "abort":
        assert code == 1 and record["state"] == "Failed"
        assert "prod-03" not in project.spans() and "prod-04" not in project.spans()
        return
    assert code == 0, out
    assert record["state"] == "Success"
    assert installs["prod-03"] == installs["prod-04"] == "success"
    if action == "retry":
        assert [r["state"] for r in record["results"] if r["step"] == "Install" and r["target"] == "prod-02"] == [
            "failed", "success"]


def test_manual_intervention_proceed_and_abort(project: LocalProject) -> None:
    process = [{"name": "Approve", "kind": "manual", "instructions": "Check #{Environment.Name} dashboards",
                "responsible": "ops"},
               {"name": "Install", "kind": "script", "roles": ["web"], "script": "touch $HOME/installed"}]
    project.write(process)
    project.apply()
    project.release("1.0.0")
    proc = project.deploy_async("1.0.0", "Dev")
    paused = project.wait_for_state("Paused")
    answer(project, paused["id"], "proceed", "--notes", "dashboards green")
    code, out = finish(proc)
    assert code == 0, out
    results = {r["step"]: r for r in project.show(paused["id"])["results"]}
    assert results["Approve"]["message"] == "proceed: dashboards green"
    assert (project.target_dir("dev-01") / "installed").exists()
    # the CLI showed the instructions and who may answer; show reports the approval apart from the start
    assert "Check Dev dashboards" in out and "who may answer: ops" in out
    shown = project.run("deployment", "show", str(paused["id"])).stdout
    assert "answered proceed at " in shown and " by tester (dashboards green)" in shown

    (project.target_dir("dev-01") / "installed").unlink()
    proc = project.deploy_async("1.0.0", "Dev", "--force")
    paused = project.wait_for_state("Paused")
    answer(project, paused["id"], "abort", "--notes", "alerts firing")
    code, out = finish(proc)
    assert code == 1
    assert "Approve: aborted by a person (alerts firing)" in out
    assert not (project.target_dir("dev-01") / "installed").exists()


def test_two_deployments_to_one_environment_never_overlap_two_environments_do(project: LocalProject) -> None:
    project.environments = {"Dev": 2, "Prod": 2}
    project.write(rolling(project, "sleep 1.5", window=2))
    project.apply()
    project.release("1.0.0")
    assert project.deploy("1.0.0", "Dev").exit_code == 0
    project.events_file.unlink()
    first, second = project.deploy_async("1.0.0", "Dev", "--force"), project.deploy_async("1.0.0", "Dev", "--force")
    assert finish(first)[0] == 0 and finish(second)[0] == 0
    events = sorted(project.events(), key=lambda e: e.at)
    # four runs of two targets each, never more than two at once: one deployment finished before the next began
    spans = {f"{e.target}-{i}": (e.at, f.at) for i, (e, f) in enumerate(
        zip([e for e in events if e.kind == "start"], [e for e in events if e.kind == "finish"], strict=True))}
    assert len(spans) == 4 and max_overlap(spans) == 2
    starts = [e.at for e in events if e.kind == "start"]
    finishes = [e.at for e in events if e.kind == "finish"]
    assert max(finishes[:2]) <= min(starts[2:]) + 0.05
    waiting = [d for d in project.deployments()[:2]]
    assert {d["state"] for d in waiting} == {"Success"}

    project.events_file.unlink()
    dev, prod = project.deploy_async("1.0.0", "Dev", "--force"), project.deploy_async("1.0.0", "Prod")
    assert finish(dev)[0] == 0 and finish(prod)[0] == 0
    assert max_overlap(project.spans()) == 4  # Dev's and Prod's targets ran at the same time


def test_auto_rollback_restores_the_previous_release_on_updated_targets(project: LocalProject) -> None:
    body = ('echo "$(ferry_var Release.Number)" > "$HOME/version"\n'
            '[ "$(ferry_var Release.Number)" != 1.0.1 ] || [ "$(ferry_var Machine.Name)" != prod-03 ]')
    project.write(rolling(project, body, auto_rollback=True))
    project.apply()
    for version in ("1.0.0", "1.0.1"):
        project.release(version)
        assert project.deploy(version, "Dev").exit_code == 0
    assert project.deploy("1.0.0", "Prod").exit_code == 0
    result = project.deploy("1.0.1", "Prod")
    assert result.exit_code == 1
    assert "auto-rollback to 1.0.0: rolled back" in result.stderr
    versions = {t: (project.target_dir(t) / "version").read_text().strip() for t in project.targets("Prod")}
    assert versions == {"prod-01": "1.0.0", "prod-02": "1.0.0", "prod-03": "1.0.1", "prod-04": "1.0.0"}


@pytest.mark.slow
def test_rerun_after_sigkill_finishes_the_rest_without_redoing_done_targets(project: LocalProject) -> None:
    project.write(rolling(project, "sleep 1"))
    project.apply()
    project.release("1.0.0")
    assert project.deploy("1.0.0", "Dev").exit_code == 0
    project.events_file.unlink()
    proc = project.deploy_async("1.0.0", "Prod")

    def journaled() -> list[str]:
        """Targets whose journal records the release: what a re-run may skip."""
        found = [(t, project.target_dir(t) / ".ferry" / "journal.json") for t in project.targets("Prod")]
        # a journal may exist earlier, holding only the marker of a unit in progress (issue 13)
        return [t for t, path in found
                if path.exists() and "release" in json.loads(path.read_text()).get(f"{project.name}/Prod", {})]

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(journaled()) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = journaled()
    assert 2 <= len(done_before) < 4
    rerun = project.deploy("1.0.0", "Prod")
    assert rerun.exit_code == 0, rerun.output
    finished = [e.target for e in project.events() if e.kind == "finish"]
    assert sorted(set(finished)) == project.targets("Prod")
    for target in done_before:
        assert finished.count(target) == 1, f"{target} was deployed again"
    states = {d["id"]: d["state"] for d in project.deployments()}
    assert states[max(states)] == "Success"
    assert states[max(states) - 1] == "Failed"  # the killed one is marked abandoned, not left Running


def test_tampered_release_is_refused_by_the_cli_and_by_the_flow(project: LocalProject, ferry_home: Path) -> None:
    project.write(rolling(project, "true"))
    project.apply()
    project.release("1.0.0")
    db = sqlite3.connect(ferry_home / "ferry.db")
    db.execute("DROP TRIGGER releases_no_update")
    changed = db.execute("UPDATE releases SET snapshot = replace(snapshot, 'rc=$?', 'rm -rf ~; rc=$?')")
    assert changed.rowcount == 1
    db.commit()
    db.close()
    result = project.deploy("1.0.0", "Dev")
    assert result.exit_code == 3  # refused before start
    assert result.stderr.strip().startswith("error: release Shop 1.0.0 was tampered with")
    assert project.deployments() == []
    flow = subprocess.run([sys.executable, "-m", "flows.orchestration.local_runs"],  # parameters on stdin
                          input=json.dumps({"project": "Shop", "release": "1.0.0", "environment": "Dev"}),
                          capture_output=True, text=True, timeout=180)
    assert flow.returncode == 1
    assert "was tampered with" in flow.stdout + flow.stderr
    assert project.deployments() == []


def test_sensitive_value_appears_in_no_log_artifact_or_output(project: LocalProject, prefect_env: dict) -> None:
    secret = "Tr0ub4dor&3-horse"
    process = rolling(project, 'echo "connecting with $(ferry_var Db.Password)"; '
                               'echo "pw=$(ferry_var Db.Password)" >&2; exit 7')
    project.write(process, [{"name": "Db.Password", "value": secret, "sensitive": True}])
    project.apply()
    project.release("1.0.0", notes="uses the database")
    result = project.deploy("1.0.0", "Dev")
    assert result.exit_code == 1
    outputs = [result.output, project.run("deployment", "show", "1").output,
               project.run("deployment", "show", "1", "--json").output]
    assert "connecting with ********" in result.output
    record = project.show(1)
    flow_run = record["flow_run_id"]
    api = prefect_env["PREFECT_API_URL"]
    logs = httpx.post(f"{api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run]}}}).json()
    task_runs = httpx.post(f"{api}/task_runs/filter",
                           json={"flow_runs": {"id": {"any_": [flow_run]}}}).json()
    artifacts = httpx.post(f"{api}/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run]}}}).json()
    flow_state = httpx.get(f"{api}/flow_runs/{flow_run}").json()
    assert any("connecting with ********" in log["message"] for log in logs)
    assert {"table", "markdown"} <= {a["type"] for a in artifacts}  # progress, summary: tables; notes
    notes = next(a for a in artifacts if a["type"] == "markdown")
    assert "## 1.0.0" in notes["data"] and "uses the database" in notes["data"]
    everything = json.dumps([outputs, record, logs, task_runs, artifacts, flow_state])
    assert secret not in everything


def test_unanswered_manual_step_times_out_and_fails_cleanly(project: LocalProject) -> None:
    project.write([{"name": "Approve", "kind": "manual", "instructions": "Anyone there?", "timeout": 3},
                   {"name": "Install", "kind": "script", "roles": ["web"], "script": "touch $HOME/installed"}])
    project.apply()
    project.release("1.0.0")
    result = project.deploy("1.0.0", "Dev")
    assert result.exit_code == 1
    assert "Approve: aborted by a person (no answer within 3s)" in result.stderr
    record = project.show(1)
    assert record["state"] == "Failed"
    assert not (project.target_dir("dev-01") / "installed").exists()


def test_deploy_without_wait_runs_in_the_background(project: LocalProject) -> None:
    project.write(rolling(project, "sleep 1; touch $HOME/installed"))
    project.apply()
    project.release("1.0.0")
    started = time.monotonic()
    result = project.run("deploy", project.name, "1.0.0", "--to", "Dev")
    assert result.exit_code == 0, result.output
    assert "running in the background" in result.stdout
    assert time.monotonic() - started < 30
    record = project.wait_for_state("Success", timeout=120)
    assert record["flow_run_id"]
    assert (project.target_dir("dev-01") / "installed").exists()
