"""The deploy-release flow on the local transport: rolling windows, guards, conditions, retries, skips,
lifecycle, and the deployment record — all through the real CLI and a real Prefect server."""

from __future__ import annotations

import pytest

from tests.flows.local_project import LocalProject, max_overlap


@pytest.fixture
def project(tmp_path, ferry, prefect_env) -> LocalProject:  # type: ignore[no-untyped-def]
    return LocalProject(tmp_path / "shop", ferry)


def rolling(project: LocalProject, body: str, window, **rolling_options) -> list[dict]:  # type: ignore[no-untyped-def]
    return [{"name": "Roll out", "roles": ["web"], "rolling": {"window": window, **rolling_options},
             "steps": [{"name": "Install", "kind": "script", "script": project.script(body)}]}]


def deployed(project: LocalProject, version: str, env: str, *args: str) -> dict:
    result = project.deploy(version, env, *args)
    assert result.exit_code == 0, result.output
    return project.deployments()[0]


def test_sliding_window_starts_next_target_as_soon_as_one_finishes(project: LocalProject) -> None:
    # prod-02 is slow: with a sliding window of 2, prod-03 and prod-04 start while it still runs
    # (8 s leaves room for a loaded machine: each quick target must take under ~3.5 s end to end).
    body = 'case "$(ferry_var Machine.Name)" in prod-02) sleep 8;; *) sleep 0.3;; esac'
    project.write(rolling(project, body, 2))
    project.apply()
    project.release("1.0.0")
    assert deployed(project, "1.0.0", "Dev")["state"] == "Success"
    project.events_file.unlink()
    record = deployed(project, "1.0.0", "Prod")
    assert record["state"] == "Success"
    spans = project.spans()
    assert sorted(spans) == project.targets("Prod")
    assert max_overlap(spans) == 2
    slow_finish = spans["prod-02"][1]
    assert spans["prod-03"][0] < slow_finish and spans["prod-04"][0] < slow_finish
    assert spans["prod-03"][0] >= spans["prod-01"][1] - 0.05  # ...but only once a slot was free


def test_ramp_runs_a_canary_first_then_the_percentage(project: LocalProject) -> None:
    project.environments = {"Dev": 1, "Prod": 5}
    project.write(rolling(project, "sleep 0.4", [1, "40%"]))
    project.apply()
    project.release("1.0.0")
    deployed(project, "1.0.0", "Dev")
    project.events_file.unlink()
    deployed(project, "1.0.0", "Prod")
    spans = project.spans()
    canary = min(spans, key=lambda t: spans[t][0])
    others = [t for t in spans if t != canary]
    assert all(spans[t][0] >= spans[canary][1] - 0.05 for t in others), "nothing starts before the canary ends"
    assert max_overlap({t: spans[t] for t in others}) == 2  # 40% of 5


def test_percentage_window(project: LocalProject) -> None:
    project.write(rolling(project, "sleep 0.4", "50%"))
    project.apply()
    project.release("1.0.0")
    deployed(project, "1.0.0", "Dev")
    project.events_file.unlink()
    deployed(project, "1.0.0", "Prod")
    assert max_overlap(project.spans()) == 2


def test_min_healthy_caps_the_window_and_refuses_what_can_never_hold(project: LocalProject) -> None:
    # min_healthy bound to a variable scoped per environment (one rolling step serves Dev's 1 target too)
    project.write(rolling(project, "sleep 0.3", 4, min_healthy="#{MinHealthy}"),
                  [{"name": "MinHealthy", "value": "0"},
                   {"name": "MinHealthy", "value": "3", "scope": {"environment": ["Prod"]}}])
    project.apply()
    project.release("1.0.0")
    deployed(project, "1.0.0", "Dev")
    assert max_overlap(project.spans()) == 1
    project.events_file.unlink()
    deployed(project, "1.0.0", "Prod")
    assert max_overlap(project.spans()) == 1  # 4 targets, 3 must stay in service
    project.write(rolling(project, "true", 1, min_healthy="#{MinHealthy}"),
                  [{"name": "MinHealthy", "value": "0"},
                   {"name": "MinHealthy", "value": "4", "scope": {"environment": ["Prod"]}}])
    project.apply()
    project.release("1.0.1")
    deployed(project, "1.0.1", "Dev")
    before = len(project.deployments())
    result = project.deploy("1.0.1", "Prod")
    assert result.exit_code == 3  # refused before start
    assert result.stderr.strip() == ("error: step 'Roll out' in Prod: min_healthy 4 can never hold with 4 target(s) "
                                     "in service (taking even one out leaves 3)")
    assert len(project.deployments()) == before


