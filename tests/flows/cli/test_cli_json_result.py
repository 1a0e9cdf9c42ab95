"""Issue 16, CI: ``--json`` on the commands that start deployments prints one ferry/v1 ``deployment-result``
document on stdout (human lines on stderr) — succeeded, failed (exit 1), refused (exit 3); every list command's
``--json`` is the ``{"schema": "ferry/v1", "items": [...]}`` envelope; the ``--timeout`` child prints no Python
traceback without ``--debug``. The real ``ferry`` command in this process, on local targets, against the session's
Prefect server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows.cli.result_schema import DeploymentResult
from tests.flows.cli.in_process import run_in_process
from tests.flows.client.test_client import KEY, serve_api
from tests.flows.local_project import LocalProject
from tests.snapshots.model.test_schema_descriptions import undescribed

SECRET = "Hunter2-json-5ecret"


@pytest.fixture
def shop(tmp_path: Path, ferry_home: Path, prefect_env: dict[str, str]) -> LocalProject:
    project = LocalProject(tmp_path / "shop", run_in_process, environments={"Dev": 2, "Prod": 1})
    script = 'echo "connecting with $(ferry_var Db.Password)"; [ ! -e "$HOME/fail" ]'
    project.write([{"name": "Roll out", "roles": ["web"], "rolling": {"window": 1},
                    "steps": [{"name": "Install", "kind": "script", "script": project.script(script)}]}],
                  [{"name": "Db.Password", "value": SECRET, "sensitive": True}])
    project.apply()
    project.release("1.0.0")
    return project


def result_document(result: Any) -> dict[str, Any]:
    """stdout is one JSON document, valid against ``ferry schema deployment-result``."""
    doc = json.loads(result.stdout)
    DeploymentResult.model_validate(doc)
    return doc


def test_deploy_wait_json_reports_each_target_and_a_failure_exits_1(shop: LocalProject) -> None:
    ok = shop.deploy("1.0.0", "Dev", "--json")
    assert ok.exit_code == 0, ok.output
    doc = result_document(ok)
    assert (doc["schema"], doc["kind"], doc["command"], doc["outcome"], doc["exit_code"], doc["waited"]) == (
        "ferry/v1", "deployment-result", "deploy", "succeeded", 0, True)
    (deployment,) = doc["deployments"]
    assert (deployment["deployment_id"], deployment["project"], deployment["release"], deployment["environment"],
            deployment["state"]) == (1, "Shop", "1.0.0", "Dev", "Success")
    assert {(r["step"], r["target"], r["state"]) for r in deployment["results"]} == {
        ("Install", "dev-01", "success"), ("Install", "dev-02", "success")}
    assert deployment["started_at"] and deployment["finished_at"] and deployment["flow_run_id"]
    assert "deployment #1: Shop 1.0.0 → Dev" in ok.stderr  # the human lines, apart from the document

    (shop.target_dir("dev-02") / "fail").touch()
    failed = shop.deploy("1.0.0", "Dev", "--force", "--json")
    assert failed.exit_code == 1, failed.output
    doc = result_document(failed)
    assert (doc["outcome"], doc["exit_code"]) == ("failed", 1) and doc["error"]
    (deployment,) = doc["deployments"]
    assert deployment["state"] == "Failed" and deployment["log"]
    states = {r["target"]: r["state"] for r in deployment["results"]}
    assert states == {"dev-01": "success", "dev-02": "failed"}
    assert "error: deployment #2 failed" in failed.stderr and "failed: Install · dev-02" in failed.stderr
    assert SECRET not in failed.stdout + failed.stderr


def test_a_refusal_with_json_is_an_error_document_and_exit_3(shop: LocalProject) -> None:
    refused = shop.deploy("1.0.0", "Prod", "--json")  # Dev has not had it: the lifecycle refuses
    assert refused.exit_code == 3, refused.output
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()] and refused.stderr.startswith("error: ")
    doc = result_document(refused)
    assert (doc["outcome"], doc["exit_code"], doc["deployments"]) == ("refused", 3, [])
    assert doc["error"] == refused.stderr.strip().removeprefix("error: ")
    assert shop.deployments() == []
    # release create --deploy-to: the release's own document inside the one result document
    created = run_in_process("release", "create", "Shop", "--version", "1.0.1", "--deploy-to", "Prod", "--json")
    assert created.exit_code == 3, created.output
    doc = result_document(created)
    assert (doc["command"], doc["outcome"], doc["release"]["version"], doc["release"]["created"]) == (
        "release create", "refused", "1.0.1", True)


def test_remote_mode_prints_the_same_document(ferry_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through a ferry server (the API contract's test server): the same document, read back over the API."""
    with serve_api() as api:
        monkeypatch.setenv("FERRY_SERVER", api.url)
        monkeypatch.setenv("FERRY_API_KEY", KEY)
        api.outcome, api.run_for = "Failed", 0.5
        failed = run_in_process("deploy", "OctoFX", "latest", "--to", "Dev", "--wait", "--json")
        assert failed.exit_code == 1, failed.output
        doc = result_document(failed)
        (deployment,) = doc["deployments"]
        assert (doc["outcome"], deployment["deployment_id"], deployment["state"], deployment["flow_run_id"],
                deployment["log"]) == ("failed", 7, "Failed", "abc", "ferry deployment log 7")
        assert "line 9" in failed.stderr and "line 9" not in failed.stdout  # the streamed log: stderr
        started = run_in_process("deploy", "OctoFX", "latest", "--to", "Dev", "--json")
        refused = run_in_process("deploy", "OctoFX", "latest", "--to", "Production", "--json")
    assert refused.exit_code == 3 and result_document(refused)["outcome"] == "refused"
    assert refused.stderr.strip() == "error: api key 'ci' may not deploy to Production"
    assert started.exit_code == 0, started.output
    doc = result_document(started)
    assert (doc["command"], doc["outcome"], doc["waited"], doc["deployments"][0]["deployment_id"]) == (
        "deploy", "started", False, 7)
    assert not ferry_home.exists()


