"""Schedules and triggers: project triggers as Prefect schedules, one-off ``--at`` deployments that run at
their time or are cancelled (not run late) once their expiry passed, lifecycle auto-deploy, and release
creation when a package is pushed — against a real Prefect server and ``ferry serve``."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.flows.local_project import LocalProject
from tests.flows.serve_lab import ServedProject, make_served, parse_time

TRIGGERS = [{"name": "Nightly latest to Prod", "cron": "0 3 * * *", "action": "deploy-latest",
             "environment": "Prod"},
            {"name": "Weekday promotion", "cron": "30 4 * * 1-5", "timezone": "Europe/London",
             "action": "promote", "from": "Dev", "to": "Prod", "expires_after": 900},
            {"name": "Release on push", "action": "create-release-on-push", "package": "Shop.Web"}]


def package(directory: Path, version: str) -> Path:
    """A tiny Shop.Web.<version>.tar.gz."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"Shop.Web.{version}.tar.gz"
    data = f"Shop.Web {version}\n".encode()
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("VERSION")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


# --- validation at apply time: no server needed ---------------------------------------------------------

@pytest.mark.parametrize(("trigger", "message"), [
    ({"name": "t", "cron": "0 3 * *", "action": "deploy-latest", "environment": "Dev"}, "cron needs five fields"),
    ({"name": "t", "cron": "0 25 * * *", "action": "deploy-latest", "environment": "Dev"}, "Bad hour"),
    ({"name": "t", "cron": "0 3 * * *", "timezone": "Mars/Olympus", "action": "deploy-latest",
      "environment": "Dev"}, "unknown time zone 'Mars/Olympus'"),
    ({"name": "t", "cron": "0 3 * * *", "action": "deploy-latest", "environment": "Qa"},
     "environment 'Qa' is not in lifecycle 'Default' (Dev, Prod)"),
    ({"name": "t", "cron": "0 3 * * *", "action": "promote", "from": "Prod", "to": "Dev"},
     "promotes backwards: Dev comes before Prod"),
    ({"name": "t", "action": "create-release-on-push", "package": "Other"},
     "package 'Other' is not in the project's packages"),
    ({"name": "t", "action": "deploy-later"}, "deploy-later"),
])
def test_triggers_are_checked_when_applied(tmp_path: Path, ferry, trigger: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    project = LocalProject(tmp_path / "shop", ferry)
    project.write([{"name": "Install", "kind": "script", "roles": ["web"], "script": "true"}],
                  packages=["Shop.Web"], triggers=[trigger])
    result = ferry("apply", str(project.root / "infrastructure.yaml"), str(project.root / "project.yaml"))
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "project.yaml" in result.stderr and "triggers" in result.stderr


def test_duplicate_trigger_names_are_refused(tmp_path: Path, ferry) -> None:  # type: ignore[no-untyped-def]
    project = LocalProject(tmp_path / "shop", ferry)
    twice = {"name": "Nightly", "cron": "0 3 * * *", "action": "deploy-latest", "environment": "Dev"}
    project.write([{"name": "Install", "kind": "script", "roles": ["web"], "script": "true"}],
                  triggers=[twice, {**twice, "name": "nightly"}])
    result = ferry("apply", str(project.root / "infrastructure.yaml"), str(project.root / "project.yaml"))
    assert result.exit_code == 1 and "duplicate trigger name 'nightly'" in result.stderr


def test_deploy_at_and_expires_are_checked_before_anything_is_recorded(tmp_path: Path, ferry) -> None:  # type: ignore[no-untyped-def]
    project = LocalProject(tmp_path / "shop", ferry)
    project.write([{"name": "Install", "kind": "script", "roles": ["web"], "script": "true"}])
    project.apply()
    project.release("1.0.0")
    cases = [(["--expires", "+5m"], "--expires needs --at"),
             (["--at", "2001-01-01T00:00"], "that time has passed"),
             (["--at", "+10m", "--expires", "+0s"], "must be after --at"),
             (["--at", "tomorrow-ish"], "expected an ISO 8601 date-time"),
             (["--at", "+10m", "--local"], "do not go together"),
             (["--at", "+10m"], "--at needs `ferry serve` to have registered Shop"),
             (["--timeout", "5", "--cancel-on-timeout", "--at", "+1m", "--local"], "do not go together")]
    for args, message in cases:
        result = ferry("deploy", "Shop", "1.0.0", "--to", "Dev", *args)
        assert result.exit_code == 3, (args, result.output)  # refused before start (flows/cli/exit_codes.py)
        assert message in result.stderr, (args, result.stderr)
    assert project.deployments() == []


def test_when_parses_iso_clock_and_relative_times() -> None:
    from flows.cli.deploy_cmds import _when

    now = datetime.now().astimezone()
    assert abs((_when("+90s", "--at") - now).total_seconds() - 90) < 5
    base = now + timedelta(hours=2)
    assert _when("+15m", "--expires", base=base) == base + timedelta(minutes=15)
    moment = _when("2031-05-04T18:30:00+02:00", "--at")
    assert moment.utcoffset() == timedelta(hours=2) and moment.hour == 18
    local = _when("2031-05-04T18:30", "--at")
    assert local.tzinfo is not None and local.hour == 18
    clock = _when("07:45", "--at")
    assert (clock.hour, clock.minute) == (7, 45) and now < clock <= now + timedelta(days=1)


def test_cron_triggers_map_onto_schedules_with_parameters() -> None:
    from flows.orchestration.served_flows import ProjectSpec
    from flows.orchestration.serving import schedules_for
    from snapshots.model.project import Project

    model = Project.model_validate({"project": "Shop", "packages": ["Shop.Web"], "triggers": TRIGGERS})
    spec = ProjectSpec("Shop", ("Dev", "Prod"), tuple(model.triggers))
    schedules = schedules_for(spec)
    assert schedules["deploy_release"] == [{
        "slug": "ferry-trigger-nightly-latest-to-prod", "active": True,
        "parameters": {"environment": "Prod", "release": "latest", "expires_after": 3600},
        "schedule": {"cron": "0 3 * * *", "timezone": "UTC"}}]
    assert schedules["promote"] == [{
        "slug": "ferry-trigger-weekday-promotion", "active": True,
        "parameters": {"from_environment": "Dev", "to_environment": "Prod", "expires_after": 900},
        "schedule": {"cron": "30 4 * * 1-5", "timezone": "Europe/London"}}]


# --- against ferry serve -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, prefect_server, postgres) -> Iterator[ServedProject]:  # type: ignore[no-untyped-def]
    """A project whose Dev and Prod phases auto-deploy, with the three kinds of trigger; its first release
    comes from pushing a package (release-on-push), and reaches Dev and then Prod by auto-deploy."""
    lab = make_served(tmp_path_factory.mktemp("schedules"), prefect_server.env(), postgres.create_database(),
                      environments={"Dev": 1, "Prod": 1})
    lab.write(auto_deploy=("Dev", "Prod"), packages=["Shop.Web"], versioning={"from_package": "Shop.Web"},
              triggers=TRIGGERS)
    lab.project.apply()
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()
        lab.forget()


_pushes: dict[str, object] = {}


def push_first_package(served: ServedProject):  # type: ignore[no-untyped-def]
    """Push Shop.Web 1.0.0 once per module (the first release comes from it); returns that push's result."""
    if served.name not in _pushes:
        _pushes[served.name] = served.ferry("package", "push", str(package(served.root / "packages", "1.0.0")))
    return _pushes[served.name]


def wait_records(served: ServedProject, count: int, timeout: float = 180) -> list[dict]:
    push_first_package(served)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = served.records()
        if len(records) >= count and all(r["state"] in ("Success", "Failed", "Cancelled") for r in records):
            return records
        time.sleep(1)
    raise AssertionError(f"expected {count} finished deployments: {served.records()}\n{served.serve_log()[-3000:]}")


def never_ran(served: ServedProject, run: dict) -> bool:
    """No Running state in the flow run's history, no task runs, no run count."""
    states = served.api.get("/flow_run_states/", params={"flow_run_id": run["id"]}).json()
    return (run["run_count"] == 0 and not any(s["type"] == "RUNNING" for s in states)
            and served.task_runs(run["id"]) == [])


@pytest.mark.postgres
def test_pushing_a_package_creates_a_release_that_auto_deploys_through_the_lifecycle(served: ServedProject) -> None:
    pushed = push_first_package(served)
    assert pushed.exit_code == 0, pushed.output
    assert f"trigger 'Release on push': release {served.name} 1.0.0 created (Shop.Web 1.0.0)" in pushed.stdout
    assert f"lifecycle auto-deploy: {served.name} 1.0.0 → Dev: deployment #" in pushed.stdout
    records = wait_records(served, 2)
    # Dev was started by the release, Prod by Dev's success completing the first phase.
    assert [(r["environment"], r["version"], r["state"]) for r in reversed(records)] == [
        ("Dev", "1.0.0", "Success"), ("Prod", "1.0.0", "Success")]
    prod_run = served.flow_run(records[0]["flow_run_id"])
    assert "auto-deploy" in prod_run["tags"]


@pytest.mark.postgres
def test_triggers_become_prefect_schedules_and_follow_the_yaml(served: ServedProject) -> None:
    def ours(flow: str) -> list[dict]:
        return [s for s in served.deployment(flow)["schedules"] if s["slug"].startswith("ferry-trigger-")]

    [nightly] = ours("deploy-release")
    assert nightly["schedule"]["cron"] == "0 3 * * *" and nightly["schedule"]["timezone"] == "UTC"
    assert nightly["parameters"] == {"environment": "Prod", "release": "latest", "expires_after": 3600}
    [promotion] = ours("promote")
    assert promotion["schedule"]["cron"] == "30 4 * * 1-5"
    assert promotion["schedule"]["timezone"] == "Europe/London"
    assert promotion["parameters"] == {"from_environment": "Dev", "to_environment": "Prod", "expires_after": 900}
    # Prefect's scheduler has already queued the next runs, each with the trigger's parameters.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        runs = served.api.post("/flow_runs/filter", json={
            "deployments": {"id": {"any_": [served.deployment("promote")["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}).json()
        if runs:
            break
        time.sleep(2)
    assert runs and all(r["parameters"]["to_environment"] == "Prod" and r["auto_scheduled"] for r in runs)

    # Edit the YAML: drop the nightly deploy, move the promotion; ferry serve follows within its sync interval.
    doc = yaml.safe_load((served.root / "shop" / "project.yaml").read_text())
    doc["triggers"] = [{**TRIGGERS[1], "cron": "0 6 * * 1-5"}, TRIGGERS[2]]
    (served.root / "shop" / "project.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    served.project.apply()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not ours("deploy-release") and [s["schedule"]["cron"] for s in ours("promote")] == ["0 6 * * 1-5"]:
            break
        time.sleep(1)
    assert ours("deploy-release") == []
    assert [s["schedule"]["cron"] for s in ours("promote")] == ["0 6 * * 1-5"]


@pytest.mark.postgres
def test_a_one_off_scheduled_deployment_runs_at_its_time(served: ServedProject) -> None:
    wait_records(served, 2)
    if served.project.events_file.exists():
        served.project.events_file.unlink()
    result = served.ferry("deploy", served.name, "1.0.0", "--to", "Prod", "--force", "--at", "+15s",
                          "--expires", "+10m")
    assert result.exit_code == 0, result.output
    assert "scheduled for" in result.stdout and "cancelled if not started by" in result.stdout
    record = served.records()[0]
    run = served.flow_run(record["flow_run_id"])
    # Not started: Scheduled, or Pending once ferry serve's runner has claimed it (Prefect's runner claims runs
    # due within its prefetch window, 10 s, and starts them at their time — what the assertions below check).
    assert run["state"]["type"] in ("SCHEDULED", "PENDING")
    assert run["start_time"] is None
    at = parse_time(run["next_scheduled_start_time"])
    assert at - time.time() > 5, "still in the future after the command returned"
    assert served.project.events() == []
    run = served.wait_final(run["id"], timeout=120)
    assert run["state"]["type"] == "COMPLETED"
    assert parse_time(run["start_time"]) >= at - 0.5  # not before its time...
    assert parse_time(run["start_time"]) - at < 10  # ...and promptly at it
    assert min(e.at for e in served.project.events()) >= at
    assert served.records()[0]["state"] == "Success"


@pytest.mark.postgres
def test_a_scheduled_deployment_whose_expiry_passed_is_cancelled_and_never_runs(served: ServedProject) -> None:
    """ferry serve is down at the scheduled time (as when a server is restarted for maintenance): when it
    comes back, the run is past its expiry and is cancelled rather than run late."""
    wait_records(served, 2)
    if served.project.events_file.exists():
        served.project.events_file.unlink()
    served.stop()
    try:
        result = served.ferry("deploy", served.name, "1.0.0", "--to", "Prod", "--force", "--at", "+3s",
                              "--expires", "+4s")
        assert result.exit_code == 0, result.output
        record = served.records()[0]
        run = served.flow_run(record["flow_run_id"])
        expires = parse_time(run["next_scheduled_start_time"]) + run["parameters"]["expires_after"]
        time.sleep(max(0.0, expires - time.time()) + 2)
        assert served.flow_run(run["id"])["state"]["type"] == "SCHEDULED"  # late, and nobody to run it
    finally:
        served.start()
    run = served.wait_final(run["id"], timeout=60)
    assert run["state"]["type"] == "CANCELLED"
    assert run["state"]["message"].startswith("expired: scheduled for")
    assert never_ran(served, run)
    assert served.project.events() == []
    record = served.records()[0]
    assert record["state"] == "Cancelled" and record["error"].startswith("expired:")
    assert "cancelled instead of running late" in served.serve_log()


@pytest.mark.postgres
def test_a_run_that_starts_after_its_expiry_cancels_itself(served: ServedProject) -> None:
    """The flow checks its own deadline as it starts, for a run a runner or worker picks up after the expiry
    (here: created through the API already two minutes late, with ferry serve's periodic sweep turned off so
    that only the flow's own check can catch it)."""
    wait_records(served, 2)
    if served.project.events_file.exists():
        served.project.events_file.unlink()
    served.stop()
    served.start("--sync-seconds", "3600")
    try:
        before = len(served.records())
        two_minutes_ago = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
        response = served.create_run({"environment": "Prod", "release": "1.0.0", "force": True,
                                      "expires_after": 60},
                                     state={"type": "SCHEDULED", "state_details": {"scheduled_time": two_minutes_ago}})
        assert response.status_code == 201, response.text
        run = served.wait_final(response.json()["id"], timeout=60)
    finally:
        served.stop()
        served.start()
    assert run["state"]["type"] == "CANCELLED"
    assert run["state"]["message"].startswith("expired: scheduled for")
    states = served.api.get("/flow_run_states/", params={"flow_run_id": run["id"]}).json()
    assert any(s["type"] == "RUNNING" for s in states), "the flow started, saw its deadline had passed..."
    assert served.task_runs(run["id"]) == []  # ...and ended before deploying anything
    assert served.project.events() == []
    assert len(served.records()) == before


@pytest.mark.slow
@pytest.mark.postgres
def test_a_cron_trigger_deploys_through_ferry_serve(served: ServedProject) -> None:
    """Every minute, deploy the latest release to Dev: Prefect's scheduler creates the run, ferry serve runs
    it, the deployment is recorded like any other."""
    wait_records(served, 2)
    project_file = served.root / "shop" / "project.yaml"
    saved = project_file.read_text()
    doc = yaml.safe_load(saved)
    doc["triggers"] = [*doc["triggers"], {"name": "Every minute", "cron": "* * * * *", "action": "deploy-latest",
                                          "environment": "Dev", "expires_after": 50}]
    project_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    served.project.apply()
    try:
        deadline = time.monotonic() + 180
        found: list[dict] = []
        while time.monotonic() < deadline and not found:
            runs = served.api.post("/flow_runs/filter", json={
                "deployments": {"id": {"any_": [served.deployment()["id"]]}},
                "flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}}}).json()
            found = [r for r in runs if r["auto_scheduled"] and r["parameters"].get("environment") == "Dev"]
            time.sleep(2)
        assert found, f"no scheduled run completed within 3 minutes\n{served.serve_log()[-3000:]}"
        run = found[0]
        assert run["state"]["type"] == "COMPLETED"
        assert run["parameters"] == {"environment": "Dev", "release": "latest", "expires_after": 50}
        assert parse_time(run["start_time"]) - parse_time(run["expected_start_time"]) < 15
        record = served.record_of(run["id"])
        assert (record["environment"], record["version"], record["state"]) == ("Dev", "1.0.0", "Success")
    finally:
        project_file.write_text(saved)
        served.project.apply()
