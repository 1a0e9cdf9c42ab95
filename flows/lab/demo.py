"""``make demo``: the OctoFX sample rolled through Development → Test → Production on the local lab while a
load generator sends requests through HAProxy — and not one of them fails.

1. ``ferry lab up``: seven SSH targets on 127.0.0.2–8 (each its own sshd, /srv and home) behind one HAProxy on
   127.0.0.1:8000; the lab writes its infrastructure.yaml (addresses, key, pinned host keys).
2. Apply that infrastructure and examples/octofx/project.yaml; push OctoFX.Web 1.0.0 and 1.1.0; release both.
3. Deploy 1.0.0 everywhere (Development → Test → Production, the lifecycle's order).
4. Start the load generator, then roll 1.1.0 Development → Test → Production (Production: window 1,
   ``min_healthy`` 3 counted in HAProxy), and print requests, failures, versions seen and per-target timings.

It works in its own FERRY_HOME (``.demo/`` in the repository): a run first stops the previous run's lab and
wipes ``.demo/``, so it always starts from a clean slate. Deployments run against one Prefect server the demo
starts (history kept in ``.demo/prefect``) and stops at the end. The lab stays up for looking around.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from flows.lab import Lab
from flows.lab.load import LoadGenerator

REPO = Path(__file__).resolve().parents[2]  # flows/lab/demo.py → the repository
SAMPLE = REPO / "examples" / "octofx"
HOME = Path(os.environ.get("FERRY_DEMO_HOME", REPO / ".demo")).absolute()
FERRY = str(Path(sys.executable).parent / "ferry")
ENVIRONMENTS = ["Development", "Test", "Production"]
LOAD_THREADS, LOAD_RATE, LOAD_MAX_REQUESTS, LOAD_MAX_SECONDS = 4, 250, 250_000, 900


def ferry(*args: str, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the ferry CLI as a user would; show the command and (unless quiet) its output."""
    print(f"\n$ ferry {' '.join(args)}", flush=True)
    result = subprocess.run([FERRY, *args], capture_output=True, text=True)
    if not quiet or result.returncode != 0:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"\ndemo stopped: `ferry {' '.join(args)}` failed (exit code {result.returncode})")
    return result


def deploy(args: list[str], logs: Path) -> dict[str, Any]:
    """One deployment with --wait; its streamed log goes to a file, the outcome and timings to the screen."""
    logs.mkdir(parents=True, exist_ok=True)
    print(f"\n$ ferry {' '.join(args)}", flush=True)
    started = time.monotonic()
    result = subprocess.run([FERRY, *args], capture_output=True, text=True)
    took = time.monotonic() - started
    listed = json.loads(subprocess.run([FERRY, "deployment", "list", "OctoFX", "--json"], capture_output=True,
                                       text=True, check=True).stdout)
    record = json.loads(subprocess.run([FERRY, "deployment", "show", str(listed[0]["id"]), "--json"],
                                       capture_output=True, text=True, check=True).stdout)
    log = logs / f"deployment-{record['id']}.log"
    log.write_text(result.stdout + result.stderr)
    print(f"  deployment #{record['id']}: {record['version']} → {record['environment']}: {record['state']} "
          f"in {took:.1f}s (log: {log.relative_to(REPO) if log.is_relative_to(REPO) else log})")
    for line in timings(record["results"]):
        print("   ", line)
    if result.returncode != 0:
        print(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "")
        raise SystemExit(f"\ndemo stopped: deployment #{record['id']} failed; see {log}")
    return record


def _at(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def timings(results: list[dict[str, Any]]) -> list[str]:
    """Per target, each step's seconds and how long it was out of the balancer (Remove start → Add finish)."""
    columns = {"Remove from load balancer": "drain", "Install OctoFX.Web": "install", "Smoke test": "smoke",
               "Add to load balancer": "back UP"}
    rows: dict[str, dict[str, float]] = {}
    for r in results:
        start, end = _at(r.get("started_at")), _at(r.get("finished_at"))
        if not r.get("target") or r.get("state") != "success" or start is None or end is None:
            continue
        row = rows.setdefault(r["target"], {"first": start, "last": end})
        row["first"], row["last"] = min(row["first"], start), max(row["last"], end)
        if r["step"] in columns:
            row[columns[r["step"]]] = end - start
    if not rows:
        return []
    lines = [f"{'target':<8}" + "".join(f"{c:>9}" for c in columns.values()) + f"{'out of LB':>11}"]
    for name, row in sorted(rows.items(), key=lambda kv: kv[1]["first"]):
        cells = "".join(f"{row[c]:>8.2f}s" if c in row else f"{'-':>9}" for c in columns.values())
        lines.append(f"{name:<8}{cells}{row['last'] - row['first']:>10.2f}s")
    return lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_prefect(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """One Prefect server for the demo's deployments (instead of a temporary one per `ferry deploy`)."""
    port = _free_port()
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "ab")  # noqa: SIM115 — the server outlives this function
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port), "--no-ui"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the Prefect server exited; see {home / 'server.log'}")
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return proc, api
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"the Prefect server did not answer within 180s; see {home / 'server.log'}")


def stop_prefect(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def clean_slate() -> None:
    """Stop the previous run's lab (its processes, not just its files), then wipe the demo's home."""
    if (HOME / "lab").exists() or (HOME / "prefect" / "server.json").exists():
        Lab(HOME).down()  # also the local Prefect server `ferry prefect-server start` left running there
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)