def test_first_failure_stops_the_rollout_and_leaves_later_targets_untouched(project: LocalProject) -> None:
    body = 'touch "$HOME/installed"; [ "$(ferry_var Machine.Name)" != prod-02 ]'
    project.write(rolling(project, body, 1))
    project.apply()
    project.release("1.0.0")
    deployed(project, "1.0.0", "Dev")
    result = project.deploy("1.0.0", "Prod")
    assert result.exit_code == 1
    assert "error: deployment #2 failed: Roll out: 1 target(s) failed, 2 not started" in result.stderr
    # one line per failed target and where the log is; no Prefect traceback without --debug (issue 16)
    assert "failed: Install · prod-02: " in result.stdout and "exit code 1" in result.stdout
    assert "log: ferry deployment log 2" in result.stdout
    assert "Traceback" not in result.output
    touched = sorted(t for t in project.targets("Prod") if (project.target_dir(t) / "installed").exists())
    assert touched == ["prod-01", "prod-02"]
    record = project.show(2)
    assert record["state"] == "Failed"
    states = {(r["step"], r["target"]): r["state"] for r in record["results"]}
    assert states[("Install", "prod-01")] == "success"
    assert states[("Install", "prod-02")] == "failed"
    assert states[("Install", "prod-03")] == states[("Install", "prod-04")] == "NotStarted"


def test_conditions_retries_and_required_steps(project: LocalProject, tmp_path) -> None:  # type: ignore[no-untyped-def]
    counter = tmp_path / "attempts"
    process = [
        {"name": "Flaky", "kind": "script", "roles": ["web"], "retries": 2, "retry_delay": 0.2,
         "script": f'n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ "$n" -ge 1 ]'},
        {"name": "Fails", "kind": "script", "roles": ["web"], "script": "exit 3"},
        {"name": "After success", "kind": "script", "roles": ["web"], "script": "touch $HOME/after-success"},
        {"name": "On failure", "kind": "script", "roles": ["web"], "condition": "failure",
         "script": "touch $HOME/on-failure"},
        {"name": "Always", "kind": "script", "roles": ["web"], "condition": "always", "script": "touch $HOME/always"},
        {"name": "When flag", "kind": "script", "roles": ["web"], "condition": "#{if Flag}true#{/if}",
         "script": "touch $HOME/flag"},
        {"name": "Audit", "kind": "script", "roles": ["web"], "required": True, "condition": "always",
         "script": "true"},
    ]
    project.write(process, [{"name": "Flag", "value": "True"}])
    project.apply()
    project.release("1.0.0")
    result = project.deploy("1.0.0", "Dev")
    assert result.exit_code == 1
    home = project.target_dir("dev-01")
    assert counter.read_text().strip() == "2"  # failed once, retried, succeeded
    assert not (home / "after-success").exists()
    assert (home / "on-failure").exists() and (home / "always").exists() and (home / "flag").exists()
    results = {r["step"]: r for r in project.show(1)["results"]}
    assert results["Flaky"]["state"] == "success" and results["Flaky"]["attempts"] == 2
    assert results["Fails"]["state"] == "failed" and "exit code 3" in results["Fails"]["message"]
    assert results["After success"]["state"] == "skipped"

    skipped = project.deploy("1.0.0", "Dev", "--skip", "Fails", "--force")
    assert skipped.exit_code == 0, skipped.output
    assert {r["step"]: r["state"] for r in project.show(2)["results"]}["Fails"] == "skipped"
    refused = project.deploy("1.0.0", "Dev", "--skip", "Audit")
    assert refused.exit_code == 3  # refused before start
    assert refused.stderr.strip() == "error: --skip 'Audit': the step is required and cannot be skipped"


