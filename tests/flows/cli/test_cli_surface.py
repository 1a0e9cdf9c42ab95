"""What a CI author scripts against (issue 16), run in-process as the bad-input catalogue runs ferry: exit codes
(refused before start 3, usage 2), ``project list`` / ``environment list`` and the ``ferry/v1`` JSON envelope,
``deployment log`` of a deployment that does not exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bad_inputs.test_bad_inputs import Outcome, _run_inprocess
from tests.sample import Sample


def ferry(*args: str) -> Outcome:
    return _run_inprocess(list(args), {})


@pytest.fixture
def applied(ferry_home: Path, sample: Sample) -> Sample:
    done = ferry("apply", str(sample.infrastructure), str(sample.project))
    assert done.code == 0, done.stderr
    return sample


def test_project_and_environment_lists(applied: Sample) -> None:
    projects = ferry("project", "list", "--json")
    assert projects.code == 0, projects.stderr
    doc = json.loads(projects.stdout)
    assert doc["schema"] == "ferry/v1"
    assert [(p["name"], p["revision"], p["lifecycle"]) for p in doc["items"]] == [("OctoFX", 1, "Default")]
    environments = json.loads(ferry("environment", "list", "--json").stdout)
    assert environments["schema"] == "ferry/v1"
    assert [e["name"] for e in environments["items"]] == ["Development", "Test", "Production"]
    assert [t["name"] for t in environments["items"][1]["targets"]] == ["test-01", "test-02"]
    table = ferry("environment", "list")
    assert "test-01 (web), test-02 (web)" in table.stdout and "Production" in table.stdout


def test_refused_before_start_is_exit_code_3_and_usage_is_2(applied: Sample) -> None:
    for args in (("deploy", "OctoFX", "9.9.9", "--to", "Test"),
                 ("promote", "OctoFX", "--from", "Development", "--to", "Test"),
                 ("rollback", "OctoFX", "--env", "Test"),
                 ("deploy", "OctoFX", "latest", "--to", "Nowhere")):
        refused = ferry(*args)
        assert refused.code == 3, (args, refused.stderr)
        assert refused.stderr.startswith("error: ") and refused.stdout == ""
    usage = ferry("promote", "OctoFX", "--from", "Development", "--to", "Test", "--no-such-option")
    assert usage.code == 2 and "No such option" in usage.stderr
    # the same error from a command that starts nothing stays 1
    assert ferry("release", "show", "OctoFX", "9.9.9").code == 1
    missing = ferry("deployment", "log", "42")
    assert missing.code == 1 and "no deployment 42" in missing.stderr
    assert ferry("deployment", "follow", "42").code == 1


def test_json_documents_are_versioned(applied: Sample) -> None:
    status = ferry("status", "OctoFX", "--json")
    assert status.code == 0, status.stderr
    assert json.loads(status.stdout)["schema"] == "ferry/v1"


def test_deploy_to_goes_in_lifecycle_order_each_once() -> None:
    from flows.cli.release_deploy import _in_order

    order = ["Development", "Test", "Production"]
    assert _in_order(["Production", "Development", "test", "Development"], order) == ["Development", "test",
                                                                                       "Production"]
    assert _in_order(["Elsewhere", "Test"], order) == ["Test", "Elsewhere"]


def test_promote_and_rollback_take_every_option_deploy_takes(applied: Sample) -> None:
    from flows.cli.app import build_command

    commands = build_command().commands
    shared = {"--target", "--exclude-target", "--skip", "--variable", "--guided-failure", "--wait", "--timeout",
              "--cancel-on-timeout"}

    def options(name: str) -> dict[str, str | None]:
        return {opt: getattr(param, "help", None) for param in commands[name].params
                for opt in getattr(param, "opts", []) if opt in shared}

    assert set(options("deploy")) == shared
    assert options("promote") == options("deploy") == options("rollback")  # one definition, same help
    for args in (("promote", "OctoFX", "--from", "Development", "--to", "Test"),
                 ("rollback", "OctoFX", "--env", "Test")):
        refused = ferry(*args, "--target", "test-01", "--skip", "Smoke test", "--variable", "X=1", "--timeout", "5",
                        "--cancel-on-timeout", "--no-guided-failure")
        assert refused.code == 3 and "No such option" not in refused.stderr, refused.stderr
        alone = ferry(*args, "--cancel-on-timeout")
        assert alone.code == 3 and "--cancel-on-timeout needs --timeout" in alone.stderr


def test_lines_streamed_from_a_served_run_keep_step_and_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ferry deploy --wait`` through ``ferry serve``: each line names its task (``step · target``), not only the
    flow's lines (before, four targets' ``running Deploy.sh`` were indistinguishable)."""
    from flows.client.http import PrefectRun
    from flows.orchestration import served_runs

    logs = [{"id": "1", "timestamp": "2026-11-28T10:00:00+00:00", "level": 20, "task_run_id": "t1",
             "message": "running Deploy.sh"},
            {"id": "2", "timestamp": "2026-11-28T10:00:01+00:00", "level": 20, "task_run_id": "t2",
             "message": "running Deploy.sh"},
            {"id": "3", "timestamp": "2026-11-28T10:00:02+00:00", "level": 20, "task_run_id": None,
             "message": "Finished in state Completed()"}]

    class FakeApi:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def logs(self, run_id: str, *, after: str | None = None, limit: int = 200) -> list[dict[str, object]]:
            return [] if after else logs

        def flow_run(self, run_id: str) -> PrefectRun:
            return PrefectRun(id=run_id, name="r", state_type="COMPLETED", state_name="Completed", state_message="",
                              end_time=None)

        def task_run_name(self, task_run_id: str) -> str | None:
            self.asked.append(task_run_id)
            return {"t1": "Install · web-01", "t2": "Install · web-02"}[task_run_id]

    api = FakeApi()
    monkeypatch.setattr(served_runs, "thin_api", lambda: api)
    lines: list[str] = []
    assert served_runs.follow("run", echo=lines.append, flushed=True) == ("Completed", 0)
    assert [line.split(" | ", 2)[2] for line in lines] == [
        "Install · web-01 | running Deploy.sh", "Install · web-02 | running Deploy.sh", "Finished in state Completed()"]
    assert api.asked == ["t1", "t2"]  # one lookup per task run
