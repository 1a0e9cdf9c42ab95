"""The deploy engine's own cost per (step, target): 200 local targets, a rolling step of no-op scripts, window 10.

    .venv/bin/python -m benchmarks.deploy_local [--targets 200] [--steps 1] [--window 10] [--rounds 3] [--quick]

In one run, alternating: the *floor* (the same scripts run directly with bash, 10 targets at a time, each
target's steps in order) and ferry's deployment (a real ``deploy-release`` flow run against a real Prefect
server, in a child process whose peak RSS is read). Overhead per (step, target) = (ferry − floor) /
(targets × steps). Prefect server start-up is not counted (a real install runs one). Each round's load
average and whole-machine CPU-seconds are reported: on a shared machine both move the result.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from benchmarks.rolling_vs_ansible import load_average, machine_cpu_seconds
from steps.transports.bash import BASH_PREAMBLE

SCRIPTS = ["true", "echo installed > /dev/null", ":"]


def write_project(root: Path, targets: int, window: int, steps: int) -> None:
    infra = {
        "environments": [{"name": "Bench"}],
        "lifecycles": [{"name": "Default", "phases": [{"name": "Bench", "environments": ["Bench"]}]}],
        "targets": [{"name": f"t{i:03}", "environment": "Bench", "roles": ["web"],
                     "transport": {"kind": "local", "root": str(root / "targets" / f"t{i:03}")}}
                    for i in range(targets)],
    }
    project = {"project": "Bench", "lifecycle": "Default",
               "process": [{"name": "Roll", "roles": ["web"], "rolling": {"window": window},
                            "steps": [{"name": f"Step {i + 1}", "kind": "script", "script": s}
                                      for i, s in enumerate(SCRIPTS[:steps])]}]}
    (root / "infra.yaml").write_text(yaml.safe_dump(infra))
    (root / "project.yaml").write_text(yaml.safe_dump(project))


def floor(root: Path, targets: int, window: int, steps: int) -> float:
    """The same scripts, run directly: bash per script, the target's steps in order, ``window`` at once."""
    def one(i: int) -> None:
        cwd = root / "floor" / f"t{i:03}"
        cwd.mkdir(parents=True, exist_ok=True)
        for script in SCRIPTS[:steps]:
            subprocess.run(["bash", "-c", BASH_PREAMBLE + script], cwd=cwd, check=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=window) as pool:
        list(pool.map(one, range(targets)))
    return time.perf_counter() - start


def child(version: str) -> None:
    """Runs in its own process: one deployment, timed; prints wall time and peak RSS."""
    from flows.engine.request import DeployRequest, check_and_record
    from flows.orchestration.local_runs import run_here
    from snapshots.workspace import Workspace

    ctx = Workspace()
    request = DeployRequest("Bench", version, "Bench", force=True)
    deployment_id, _ = check_and_record(ctx, request)
    start = time.perf_counter()
    ok = run_here(request, deployment_id)
    wall = time.perf_counter() - start
    print(json.dumps({"ok": ok, "wall": wall, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1, choices=range(1, len(SCRIPTS) + 1),
                        help="no-op script steps per target (default 1: `true`)")
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.servers.prefect_server import PrefectServer

    root = Path(tempfile.mkdtemp(prefix="ferry-bench-deploy-"))
    rounds = 1 if args.quick else args.rounds
    write_project(root, args.targets, args.window, args.steps)
    server = PrefectServer().start()
    env = {**os.environ, **server.env(), "FERRY_HOME": str(root / "home"), "PREFECT_LOGGING_LEVEL": "WARNING"}
    ferry = str(Path(sys.executable).parent / "ferry")
    try:
        subprocess.run([ferry, "apply", str(root / "infra.yaml"), str(root / "project.yaml")], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([ferry, "release", "create", "Bench", "--version", "1.0.0"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        rows = []
        for _ in range(rounds):
            cpu, load = machine_cpu_seconds(), load_average()
            base = floor(root, args.targets, args.window, args.steps)
            out = subprocess.run([sys.executable, "-m", "benchmarks.deploy_local", "--child", "1.0.0"], env=env,
                                 check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            if not result["ok"]:
                sys.exit("the deployment failed: not a valid measurement")
            rows.append((base, result["wall"], result["peak_mb"], machine_cpu_seconds() - cpu,
                         max(load, load_average())))
    finally:
        server.stop()
    base = statistics.median(r[0] for r in rows)
    wall = statistics.median(r[1] for r in rows)
    peak = max(r[2] for r in rows)
    units = args.targets * args.steps
    print(f"deploy: {args.targets} local targets × {args.steps} no-op script step(s), window {args.window} "
          f"(median of {rounds}; load average {min(r[4] for r in rows):.1f}–{max(r[4] for r in rows):.1f} "
          f"on {os.cpu_count()} cores, a shared machine)")
    print(f"  floor (same scripts run directly)   {base:7.2f} s")
    print(f"  ferry deploy-release flow run       {wall:7.2f} s   ratio ferry/floor = {wall / base:.2f}")
    print(f"  overhead per (step, target)         {1000 * (wall - base) / units:7.1f} ms")
    print(f"  deploying process peak RSS          {peak:7.0f} MB")
    print(f"  whole-machine CPU per round (floor + ferry, every process) "
          f"{statistics.median(r[3] for r in rows):.1f} s")


if __name__ == "__main__":
    main()
