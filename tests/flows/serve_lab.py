"""A project on local targets served by a real ``ferry serve`` subprocess, with its ferry store on the test
PostgreSQL and the session's real Prefect server: what the serve, schedule and browser tests share.

The tests talk to it the way CI and people do: HTTP to the Prefect API (httpx), the ``ferry`` CLI, a browser.
Each serving gets a project name of its own, because the Prefect server is shared by the whole session and
deployments are registered by project name.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import CliResult
from tests.ferry_in_process import run_main, runs_here, whole_environment
from tests.flows.local_project import LocalProject

FERRY = str(Path(sys.executable).parent / "ferry")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}

BODY = 'sleep "$(ferry_var Sleep)"; [ "$(ferry_var Fail)" != yes ]'
"""The step every served test project runs: how long and whether to fail are prompted variables."""

PROMPTED = [{"name": "Sleep", "value": "0.3", "prompt": {"required": False, "description": "seconds"}},
            {"name": "Fail", "value": "no", "prompt": {"required": False, "description": "yes: the step fails"}}]


def cli_runner(env: dict[str, str]) -> Callable[..., CliResult]:
    """``ferry`` with exactly ``env``: in this process where that behaves the same (tests/ferry_in_process.py)."""
    def run(*args: str, timeout: float = 300) -> CliResult:
        if os.environ.get("FERRY_TEST_SUBPROCESS") != "1" and runs_here(args, env):
            return CliResult(*run_main(args, whole_environment(env)))
        proc = subprocess.run([FERRY, *args], capture_output=True, text=True, env=env, timeout=timeout)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class ServedProject:
    """One project, its store and its ``ferry serve`` process."""

    root: Path
    env: dict[str, str]
    project: LocalProject
    api: httpx.Client
    serve_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.project.name

    def ferry(self, *args: str, timeout: float = 300) -> CliResult:
        return self.project.run(*args, timeout=timeout)

    def write(self, process: list[dict[str, Any]] | None = None, *, auto_deploy: tuple[str, ...] = (),
              guided_failure: bool = False, **project: Any) -> None:
        """The project's YAML (one rolling step running ``BODY`` by default) and its infrastructure, with the
        named environments' phases auto-deploying and/or Prod pausing on failure when asked."""
        if process is None:
            process = [{"name": "Roll out", "roles": ["web"], "rolling": {"window": 2},
                        "steps": [{"name": "Install", "kind": "script", "script": self.project.script(BODY)}]}]
        self.project.write(process, PROMPTED, **project)
        infra_file = self.root / "shop" / "infrastructure.yaml"
        infra = yaml.safe_load(infra_file.read_text())
        for phase in infra["lifecycles"][0]["phases"]:
            if phase["name"] in auto_deploy:
                phase["auto_deploy"] = True
        if guided_failure:
            for env in infra["environments"]:
                env["guided_failure"] = env["name"] == "Prod"
        infra_file.write_text(yaml.safe_dump(infra, sort_keys=False))

    def start(self, *extra: str) -> None:
        """Start ``ferry serve`` and wait until Prefect shows its deploy-release deployment as polled. Its
        ferry server API listens on a free port (many serve processes share this machine): ``api_url``."""
        log = self.root / f"serve-{len(self.logs)}.log"
        self.logs.append(log)
        args = [*self.serve_args, *extra]
        if not any(a in ("--api-port", "--no-api") for a in args):
            args += ["--api-port", "0"]
        with open(log, "wb") as out:
            self.process = subprocess.Popen([FERRY, "serve", "--project", self.name, "--sync-seconds", "2",
                                             *args], env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        self.wait_live()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def forget(self) -> None:
        """Delete this project's deployments from the session's Prefect server (their schedules would keep
        adding runs nobody serves)."""
        for flow in ("deploy-release", "promote", "rollback", "create-release", "plan-release"):
            response = self.api.get(f"/deployments/name/{flow}/{self.name}")
            if response.status_code == 200:
                self.api.delete(f"/deployments/{response.json()['id']}")

    @property
    def api_url(self) -> str:
        """The base URL of this serve's ferry server API (FERRY_SERVER), from the line it prints."""
        found = re.findall(r"ferry API on (\S+)/api/v1", self.serve_log())
        assert found, f"ferry serve printed no API address:\n{self.serve_log()[-3000:]}"
        return found[-1]

    def serve_log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def deployment(self, flow: str = "deploy-release") -> dict[str, Any]:
        response = self.api.get(f"/deployments/name/{flow}/{self.name}")
        response.raise_for_status()
        return response.json()

    def wait_live(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        started = time.time()
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"ferry serve exited {self.process.returncode}:\n{self.serve_log()[-3000:]}")
            response = self.api.get(f"/deployments/name/deploy-release/{self.name}")
            if response.status_code == 200:
                polled = response.json().get("last_polled")
                if polled and parse_time(polled) > started:  # polled by this process, not the last one
                    return
            time.sleep(0.5)
        raise AssertionError(f"ferry serve did not start serving within {timeout}s:\n{self.serve_log()[-3000:]}")

    def create_run(self, parameters: dict[str, Any], flow: str = "deploy-release",
                   **body: Any) -> httpx.Response:
        """What a CI job does: POST /api/deployments/{id}/create_flow_run."""
        deployment_id = self.deployment(flow)["id"]
        return self.api.post(f"/deployments/{deployment_id}/create_flow_run", json={"parameters": parameters, **body})

    def flow_run(self, run_id: str) -> dict[str, Any]:
        response = self.api.get(f"/flow_runs/{run_id}")
        response.raise_for_status()
        return response.json()

    def wait_final(self, run_id: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state"]["type"] in FINAL:
                return run
            time.sleep(0.5)
        raise AssertionError(f"flow run {run_id} not finished within {timeout}s: {self.flow_run(run_id)['state']}"
                             f"\n{self.serve_log()[-3000:]}")

    def wait_state(self, run_id: str, state_type: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state"]["type"] == state_type:
                return run
            time.sleep(0.5)
        raise AssertionError(f"flow run {run_id} never {state_type}: {self.flow_run(run_id)['state']}")

    def records(self) -> list[dict[str, Any]]:
        result = self.ferry("deployment", "list", self.name, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["items"]

    def record_of(self, run_id: str) -> dict[str, Any]:
        found = [d for d in self.records() if d["flow_run_id"] == run_id]
        assert found, f"no ferry deployment record for flow run {run_id}: {self.records()}"
        return found[0]

    def task_runs(self, run_id: str) -> list[dict[str, Any]]:
        response = self.api.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}})
        response.raise_for_status()
        return response.json()


def make_served(root: Path, prefect_env: dict[str, str], database_url: str, *,
                environments: dict[str, int] | None = None, serve_args: tuple[str, ...] = ()) -> ServedProject:
    """A fresh FERRY_HOME + PostgreSQL store, a uniquely named project on local targets (not yet written)."""
    env = {**os.environ, **prefect_env, "FERRY_HOME": str(root / "ferry-home"), "FERRY_DATABASE_URL": database_url,
           "FERRY_USER": "ci", "COLUMNS": "200"}
    env.pop("FERRY_MASTER_KEY", None)
    name = f"Shop-{uuid.uuid4().hex[:6]}"
    project = LocalProject(root / "shop", cli_runner(env), environments=environments or {"Dev": 1, "Prod": 2},
                           name=name)
    api = httpx.Client(base_url=prefect_env["PREFECT_API_URL"], timeout=30)
    return ServedProject(root, env, project, api, serve_args)