def test_the_timeout_child_prints_no_traceback_without_debug(shop: LocalProject,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    (shop.target_dir("dev-01") / "fail").parent.mkdir(parents=True, exist_ok=True)
    (shop.target_dir("dev-01") / "fail").touch()
    result = shop.deploy("1.0.0", "Dev", "--timeout", "240", "--json")
    child = capfd.readouterr()  # the child writes to this process's file descriptors (with --json: all to 2)
    assert result.exit_code == 1, result.output + child.out + child.err
    assert "Traceback" not in child.out + child.err + result.output, child.err
    assert child.out == ""  # stdout is the document's
    assert "Install" in child.err  # the child's own log lines are there, on stderr
    doc = result_document(result)
    assert doc["deployments"][0]["state"] == "Failed" and doc["outcome"] == "failed"


LISTS = [("deployment", "list", "Shop"), ("release", "list", "Shop"), ("package", "list"), ("target", "list"),
         ("project", "list"), ("environment", "list"), ("api-key", "list"), ("runbook", "list", "Shop"),
         ("runbook", "runs", "Shop"), ("cert", "list")]


def test_every_list_command_prints_the_envelope(shop: LocalProject) -> None:
    for args in LISTS:
        result = run_in_process(*args, "--json")
        assert result.exit_code == 0, (args, result.output)
        doc = json.loads(result.stdout)
        assert list(doc) == ["schema", "items"] and doc["schema"] == "ferry/v1", args
        assert isinstance(doc["items"], list), args
    names = [e["name"] for e in json.loads(run_in_process("environment", "list", "--json").stdout)["items"]]
    assert names == ["Dev", "Prod"]
    updated = json.loads(run_in_process("release", "update-variables", "Shop", "1.0.0", "--json").stdout)
    assert (updated["schema"], updated["version"], updated["changed"]) == ("ferry/v1", "1.0.0", False)


def test_schema_describes_the_result_document() -> None:
    result = run_in_process("schema", "deployment-result")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["title"] == "ferry deployment-result"
    assert {"schema", "kind", "outcome", "exit_code", "deployments"} <= set(schema["properties"])
    assert undescribed(schema) == []

