"""``ferry serve`` against a real Prefect server on PostgreSQL, the ferry store on PostgreSQL, targets on this
machine — driven the way a CI job drives it: HTTP to the Prefect API only, or ``ferry deploy --wait``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.flows.local_project import max_overlap
from tests.flows.serve_lab import FERRY, ServedProject, make_served, parse_time

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, prefect_server, postgres) -> Iterator[ServedProject]:  # type: ignore[no-untyped-def]
    lab = make_served(tmp_path_factory.mktemp("serve"), prefect_server.env(), postgres.create_database())
    lab.write()
    lab.project.apply()
    lab.project.release("1.0.0")
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()
        lab.forget()


def test_ci_over_http_deploys_and_the_deployment_is_recorded(served: ServedProject) -> None:
    response = served.create_run({"environment": "Dev", "release": "1.0.0"})
    assert response.status_code == 201, response.text
    run = served.wait_final(response.json()["id"])
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["name"] == f"{served.name} 1.0.0 → Dev"
    record = served.record_of(run["id"])
    assert (record["version"], record["environment"], record["state"]) == ("1.0.0", "Dev", "Success")
    assert record["created_by"] == "prefect-ui"  # straight from Prefect: not the user ferry serve runs as
    tasks = served.task_runs(run["id"])
    assert [t["name"] for t in tasks] == ["Install · dev-01"]
    assert tasks[0]["state"]["type"] == "COMPLETED"


def test_two_calls_for_one_environment_run_one_after_the_other(served: ServedProject) -> None:
    if not any(d["environment"] == "Dev" and d["state"] == "Success" for d in served.records()):
        assert served.project.deploy("1.0.0", "Dev").exit_code == 0
    if served.project.events_file.exists():
        served.project.events_file.unlink()
    params = {"environment": "Prod", "release": "1.0.0", "force": True, "variables": {"Sleep": "1.5"}}
    first, second = served.create_run(params), served.create_run(params)
    assert first.status_code == second.status_code == 201
    runs = [served.wait_final(r.json()["id"]) for r in (first, second)]
    assert [r["state"]["type"] for r in runs] == ["COMPLETED", "COMPLETED"]
    # Prefect ran both flow runs at once (the serve limit is 5), but ferry's per-environment slot kept their
    # work apart: the second deployment's targets started only after the first one's finished.
    records = sorted((served.record_of(r["id"]) for r in runs), key=lambda d: d["started_at"])
    assert parse_time(records[0]["finished_at"]) <= parse_time(records[1]["started_at"])
    events = sorted(served.project.events(), key=lambda e: e.at)
    starts = [e.at for e in events if e.kind == "start"]
    finishes = [e.at for e in events if e.kind == "finish"]
    assert len(starts) == len(finishes) == 4
    spans = {f"{e.target}-{i}": (e.at, f.at) for i, (e, f) in enumerate(
        zip([e for e in events if e.kind == "start"], [e for e in events if e.kind == "finish"], strict=True))}
    assert max_overlap(spans) == 2  # two targets of one deployment at a time, never four
    assert max(finishes[:2]) <= min(starts[2:]) + 0.05
    flow_starts = sorted(parse_time(r["start_time"]) for r in runs)
    assert flow_starts[1] - flow_starts[0] < 1.5 * (max(finishes) - min(starts)), "both runs were started"


def test_unknown_environment_is_refused_by_the_api(served: ServedProject) -> None:
    response = served.create_run({"environment": "Qa", "release": "1.0.0"})
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "Validation failed for field 'environment'" in detail
    assert "'Qa' is not one of ['Dev', 'Prod']" in detail
    missing = served.create_run({"release": "1.0.0"})
    assert missing.status_code == 409
    assert "'environment' is a required property" in missing.json()["detail"]
    wrong_type = served.create_run({"environment": "Dev", "force": "yes please"})
    assert wrong_type.status_code == 409 and "force" in wrong_type.json()["detail"]


def test_the_form_offers_the_environments_and_describes_every_option(served: ServedProject) -> None:
    schema = served.deployment()["parameter_openapi_schema"]
    props = schema["properties"]
    assert props["environment"]["enum"] == ["Dev", "Prod"]
    assert schema["required"] == ["environment"]
    assert props["release"]["default"] == "latest"
    assert all(p.get("description") for p in props.values()), props
    for flow, fields in {"promote": ["from_environment", "to_environment"], "rollback": ["environment"],
                         "create-release": []}.items():
        other = served.deployment(flow)["parameter_openapi_schema"]["properties"]
        for name in fields:
            assert other[name]["enum"] == ["Dev", "Prod"], (flow, name)


def test_ferry_deploy_runs_through_the_served_deployment_and_streams_its_log(served: ServedProject) -> None:
    result = served.ferry("deploy", served.name, "1.0.0", "--to", "Dev", "--force", "--wait")
    assert result.exit_code == 0, result.output
    assert f"of deploy-release/{served.name}" in result.stdout
    assert "Beginning flow run" in result.stdout  # the served process's log lines, streamed back
    assert "succeeded" in result.stdout.splitlines()[-1]
    record = served.records()[0]
    run = served.flow_run(record["flow_run_id"])
    assert run["deployment_id"] == served.deployment()["id"]  # it ran on ferry serve, not in the CLI

    failed = served.ferry("deploy", served.name, "1.0.0", "--to", "Dev", "--force", "--wait",
                          "--variable", "Fail=yes")
    assert failed.exit_code == 1, failed.output
    assert "failed" in failed.stderr
    assert served.records()[0]["state"] == "Failed"


def test_deploy_wait_through_serve_never_imports_prefect(served: ServedProject) -> None:
    """The CLI side of a served deployment is plain HTTP (flows.client.http): importing Prefect cost ~1.1 s
    of every `ferry deploy --wait`. `python -X importtime` lists every module the command loaded."""
    proc = subprocess.run([sys.executable, "-X", "importtime", FERRY, "deploy", served.name, "1.0.0", "--to", "Dev",
                           "--force", "--wait"], capture_output=True, text=True, env=served.env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert f"of deploy-release/{served.name}" in proc.stdout  # it went through ferry serve
    assert "succeeded" in proc.stdout.splitlines()[-1]
    loaded = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "httpx" in loaded and "flows.client.http" in loaded
    assert sorted(m for m in loaded if m == "prefect" or m.startswith("prefect.")) == []


def test_a_deployment_created_through_the_api_can_be_followed_from_the_cli(served: ServedProject) -> None:
    """`ferry deployment show` knows deployments whichever way they were started."""
    response = served.create_run({"environment": "Dev", "release": "latest", "force": True})
    run = served.wait_final(response.json()["id"])
    record = served.record_of(run["id"])
    shown = served.ferry("deployment", "show", str(record["id"]))
    assert shown.exit_code == 0 and "Success" in shown.stdout


def test_serve_needs_a_prefect_server(served: ServedProject) -> None:
    env = {k: v for k, v in served.env.items() if k != "PREFECT_API_URL"}
    proc = subprocess.run([FERRY, "serve", "--once"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "ferry serve needs a Prefect server" in proc.stderr


def test_create_release_promote_and_rollback_deployments(served: ServedProject) -> None:
    """The other three served deployments, called the way CI calls deploy-release."""
    created = served.create_run({"version": "2.0.0", "notes": "from the API"}, flow="create-release")
    assert created.status_code == 201, created.text
    assert served.wait_final(created.json()["id"])["state"]["type"] == "COMPLETED"
    listed = served.ferry("release", "list", served.name, "--json")
    assert "2.0.0" in [r["version"] for r in json.loads(listed.stdout)["items"]]

    for version in ("1.0.0", "2.0.0"):
        response = served.create_run({"environment": "Dev", "release": version, "force": True})
        assert served.wait_final(response.json()["id"])["state"]["type"] == "COMPLETED"
    promoted = served.create_run({"from_environment": "Dev", "to_environment": "Prod"}, flow="promote")
    assert promoted.status_code == 201, promoted.text
    run = served.wait_final(promoted.json()["id"])
    assert run["state"]["type"] == "COMPLETED" and run["name"] == f"{served.name} promote Dev → Prod"
    record = served.record_of(run["id"])
    assert (record["environment"], record["version"], record["state"]) == ("Prod", "2.0.0", "Success")

    rolled = served.create_run({"environment": "Dev"}, flow="rollback")
    run = served.wait_final(rolled.json()["id"])
    assert run["state"]["type"] == "COMPLETED"
    record = served.record_of(run["id"])
    assert (record["environment"], record["version"], record["state"]) == ("Dev", "1.0.0", "Success")
    refused = served.create_run({"from_environment": "Dev", "to_environment": "Staging"}, flow="promote")
    assert refused.status_code == 409


@pytest.mark.slow
def test_timeout_without_ferry_serve(tmp_path, ferry, prefect_env) -> None:  # type: ignore[no-untyped-def]
    """No served deployment for the project: `ferry deploy` runs the flow itself, and --timeout still holds."""
    import uuid

    from tests.flows.local_project import LocalProject

    # Targets of their own (timeout-01): the cancelled run keeps its target's slot leased for up to a minute.
    project = LocalProject(tmp_path / "shop", ferry, name=f"Local-{uuid.uuid4().hex[:6]}",
                           environments={"Timeout": 1})
    project.write([{"name": "Install", "kind": "script", "roles": ["web"],
                    "script": 'sleep "$(ferry_var Sleep)"'}],
                  [{"name": "Sleep", "value": "0.2", "prompt": {"required": False}}])
    project.apply()
    project.release("1.0.0")
    started = time.monotonic()
    result = ferry("deploy", project.name, "1.0.0", "--to", "Timeout", "--variable", "Sleep=60", "--timeout", "8",
                   "--cancel-on-timeout")
    assert result.exit_code == 124, result.output
    assert "timed out after 8s and was cancelled" in result.stderr
    assert "of deploy-release/" not in result.stdout  # ran here, not through a served deployment
    assert time.monotonic() - started < 60
    record = project.deployments()[0]
    assert record["state"] == "Cancelled" and "--cancel-on-timeout" in record["error"]


@pytest.mark.slow  # last in the module: the cancelled run's target slot stays leased for up to a minute
def test_timeout_stops_waiting_or_cancels(served: ServedProject) -> None:
    if not any(d["environment"] == "Dev" and d["state"] == "Success" for d in served.records()):
        assert served.project.deploy("1.0.0", "Dev").exit_code == 0
    # Prod's targets: a cancelled run keeps its targets' slots leased for up to a minute, and later test
    # modules deploy to dev-01 on the same Prefect server.
    slow = ("deploy", served.name, "1.0.0", "--to", "Prod", "--force", "--variable", "Sleep=6")
    started = time.monotonic()
    result = served.ferry(*slow, "--timeout", "2")
    assert result.exit_code == 124, result.output
    assert "did not finish within 2s; it goes on" in result.stderr
    assert time.monotonic() - started < 30
    record = served.records()[0]
    assert served.wait_final(record["flow_run_id"])["state"]["type"] == "COMPLETED"

    result = served.ferry(*slow, "--variable", "Sleep=120", "--timeout", "4", "--cancel-on-timeout")
    assert result.exit_code == 124, result.output
    assert "timed out after 4s and was cancelled" in result.stderr
    record = served.records()[0]
    assert record["state"] == "Cancelled"
    assert served.flow_run(record["flow_run_id"])["state"]["type"] == "CANCELLED"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_plan_release_publishes_the_plan_as_an_artifact_and_touches_nothing(served: ServedProject) -> None:
    """The served deployment's plan mode (issue 14 item 6): the plan-release deployment's run leaves a markdown
    artifact of the phases, targets and steps; no deployment record, no file on any target changed."""
    targets = served.project.root / "targets"
    before_files, before_records = _tree(targets), served.records()
    response = served.create_run({"environment": "Dev", "release": "1.0.0"}, flow="plan-release")
    assert response.status_code == 201, response.text
    run = served.wait_final(response.json()["id"])
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["name"] == f"{served.name} plan 1.0.0 → Dev"
    artifacts = served.api.post("/artifacts/filter",
                                json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}).json()
    [plan] = [a for a in artifacts if a["type"] == "markdown"]
    assert plan["key"] == f"ferry-{served.name.lower()}-dev-plan"
    text = plan["data"]
    assert f"# Plan: {served.name} 1.0.0 → Dev" in text and "Nothing was deployed" in text
    for target in served.project.targets("Dev"):
        assert f"| | Install | {target} | {target} | run |" in text
    assert _tree(targets) == before_files
    assert served.records() == before_records
    refused = served.create_run({"environment": "Dev", "release": "9.9.9"}, flow="plan-release")
    assert refused.status_code == 409 and "'9.9.9' is not one of" in refused.text  # not among the form's releases
    # past the form (a caller that turns Prefect's check off): the flow refuses it with ferry's one-line reason
    unchecked = served.create_run({"environment": "Dev", "release": "9.9.9"}, flow="plan-release",
                                  enforce_parameter_schema=False)
    failed = served.wait_final(unchecked.json()["id"])
    assert failed["state"]["type"] == "FAILED" and "9.9.9" in (failed["state"]["message"] or "")
