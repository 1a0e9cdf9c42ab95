"""Rolling deployments of the OctoFX sample on the real lab — sshd targets behind a real HAProxy — through the
real CLI and a real Prefect server, while a load generator sends requests through the balancer.

Every test starts from clean targets: no app running, no release folders, no journal, every server ready.
Only the targets a test deploys to run an app, so HAProxy sends the load to them alone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from flows.lab.lab import SAMPLE_TARGETS, _alive
from flows.lab.load import LoadGenerator
from steps.kinds.haproxy import HAProxy
from tests.conftest import EXAMPLES
from tests.flows.local_project import LocalProject
from tests.sample import Sample
from tests.servers.ssh_lab import LabInfo

BACKEND = "octofx"
PROD = ["prod-01", "prod-02", "prod-03", "prod-04"]
STEPS = ["Remove from load balancer", "Install OctoFX.Web", "Smoke test", "Add to load balancer"]
FAULT = "ferry-fault"  # /srv/ferry-fault on a target makes the faulty package's Deploy.sh fail


def _stop_apps_and_wipe(lab: LabInfo) -> None:
    """Stop every OctoFX the tests started on the lab's targets and remove what deployments left there."""
    for target in lab.status["targets"]:
        name = target["name"]
        app_root = lab.lab.app_root(name)
        for pidfile in app_root.glob("octofx/*/*/octofx.pid"):
            with contextlib.suppress(ValueError, OSError):
                pid = int(pidfile.read_text().strip())
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    if not _alive(pid):
                        break
                    time.sleep(0.05)
        shutil.rmtree(app_root / "octofx", ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (app_root / FAULT).unlink()
        shutil.rmtree(lab.lab.user_home(name) / ".ferry", ignore_errors=True)
    haproxy = HAProxy([lab.api])
    for target in lab.status["targets"]:
        haproxy.set_state(BACKEND, target["name"], "ready")


@pytest.fixture
def clean_lab(lab: LabInfo) -> Iterator[LabInfo]:
    _stop_apps_and_wipe(lab)
    try:
        yield lab
    finally:
        _stop_apps_and_wipe(lab)


class OctoFX(LocalProject):
    """The sample project on the lab: the lab's infrastructure.yaml, the sample's project.yaml."""

    def __init__(self, sample: Sample, lab: LabInfo, run: Any) -> None:
        super().__init__(sample.root, run, name="OctoFX")
        self.sample, self.lab = sample, lab
        self.infra = yaml.safe_load(lab.lab.infrastructure_file.read_text())
        self.packages = sample.root / "packages"

    def production_only(self) -> None:
        """A lifecycle of one phase, Production, so a test deploys there straight away."""
        self.infra["lifecycles"] = [{"name": "Default", "phases": [{"name": "Production",
                                                                     "environments": ["Production"]}]}]

    def rolling(self, window: int, min_healthy: int) -> None:
        def change(data: dict[str, Any]) -> None:
            data["process"][0]["rolling"]["window"] = window
            for var in data["variables"]:
                if var["name"] == "Rollout.MinHealthy" and var.get("scope"):
                    var["value"] = min_healthy
        self.sample.edit_project(change)

    def step(self, name: str, **changes: Any) -> None:
        def change(data: dict[str, Any]) -> None:
            next(s for s in data["process"][0]["steps"] if s["name"] == name).update(changes)
        self.sample.edit_project(change)

    def apply(self) -> None:
        infra = self.root / "lab-infrastructure.yaml"
        infra.write_text(yaml.safe_dump(self.infra, sort_keys=False))
        result = self.run("apply", str(infra), str(self.sample.project))
        assert result.exit_code == 0, result.output

    def push(self, version: str, app: Path | None = None) -> None:
        if app is None:
            path = self.sample.package(version)
        else:
            spec = importlib.util.spec_from_file_location("build_package", EXAMPLES / "octofx" / "build_package.py")
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            path = module.build(version, self.packages, app)
        result = self.run("package", "push", str(path))
        assert result.exit_code == 0, result.output

    def release(self, version: str, notes: str = "") -> None:
        result = self.run("release", "create", "OctoFX", "--version", version, "--package", f"OctoFX.Web:{version}")
        assert result.exit_code == 0, result.output

    def health(self, target: str) -> str:
        return httpx.get(self.lab.info(target)["app_url"] + "health", timeout=5).text.strip()


@pytest.fixture
def octofx(clean_lab: LabInfo, sample: Sample, ferry: Any, prefect_env: dict[str, str]) -> OctoFX:
    return OctoFX(sample, clean_lab, ferry)


def faulty_app(tmp_path: Path) -> Path:
    """The sample app whose Deploy.sh fails on a target holding /srv/ferry-fault."""
    app = tmp_path / "faulty-app"
    shutil.copytree(EXAMPLES / "octofx" / "app", app)
    deploy = app / "Deploy.sh"
    deploy.write_text(deploy.read_text().replace(
        "set -euo pipefail\n",
        f"set -euo pipefail\nif [[ -e /srv/{FAULT} ]]; then echo 'injected fault: /srv/{FAULT}' >&2; exit 3; fi\n", 1))
    return app


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def statuses(lab: LabInfo) -> dict[str, str]:
    return {row["svname"]: row["status"] for row in HAProxy([lab.api]).stats(BACKEND)}


class UpSampler:
    """Polls HAProxy every 100 ms: the fewest of ``servers`` UP at any moment."""

    def __init__(self, lab: LabInfo, servers: list[str]) -> None:
        self.haproxy, self.servers = HAProxy([lab.api]), set(servers)
        self.fewest = len(servers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.fewest = min(self.fewest, len(self.haproxy.servers_up(BACKEND) & self.servers))
            time.sleep(0.1)

    def __enter__(self) -> UpSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def out_of_service_overlap(results: list[dict[str, Any]]) -> int:
    """The most targets out of the balancer at once (from "Remove" start to "Add" finish)."""
    spans = {}
    for r in results:
        if r["step"] == STEPS[0] and r["state"] == "success":
            spans[r["target"]] = [stamp(r["started_at"]), None]
        if r["step"] == STEPS[-1] and r["state"] == "success":
            spans[r["target"]][1] = stamp(r["finished_at"])
    points = sorted([(s, 1) for s, _ in spans.values()] + [(f, -1) for _, f in spans.values()])
    running = peak = 0
    for _, delta in points:
        running += delta
        peak = max(peak, running)
    return peak


def task_runs(flow_run_id: str) -> dict[str, str]:
    """Task run name → state type of one flow run, from the Prefect API."""
    api = os.environ["PREFECT_API_URL"]
    response = httpx.post(f"{api}/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}},
                                                            "limit": 200}, timeout=30)
    response.raise_for_status()
    return {run["name"]: run["state_type"] for run in response.json()}


@pytest.mark.slow
@pytest.mark.parametrize(("window", "min_healthy"), [(1, 3), (2, 2)], ids=["window-1", "window-2"])
def test_zero_downtime_rollout_across_four_targets(octofx: OctoFX, window: int, min_healthy: int) -> None:
    octofx.production_only()
    octofx.rolling(window, min_healthy)
    octofx.apply()
    for version in ("1.0.0", "1.1.0"):
        octofx.push(version)
        octofx.release(version)
    first = octofx.deploy("1.0.0", "Production")
    assert first.exit_code == 0, first.output
    assert {octofx.health(t) for t in PROD} == {"ok 1.0.0"}

    balancer = octofx.lab.status["balancer_url"]
    with LoadGenerator(balancer, threads=4, max_requests=200_000, max_seconds=300) as load, \
            UpSampler(octofx.lab, PROD) as sampler:
        assert load.wait(200, 30), "the load generator got no answers"
        rolled = octofx.deploy("1.1.0", "Production")
        done = time.time()
        time.sleep(1.5)  # and a little after the rollout
    report = load.report
    assert rolled.exit_code == 0, rolled.output

    record = octofx.deployments()[0]
    assert (record["version"], record["state"]) == ("1.1.0", "Success")
    results = octofx.show(record["id"])["results"]
    span = (min(stamp(r["started_at"]) for r in results if r["started_at"]),
            max(stamp(r["finished_at"]) for r in results if r["finished_at"]))
    during, failed_during, versions_during = report.between(*span)
    print(f"window {window}: {report.requests} requests ({during} during the {span[1] - span[0]:.1f}s rollout), "
          f"{report.failures} failed, {report.rate:.0f}/s, versions {dict(report.versions)}, "
          f"fewest UP {sampler.fewest}")
    assert report.failures == 0, report.errors
    assert during >= 3000 and failed_during == 0
    assert set(report.versions) <= {"1.0.0", "1.1.0"} and set(versions_during) == {"1.0.0", "1.1.0"}
    after = [v for t, v in report.timeline if t > done + 0.5]
    assert after and set(after) == {"1.1.0"}, "after the rollout every answer comes from 1.1.0"
    assert {octofx.health(t) for t in PROD} == {"ok 1.1.0"}
    assert all(statuses(octofx.lab)[t] == "UP" for t in PROD)
    assert sampler.fewest >= min_healthy, "min_healthy held in the balancer throughout"
    assert out_of_service_overlap(results) == window
    # HAProxy's checks start once the smoke test passed, but no request reaches a server on the new version
    # before its `add` step began (let alone before its smoke test passed): the answer came after both
    for target in PROD:
        added = next(stamp(r["started_at"]) for r in results if (r["step"], r["target"]) == (STEPS[3], target))
        smoked = next(stamp(r["finished_at"]) for r in results if (r["step"], r["target"]) == (STEPS[2], target))
        first = report.first_answer[(target, "1.1.0")]
        assert first > added >= smoked, f"{target}: first 1.1.0 answer {first:.3f}, add began {added:.3f}"

    runs = task_runs(record["flow_run_id"])
    expected = {f"{step} · {target}" for step in STEPS for target in PROD}
    assert expected <= set(runs) and {runs[name] for name in expected} == {"COMPLETED"}


@pytest.mark.slow
def test_a_failed_deploy_script_stops_the_rollout_and_retry_completes_it(octofx: OctoFX, tmp_path: Path) -> None:
    octofx.production_only()
    octofx.apply()
    octofx.push("1.0.0")
    octofx.release("1.0.0")
    octofx.push("1.1.0", app=faulty_app(tmp_path))
    octofx.release("1.1.0")
    assert octofx.deploy("1.0.0", "Production").exit_code == 0
    fault = octofx.lab.lab.app_root("prod-03") / FAULT
    fault.touch()

    with LoadGenerator(octofx.lab.status["balancer_url"], threads=2, max_seconds=300) as load:
        assert load.wait(100, 30)
        proc = octofx.deploy_async("1.1.0", "Production")  # Production pauses on failure (guided failure)
        paused = octofx.wait_for_state("Paused", timeout=240)
        time.sleep(1)
        states = statuses(octofx.lab)
        assert states["prod-03"] in ("MAINT", "DRAIN"), states  # the failed target stays out of the balancer
        assert states["prod-04"] == "UP" and octofx.health("prod-04") == "ok 1.0.0"  # not touched
        assert states["prod-01"] == states["prod-02"] == "UP"
        assert octofx.health("prod-01") == octofx.health("prod-02") == "ok 1.1.0"
        results = octofx.show(paused["id"])["results"]
        assert not [r for r in results if r["target"] == "prod-04"], "the rollout stopped before prod-04"
        failed = [r for r in results if r["state"] == "failed"]
        assert [(r["step"], r["target"]) for r in failed] == [("Install OctoFX.Web", "prod-03")]
        assert "Deploy.sh failed (exit code 3)" in failed[0]["message"]
        assert f"injected fault: /srv/{FAULT}" in failed[0]["message"]
        assert load.report.failures == 0, load.report.errors

        fault.unlink()  # a person fixes the target...
        answered = octofx.run("deployment", "answer", str(paused["id"]), "retry", "--notes", "fault removed")
        assert answered.exit_code == 0, answered.output
        out, _ = proc.communicate(timeout=240)
        load.wait(load.report.requests + 200, 10)
    assert proc.returncode == 0, out
    assert "running DeployFailed.sh" in out and "nothing to restore" in out
    record = octofx.show(paused["id"])
    assert record["state"] == "Success"
    installs = [r["state"] for r in record["results"] if r["step"] == "Install OctoFX.Web" and r["target"] == "prod-03"]
    assert installs == ["failed", "success"]
    assert {octofx.health(t) for t in PROD} == {"ok 1.1.0"}
    assert all(statuses(octofx.lab)[t] == "UP" for t in PROD)
    print(f"failure test: {load.report.requests} requests, {load.report.failures} failed, "
          f"versions {dict(load.report.versions)}")
    assert load.report.failures == 0, load.report.errors


def test_a_server_name_missing_from_the_backend_is_named(octofx: OctoFX) -> None:
    octofx.step("Remove from load balancer", server="web-#{Machine.Name}")
    octofx.apply()
    octofx.push("1.0.0")
    octofx.release("1.0.0")
    result = octofx.deploy("1.0.0", "Development")
    assert result.exit_code == 1
    error = octofx.deployments()[0]["error"]
    assert "server 'web-dev-01' is not in backend 'octofx'" in error
    assert "its servers: dev-01, test-01, test-02, prod-01, prod-02, prod-03, prod-04" in error
    assert "server 'web-dev-01' is not in backend 'octofx'" in result.stderr


def test_drain_timeout_with_a_request_held_open(octofx: OctoFX) -> None:
    octofx.apply()
    octofx.push("1.0.0")
    octofx.release("1.0.0")
    assert octofx.deploy("1.0.0", "Development").exit_code == 0
    octofx.step("Remove from load balancer", drain_timeout=1)
    octofx.apply()
    octofx.push("1.1.0")
    octofx.release("1.1.0")

    held: dict[str, Any] = {}

    def slow_request() -> None:
        held["response"] = httpx.get(octofx.lab.status["balancer_url"] + "slow?seconds=12", timeout=30)

    holder = threading.Thread(target=slow_request)
    holder.start()
    haproxy = HAProxy([octofx.lab.api])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not int(next(iter(haproxy.server_rows(BACKEND, "dev-01").values()))["scur"]):
        time.sleep(0.05)
    started = time.monotonic()
    result = octofx.deploy("1.1.0", "Development")
    assert result.exit_code == 1
    error = octofx.deployments()[0]["error"]
    assert "octofx/dev-01 still has 1 session(s) after draining for 1s" in error
    assert "it stays in DRAIN" in error
    assert statuses(octofx.lab)["dev-01"] == "DRAIN"
    holder.join(30)
    assert held["response"].status_code == 200 and "version 1.0.0" in held["response"].text  # never cut
    assert time.monotonic() - started < 60
    assert octofx.health("dev-01") == "ok 1.0.0"  # the package step never ran


def test_an_unreachable_target_fails_with_a_transport_error(octofx: OctoFX) -> None:
    dev = next(t for t in octofx.infra["targets"] if t["name"] == "dev-01")
    dev["transport"]["port"] = 1  # nothing listens there
    dev["transport"]["connect_timeout"] = 3
    octofx.apply()
    octofx.push("1.0.0")
    octofx.release("1.0.0")
    result = octofx.deploy("1.0.0", "Development")
    assert result.exit_code == 1
    error = octofx.deployments()[0]["error"]
    assert f"TransportError: dev-01: connect: cannot connect to {octofx.lab.info('dev-01')['address']}:1" in error
    assert "connection refused" in error
    assert statuses(octofx.lab)["dev-01"] != "MAINT"  # never taken out of the balancer: nothing was done to it


def test_lab_infrastructure_and_sample_agree() -> None:
    """The sample's infrastructure.yaml (for the default lab) names what `ferry lab up` writes."""
    sample = yaml.safe_load((EXAMPLES / "octofx" / "infrastructure.yaml").read_text())
    assert [(t["name"], t["environment"]) for t in sample["targets"]] == SAMPLE_TARGETS
    assert [lb["backend"] for lb in sample["load_balancers"]] == [BACKEND]