def test_lifecycle_refuses_skipping_a_phase(project: LocalProject) -> None:
    project.write(rolling(project, "true", 1))
    project.apply()
    project.release("1.0.0")
    result = project.deploy("1.0.0", "Prod")
    assert result.exit_code == 3  # refused before start
    assert result.stderr.strip() == ("error: release 1.0.0 cannot be deployed to Prod yet: lifecycle 'Default' "
                                     "phase 'Dev' needs all of Dev first (not yet deployed to: Dev)")
    assert project.deployments() == []


def test_redeploy_skips_targets_already_at_the_release_unless_forced(project: LocalProject) -> None:
    project.write(rolling(project, "echo installing", 2))
    project.apply()
    project.release("1.0.0")
    deployed(project, "1.0.0", "Dev")
    project.events_file.unlink()
    deployed(project, "1.0.0", "Dev")
    assert project.events() == []
    assert project.show(2)["results"][0]["message"].startswith("already at 1.0.0")
    deployed(project, "1.0.0", "Dev", "--force")
    assert len(project.events()) == 2


def test_status_and_promote(project: LocalProject) -> None:
    project.write(rolling(project, "true", 2))
    project.apply()
    project.release("1.0.0", notes="first")
    deployed(project, "1.0.0", "Dev")
    result = project.run("promote", project.name, "--from", "Dev", "--to", "Prod", "--wait")
    assert result.exit_code == 0, result.output
    status = project.run("status", project.name, "--json")
    import json

    data = json.loads(status.stdout)
    assert data["environments"] == ["Dev", "Prod"]
    assert data["current"]["Prod"]["release"] == "1.0.0"
    assert data["releases"] == [{"release": "1.0.0", "cells": {"Dev": "Success", "Prod": "Success"}}]


def test_run_on_worker_and_worker_for_each_target(project: LocalProject, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seen = tmp_path / "worker-seen"
    process = [
        {"name": "Announce", "kind": "script", "run_on": "worker", "script": f'echo "once $HOME" >> {seen}'},
        {"name": "Per target", "roles": ["web"], "rolling": {"window": 2}, "steps": [
            {"name": "From worker", "kind": "script", "run_on": "worker-for-each-target",
             "script": f'echo "for $(ferry_var Machine.Name) from $HOME" >> {seen}'},
            {"name": "On target", "kind": "script", "script": 'echo "$(ferry_var Machine.Name)" > "$HOME/me"'}]},
    ]
    project.write(process)
    project.apply()
    project.release("1.0.0")
    assert project.deploy("1.0.0", "Dev").exit_code == 0
    assert project.deploy("1.0.0", "Prod").exit_code == 0
    lines = seen.read_text().splitlines()
    assert sum(line.startswith("once ") for line in lines) == 2  # once per deployment
    worker_lines = [line for line in lines if line.startswith("for ")]
    assert sorted(line.split()[1] for line in worker_lines) == ["dev-01", *project.targets("Prod")]
    targets_root = str(project.root / "targets")
    assert all(targets_root not in line for line in lines)  # ran on the worker, not in a target's folder
    for target in project.targets("Prod"):
        assert (project.target_dir(target) / "me").read_text().strip() == target


def test_script_reads_variables_with_nested_values_evaluated(project: LocalProject) -> None:
    project.write([{"name": "Show", "kind": "script", "roles": ["web"],
                    "script": 'ferry_var Url > "$HOME/url"; ferry_var Plain > "$HOME/plain"'}],
                  [{"name": "Url", "value": "https://#{Host}:#{Port}/#{Environment.Name}"},
                   {"name": "Host", "value": "shop.example"}, {"name": "Port", "value": "8443"},
                   {"name": "Plain", "value": "a 'quoted' $(not run) `value`"}])
    project.apply()
    project.release("1.0.0")
    assert project.deploy("1.0.0", "Dev").exit_code == 0
    home = project.target_dir("dev-01")
    assert (home / "url").read_text() == "https://shop.example:8443/Dev"
    assert (home / "plain").read_text() == "a 'quoted' $(not run) `value`"