def report(load: LoadGenerator, records: list[dict[str, Any]]) -> bool:
    r = load.report
    print("\n== What the load generator saw (through HAProxy, keep-alive connections) ==")
    print(f"requests: {r.requests}   failed: {r.failures}   {r.rate:.0f} requests/s over {r.seconds:.1f}s "
          f"({LOAD_THREADS} threads, paced at {LOAD_RATE}/s)")
    print(f"versions seen: {', '.join(f'{v}: {n}' for v, n in sorted(r.versions.items()))}")
    for phase, versions in r.phases.items():
        print(f"  while {phase}: {', '.join(f'{v}: {n}' for v, n in sorted(versions.items()))}")
    machines = Counter(r.machines)
    print(f"answered by: {', '.join(f'{m}: {n}' for m, n in sorted(machines.items()))}")
    for error in r.errors:
        print(f"  failure: {error}")
    spans = []
    for record in records:
        starts = [t for x in record["results"] if (t := _at(x.get("started_at"))) is not None]
        ends = [t for x in record["results"] if (t := _at(x.get("finished_at"))) is not None]
        if starts and ends:
            n, failed, versions = r.between(min(starts), max(ends))
            spans.append(f"{record['environment']}: {n} requests during its rollout, {failed} failed")
    print("\n".join(spans))
    return r.failures == 0


def main() -> None:
    sys.path.insert(0, str(REPO))
    clean_slate()
    os.environ["FERRY_HOME"] = str(HOME)
    os.environ.setdefault("OCTOFX_DB_PASSWORD", "demo-only-" + os.urandom(6).hex())
    logs = HOME / "logs"

    ferry("lab", "up")
    status = json.loads(subprocess.run([FERRY, "lab", "status", "--json"], capture_output=True, text=True,
                                       check=True).stdout)
    balancer = status["balancer_url"]

    print("\nstarting a Prefect server for the deployments (history in .demo/prefect) …", flush=True)
    prefect, api = start_prefect(HOME / "prefect")
    os.environ["PREFECT_API_URL"] = api
    os.environ["PREFECT_HOME"] = str(HOME / "prefect" / "client")
    ok = False
    try:
        packages = HOME / "packages"
        build = [sys.executable, str(SAMPLE / "build_package.py")]
        v1 = subprocess.run([*build, "1.0.0", str(packages)], check=True, capture_output=True, text=True).stdout
        v2 = subprocess.run([*build, "1.1.0", str(packages)], check=True, capture_output=True, text=True).stdout
        ferry("apply", status["infrastructure"], str(SAMPLE / "project.yaml"))
        ferry("package", "push", v1.strip(), v2.strip())
        ferry("release", "create", "OctoFX", "--package", "OctoFX.Web:1.0.0", "--notes", "First release of OctoFX")
        ferry("release", "create", "OctoFX", "--notes", "Faster quotes page")
        ferry("release", "list", "OctoFX")

        print("\n== 1.0.0 everywhere (no app runs yet: each target is installed and put into HAProxy) ==")
        deploy(["deploy", "OctoFX", "1.0.0", "--to", "Development", "--wait"], logs)
        for source, env in itertools.pairwise(ENVIRONMENTS):
            deploy(["promote", "OctoFX", "--from", source, "--to", env, "--wait"], logs)

        print(f"\n== Rolling 1.1.0 while {LOAD_THREADS} threads send ~{LOAD_RATE} requests/s to {balancer} ==")
        records = []
        with LoadGenerator(balancer, threads=LOAD_THREADS, rate=LOAD_RATE, max_requests=LOAD_MAX_REQUESTS,
                           max_seconds=LOAD_MAX_SECONDS) as load:
            load.wait(100, 30)
            load.mark("Development rolls")
            records.append(deploy(["deploy", "OctoFX", "1.1.0", "--to", "Development", "--wait"], logs))
            for source, env in itertools.pairwise(ENVIRONMENTS):
                load.mark(f"{env} rolls")
                records.append(deploy(["promote", "OctoFX", "--from", source, "--to", env, "--wait"], logs))
            load.mark("after")
            time.sleep(2)
        ok = report(load, records)
        ferry("status", "OctoFX")
    finally:
        stop_prefect(prefect)

    rel = HOME.relative_to(REPO) if HOME.is_relative_to(REPO) else HOME
    print(f"""
== Look around (the lab is still running) ==
  export FERRY_HOME={HOME}
  .venv/bin/ferry lab status                       # targets, HAProxy state, how to ssh in
  .venv/bin/ferry deployment list OctoFX           # then: .venv/bin/ferry deployment show ID
  .venv/bin/ferry release diff OctoFX 1.0.0 1.1.0
  curl -si {balancer} | grep -i octofx             # every answer names its version and machine
  ssh -i {rel}/lab/id_ed25519 -o UserKnownHostsFile={rel}/known_hosts ferry@127.0.0.5 \\
      'ls -l /srv/octofx/Production/OctoFX.Web; cat ~/.ferry/journal.json'
  .venv/bin/ferry prefect-server start             # Prefect's UI on the demo's runs (.demo/prefect): each
                                                   # flow run, its tasks named "<step> · <target>"
Stop the lab (and that Prefect server):  FERRY_HOME={HOME} .venv/bin/ferry lab down
(make demo again starts from a clean slate)""")
    if not ok:
        raise SystemExit("demo: some requests failed (see above)")


if __name__ == "__main__":
    main()
