"""Latency from a CI job's REST call to the deployment's first task starting, with a warm server.

    .venv/bin/python -m benchmarks.api_latency [--rounds 10] [--sqlite]

Set-up (not timed): a ``prefect server start`` and the ferry store, both on a private PostgreSQL (as in
production; ``--sqlite`` for a Prefect SQLite database and a SQLite store instead), one project on one local
target, and ``ferry serve`` running and polling. Then, per round: ``POST /api/deployments/{id}/create_flow_run``
for ``deploy-release`` (t0), and the first task run's ``start_time`` as Prefect records it. Rounds start 8 s
after the previous run finished (a warm, otherwise idle server, as between CI jobs).

Measured twice in one run, alternating ``ferry serve --warm 1`` (ferry's default: a pre-started interpreter)
and ``--warm 0`` (Prefect's own cold spawn of a fresh interpreter per run) — the baseline. Each latency is
split into: picked up (Scheduled → Pending: the runner's poll), process start (Pending → Running: the flow's
interpreter up and the engine started) and ferry's preparation (Running → first task: load and verify the
release, plan, take the environment's concurrency slot).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

TARGET_SECONDS = 3.0


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def write_project(root: Path) -> None:
    infra = {"environments": [{"name": "Test"}],
             "lifecycles": [{"name": "Default", "phases": [{"name": "Test", "environments": ["Test"]}]}],
             "targets": [{"name": "web-01", "environment": "Test", "roles": ["web"],
                          "transport": {"kind": "local", "root": str(root / "targets" / "web-01")}}]}
    project = {"project": "Latency", "lifecycle": "Default",
               "process": [{"name": "Install", "kind": "script", "roles": ["web"], "script": "true"}]}
    (root / "infrastructure.yaml").write_text(yaml.safe_dump(infra))
    (root / "project.yaml").write_text(yaml.safe_dump(project))


class Serve:
    def __init__(self, env: dict[str, str], root: Path, warm: int) -> None:
        self.env, self.warm = env, warm
        self.log = root / f"serve-warm{warm}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Serve:
        ferry = str(Path(sys.executable).parent / "ferry")
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen([ferry, "serve", "--warm", str(self.warm)], env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def wait_live(api: httpx.Client, since: float, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.get("/deployments/name/deploy-release/Latency")
        if response.status_code == 200 and response.json().get("last_polled") \
                and _ts(response.json()["last_polled"]) > since:
            return response.json()["id"]
        time.sleep(0.5)
    raise SystemExit("ferry serve did not start polling")


def one_round(api: httpx.Client, deployment_id: str) -> dict[str, float]:
    t0 = time.time()
    response = api.post(f"/deployments/{deployment_id}/create_flow_run",
                        json={"parameters": {"environment": "Test", "release": "1.0.0", "force": True}})
    response.raise_for_status()
    run_id = response.json()["id"]
    first_task: float | None = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if first_task is None:
            tasks = api.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}}).json()
            started = [_ts(t["start_time"]) for t in tasks if t.get("start_time")]
            if started:
                first_task = min(started)
        run = api.get(f"/flow_runs/{run_id}").json()
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            break
        time.sleep(0.05)
    if run["state"]["type"] != "COMPLETED" or first_task is None:
        raise SystemExit(f"the deployment did not complete: {run['state']}")
    states = api.get("/flow_run_states/", params={"flow_run_id": run_id}).json()
    at = {s["type"]: _ts(s["timestamp"]) for s in sorted(states, key=lambda s: s["timestamp"])
          if s["type"] in ("PENDING", "RUNNING")}
    return {"total": first_task - t0, "pickup": at["PENDING"] - t0, "process": at["RUNNING"] - at["PENDING"],
            "prepare": first_task - at["RUNNING"]}


def measure(env: dict[str, str], root: Path, api: httpx.Client, warm: int, rounds: int,
            verbose: bool) -> list[dict[str, float]]:
    with Serve(env, root, warm):
        deployment_id = wait_live(api, time.time())
        for _ in range(2):  # warm-up: first connections, first imports of the serve process, caches
            one_round(api, deployment_id)
            time.sleep(8)
        results = []
        for _ in range(rounds):
            result = one_round(api, deployment_id)
            results.append(result)
            if verbose:
                print(f"    warm={warm} " + "  ".join(f"{k} {v:5.2f}" for k, v in result.items())
                      + f"  load {os.getloadavg()[0]:.1f}", flush=True)
            time.sleep(8)  # an idle server between calls, as between CI jobs (its warm process ready again)
    return results


def summary(label: str, results: list[dict[str, float]]) -> str:
    totals = sorted(r["total"] for r in results)
    p90 = totals[min(len(totals) - 1, round(0.9 * (len(totals) - 1)))]
    parts = "  ".join(f"{k} {statistics.median(r[k] for r in results):.2f}" for k in ("pickup", "process", "prepare"))
    return (f"  {label:<34} median {statistics.median(totals):5.2f} s  p90 {p90:5.2f} s  max {totals[-1]:5.2f} s"
            f"   ({parts})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sqlite", action="store_true", help="Prefect and the ferry store on SQLite")
    parser.add_argument("--verbose", action="store_true", help="Print every round")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.servers.postgres import PostgresServer
    from tests.servers.prefect_server import PrefectServer

    root = Path(tempfile.mkdtemp(prefix="ferry-bench-latency-"))
    write_project(root)
    postgres = None if args.sqlite else PostgresServer().start()
    server: Any = None
    try:
        if postgres is None:
            server = PrefectServer().start()
            store = f"sqlite:///{root / 'store.db'}"
        else:
            url = postgres.create_database("prefect", extensions=("pg_trgm",))
            server = PrefectServer(database_url=url.replace("postgresql://", "postgresql+asyncpg://")).start()
            store = postgres.create_database("ferry")
        env = {**os.environ, **server.env(), "FERRY_HOME": str(root / "home"), "FERRY_DATABASE_URL": store,
               "PREFECT_LOGGING_LEVEL": "WARNING"}
        ferry = str(Path(sys.executable).parent / "ferry")
        for command in (["apply", str(root / "infrastructure.yaml"), str(root / "project.yaml")],
                        ["release", "create", "Latency", "--version", "1.0.0"]):
            subprocess.run([ferry, *command], env=env, check=True, stdout=subprocess.DEVNULL)
        api = httpx.Client(base_url=server.api_url, timeout=30)
        halves = max(1, args.rounds // 2)
        warm: list[dict[str, float]] = []
        cold: list[dict[str, float]] = []
        for _ in range(2):  # alternate, so a noisy minute on a shared machine hits both alike
            warm += measure(env, root, api, 1, halves, args.verbose)
            cold += measure(env, root, api, 0, halves, args.verbose)
    finally:
        if server is not None:
            server.stop()
        if postgres is not None:
            postgres.stop()
    backend = "SQLite" if args.sqlite else "PostgreSQL"
    loads = os.getloadavg()
    print(f"REST create_flow_run → first task started (deploy-release, 1 local target; Prefect server and ferry "
          f"store on {backend}; {len(warm)} + {len(cold)} rounds)")
    print(summary("ferry serve (warm interpreter)", warm))
    print(summary("ferry serve --warm 0 (Prefect spawn)", cold))
    ratio = statistics.median(r["total"] for r in cold) / statistics.median(r["total"] for r in warm)
    median = statistics.median(r["total"] for r in warm)
    verdict = "meets" if median < TARGET_SECONDS else "misses"
    print(f"  cold/warm = {ratio:.2f}; target < {TARGET_SECONDS:g} s: {verdict} it (median {median:.2f} s)")
    print("  (pickup = Scheduled→Pending, the poll; process = Pending→Running; prepare = Running→first task)")
    print(f"  machine: {os.cpu_count()} CPUs, load average at the end {loads[0]:.1f} / {loads[1]:.1f} / {loads[2]:.1f} "
          "(other work on the machine stretches the tail)")


if __name__ == "__main__":
    main()
