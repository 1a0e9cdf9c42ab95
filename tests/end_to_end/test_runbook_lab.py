"""A runbook, output variables and a channel together on the real lab (sshd targets behind a real HAProxy),
through the real CLI and a real Prefect server (issue 14's end-to-end test).

OctoFX 1.0.0 (the Stable channel) runs on test-01 and test-02 while requests go through HAProxy. The runbook
"Drain for maintenance" takes test-01 out of the balancer, a script sets an output variable the next step reads,
and puts it back: the traffic sees test-01 leave (only test-02 answers while it is patched) and come back, and
the run leaves test-01's journal at 1.0.0 and Test's current release as it was. A pre-release in the Beta
channel, whose lifecycle is Test only, is refused for Production.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from steps.kinds.haproxy import HAProxy
from tests.conftest import CliResult
from tests.end_to_end.test_rolling_linux import BACKEND, OctoFX, clean_lab, octofx  # noqa: F401  (fixtures)
from tests.fleet.cli import ferry as in_process

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TEST = ["test-01", "test-02"]

RUNBOOK = {"name": "Drain for maintenance", "description": "Take a web server out of HAProxy, patch it, put it back",
           "environments": ["Test", "Production"], "roles": ["web"], "process": [
               {"name": "Maintain", "roles": ["web"], "rolling": {"window": 1}, "steps": [
                   {"name": "Drain", "kind": "load-balancer", "balancer": "web-lb", "action": "remove",
                    "drain_timeout": 10},
                   {"name": "Patch", "kind": "script",
                    "script": 'set_octopusvariable PatchedAt "$(date +%s.%N)"\nsleep 2'},
                   {"name": "Report", "kind": "script",
                    "script": 'echo "patched $(ferry_var Machine.Name) at '
                              '$(ferry_var "Octopus.Action[Patch].Output.PatchedAt")" > "$HOME/maintenance"'},
                   {"name": "Restore", "kind": "load-balancer", "balancer": "web-lb", "action": "add"}]}]}


class Traffic:
    """GETs through HAProxy every 20 ms, noting (time, machine that answered); a connection per request, so a
    drain does not wait for an idle keep-alive session to time out."""

    def __init__(self, url: str) -> None:
        self.url, self.seen = url, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5, headers={"Connection": "close"}) as client:
            while not self._stop.is_set():
                try:
                    machine = client.get(self.url).headers.get("X-OctoFX-Machine", "?")
                except httpx.HTTPError:
                    machine = "error"
                self.seen.append((time.time(), machine))
                self._stop.wait(0.02)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def machines(self, start: float, end: float) -> set[str]:
        return {m for t, m in list(self.seen) if start <= t <= end}


def _hybrid(project: OctoFX, home: Path) -> None:
    """Commands that run a flow (deploy, runbook run) as processes of their own, as a user runs them; every other
    command in this process (an interpreter start costs seconds on a loaded machine)."""
    subprocess = project.run

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> CliResult:
        if args[0] == "deploy" or args[:2] == ("runbook", "run"):
            return subprocess(*args, env=env, input=input)  # type: ignore[no-any-return]
        outcome = in_process(home, *args, env=env)
        return CliResult(outcome.code, outcome.stdout, outcome.stderr)

    project.run = run


def _json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_runbook_drains_a_target_while_a_beta_release_stays_out_of_production(octofx: OctoFX,  # noqa: F811
                                                                                 ferry_home: Path) -> None:
    _hybrid(octofx, ferry_home)
    octofx.infra["lifecycles"] = [
        {"name": "Default", "phases": [{"name": "Test", "environments": ["Test"]},
                                       {"name": "Production", "environments": ["Production"]}]},
        {"name": "Beta", "phases": [{"name": "Test", "environments": ["Test"]}]}]
    octofx.infra["targets"] = [t for t in octofx.infra["targets"] if t["name"] in [*TEST, "prod-01"]]

    def change(data: dict[str, Any]) -> None:
        data["variables"] = [v for v in data["variables"] if v["name"] != "Rollout.MinHealthy"] + [
            {"name": "Rollout.MinHealthy", "value": 1}]
        data["channels"] = [{"name": "Stable", "default": True, "rules": [{"tag": "^$"}]},
                            {"name": "Beta", "lifecycle": "Beta", "rules": [{"tag": "^beta"}]}]
        data["runbooks"] = [RUNBOOK]
    octofx.sample.edit_project(change)
    octofx.apply()
    octofx.push("1.0.0")
    octofx.release("1.0.0")
    deployed = octofx.run("deploy", "OctoFX", "1.0.0", "--to", "Test", "--wait", "--local")
    assert deployed.exit_code == 0, deployed.output
    published = _json(octofx.run("runbook", "publish", "OctoFX", "Drain for maintenance", "--json"))
    assert published["snapshot"] == 1

    with Traffic(octofx.lab.status["balancer_url"]) as traffic:
        time.sleep(0.5)
        ran = octofx.run("runbook", "run", "OctoFX", "Drain for maintenance", "--to", "Test", "--target",
                         "test-01", "--wait", "--local")
        assert ran.exit_code == 0, ran.output
        finished = time.time()
        deadline = finished + 15  # HAProxy marks it UP after its health checks pass
        while time.time() < deadline and "test-01" not in traffic.machines(finished, time.time()):
            time.sleep(0.2)
    before_run = traffic.machines(0, traffic.seen[0][0] + 0.5)
    assert set(TEST) <= before_run, before_run

    (run,) = _json(octofx.run("runbook", "runs", "OctoFX", "--json"))["items"]
    shown = _json(octofx.run("deployment", "show", str(run["id"]), "--json"))
    assert (shown["kind"], shown["state"]) == ("runbook", "Success")
    (stamp,) = [o["value"] for o in shown["outputs"] if o["name"] == "PatchedAt"]
    patched_at = float(stamp)
    # while test-01 was patched (2 s after its output was set) only test-02 answered through the balancer ...
    during = traffic.machines(patched_at + 0.1, patched_at + 1.9)
    assert during == {"test-02"}, during
    # ... and after the run test-01 is back in rotation
    assert "test-01" in traffic.machines(finished, time.time())
    assert "error" not in traffic.machines(0, time.time())
    report = (octofx.lab.lab.user_home("test-01") / "maintenance").read_text()
    assert report == f"patched test-01 at {stamp}\n"
    assert HAProxy([octofx.lab.api]).servers_up(BACKEND) >= set(TEST)

    # the runbook run changed no release anywhere: test-01's journal and Test's current release are 1.0.0
    journal = json.loads((octofx.lab.lab.user_home("test-01") / ".ferry" / "journal.json").read_text())
    assert {entry["release"] for entry in journal.values()} == {"1.0.0"}
    status = _json(octofx.run("status", "OctoFX", "--json"))
    assert status["current"]["Test"]["release"] == "1.0.0"

    # a pre-release in the Beta channel: its lifecycle is Test only, so Production refuses it
    octofx.push("1.1.0-beta.1")
    created = octofx.run("release", "create", "OctoFX", "--version", "1.1.0-beta.1", "--channel", "Beta",
                         "--package", "OctoFX.Web:1.1.0-beta.1")
    assert created.exit_code == 0, created.output
    refused = in_process(ferry_home, "deploy", "OctoFX", "1.1.0-beta.1", "--to", "Production", "--wait", "--local")
    assert refused.code == 3, refused
    assert "Production" in refused.stderr and "Beta" in refused.stderr, refused.stderr
    assert [d["id"] for d in _json(octofx.run("deployment", "list", "OctoFX", "--json"))["items"]
            if d["environment"] == "Production"] == []
