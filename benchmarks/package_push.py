"""Package push over the ferry server API vs a local ``ferry package push``: same file, same store and feed.

    .venv/bin/python -m benchmarks.package_push [--mb 200] [--pairs 3] [--json]

Set-up (not timed): a Prefect server (SQLite), an executor ``FERRY_HOME`` (SQLite store, feed, master key)
with one project applied, ``ferry serve --api-port 0`` running with its API on loopback, an API key that may
push (``ferry api-key create``), and a package: a .tar.gz of random bytes (incompressible, so as big as asked;
the feed opens it and reads it to its end on both paths).

Each push is the whole command a person or a CI job runs, process start included:
  - API:   ``ferry package push FILE`` in remote mode — an environment with only ``FERRY_SERVER`` and
           ``FERRY_API_KEY`` — so the client hashes the file, streams it over HTTP, and ``ferry serve``
           hashes it again while writing it into the feed, checks it and records it;
  - local: ``ferry package push FILE`` on the executor, into the same store and feed.
One small push each way first, untimed (a fresh server's first request imports more). Pairs run in ABBA
order (API, local, local, API, …) so a drift in the machine's load hits both alike; each push gets a version
of its own (a hard link to the same bytes), so none is a no-op. Reported: MB/s
(10^6 bytes per second) per push, the paired ratios API/local (target: median at least 0.70), the CPU-seconds
of the pushing process and of ``ferry serve`` (and of the whole machine, which includes whatever else runs),
and the load average before each push.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

TARGET_RATIO = 0.70
FERRY = str(Path(sys.executable).parent / "ferry")
PACKAGE = "Bench.Payload"


def _random_package(path: Path, megabytes: int) -> None:
    """A .tar.gz holding one file of random bytes: incompressible, so the archive is as big as asked (the feed
    opens every archive and reads it to its end, on both paths)."""
    raw = path.with_name("payload.bin")
    with open(raw, "wb") as out:
        for _ in range(megabytes):
            out.write(os.urandom(1_000_000))
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        tar.add(raw, arcname="payload.bin")
    raw.unlink()


def _write_project(root: Path) -> None:
    infra = {"environments": [{"name": "Test"}],
             "lifecycles": [{"name": "Default", "phases": [{"name": "Test", "environments": ["Test"]}]}],
             "targets": [{"name": "web-01", "environment": "Test", "roles": ["web"],
                          "transport": {"kind": "local", "root": str(root / "targets" / "web-01")}}]}
    project = {"project": "Bench", "lifecycle": "Default", "packages": [PACKAGE],
               "process": [{"name": "Install", "kind": "script", "roles": ["web"], "script": "true"}]}
    (root / "infrastructure.yaml").write_text(yaml.safe_dump(infra))
    (root / "project.yaml").write_text(yaml.safe_dump(project))


def _process_cpu(pid: int) -> float:
    """utime + stime of a running process (and its waited-for children), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _machine_cpu() -> float:
    """Busy CPU-seconds of the whole machine so far (all cores; every process, not only ours)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Serve:
    """``ferry serve`` with its API on a free loopback port."""

    def __init__(self, env: dict[str, str], root: Path) -> None:
        self.log = root / "serve.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen([FERRY, "serve", "--api-port", "0", "--warm", "0"], env=env, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            found = re.findall(r"ferry API on (\S+)/api/v1", self.log.read_text(errors="replace"))
            if found:
                self.url = found[-1]
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"ferry serve did not start its API:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


def _push(env: dict[str, str], file: Path, serve_pid: int | None) -> dict[str, float]:
    load = os.getloadavg()[0]
    before = (_children_cpu(), _process_cpu(serve_pid) if serve_pid else 0.0, _machine_cpu())
    started = time.perf_counter()
    proc = subprocess.run([FERRY, "package", "push", str(file)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0 or ": pushed" not in proc.stdout:
        raise RuntimeError(f"push of {file.name} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    after = (_children_cpu(), _process_cpu(serve_pid) if serve_pid else 0.0, _machine_cpu())
    return {"seconds": seconds, "mb_s": file.stat().st_size / seconds / 1e6, "load": load,
            "cpu_client": after[0] - before[0], "cpu_server": after[1] - before[1],
            "cpu_machine": after[2] - before[2]}


def run(megabytes: int, pairs: int, root: Path, verbose: bool = True) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.servers.prefect_server import PrefectServer

    _write_project(root)
    payload = root / "payload.tar.gz"
    _random_package(payload, megabytes)
    size = payload.stat().st_size
    prefect = PrefectServer().start()
    serve: Serve | None = None
    try:
        executor = {**os.environ, **prefect.env(), "FERRY_HOME": str(root / "home"), "FERRY_USER": "bench",
                    "PREFECT_LOGGING_LEVEL": "WARNING"}
        for key in ("FERRY_SERVER", "FERRY_API_KEY", "FERRY_DATABASE_URL", "FERRY_MASTER_KEY", "FERRY_FEED_DIR"):
            executor.pop(key, None)
        subprocess.run([FERRY, "apply", str(root / "infrastructure.yaml"), str(root / "project.yaml")],
                       env=executor, check=True, stdout=subprocess.DEVNULL)
        made = subprocess.run([FERRY, "api-key", "create", "bench", "--project", "*", "--environment", "*",
                               "--can", "push", "--json"], env=executor, check=True, capture_output=True, text=True)
        key = json.loads(made.stdout)["key"]
        serve = Serve(executor, root)
        requester = {"PATH": os.environ["PATH"], "HOME": str(root), "FERRY_HOME": str(root / "no-such-home"),
                     "FERRY_SERVER": serve.url, "FERRY_API_KEY": key}
        for i, env in enumerate((requester, executor), 1):  # untimed: a fresh server's first request imports more
            warm_up = root / f"{PACKAGE}.0.0.{i}.tar.gz"
            _random_package(warm_up, 1)
            _push(env, warm_up, None)
            warm_up.unlink()
        results: dict[str, list[dict[str, float]]] = {"api": [], "local": []}
        n = 0
        for pair in range(pairs):
            order = ("api", "local") if pair % 2 == 0 else ("local", "api")  # ABBA
            for how in order:
                n += 1
                file = root / f"{PACKAGE}.1.0.{n}.tar.gz"
                os.link(payload, file)
                result = _push(*((requester, file, serve.process.pid) if how == "api" else (executor, file, None)))
                results[how].append(result)
                file.unlink()
                if verbose:
                    print(f"pair {pair + 1} {how:5}  {result['seconds']:6.2f} s  {result['mb_s']:6.1f} MB/s  "
                          f"cpu {result['cpu_client']:.2f} s + serve {result['cpu_server']:.2f} s  "
                          f"(machine {result['cpu_machine']:.1f} s)  load {result['load']:.2f}", flush=True)
    finally:
        if serve is not None:
            serve.stop()
        prefect.stop()
    ratios = [a["mb_s"] / b["mb_s"] for a, b in zip(results["api"], results["local"], strict=True)]
    median = statistics.median(ratios)

    def med(how: str, key: str) -> float:
        return round(statistics.median(r[key] for r in results[how]), 2)

    return {"megabytes": size / 1e6, "pairs": pairs, "order": "ABBA (API first in odd pairs)",
            "runs": results, "ratios": [round(r, 3) for r in ratios], "ratio_median": round(median, 3),
            "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3),
            "api_median_mb_s": med("api", "mb_s"), "local_median_mb_s": med("local", "mb_s"),
            "api_median_s": med("api", "seconds"), "local_median_s": med("local", "seconds"),
            "cpu_s": {how: {"client": med(how, "cpu_client"), "serve": med(how, "cpu_server"),
                            "machine": med(how, "cpu_machine")} for how in ("api", "local")},
            "load": [round(r["load"], 2) for how in ("api", "local") for r in results[how]],
            "target_ratio": TARGET_RATIO, "meets_target": median >= TARGET_RATIO}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="package size in MB (10^6 bytes)")
    parser.add_argument("--pairs", type=int, default=3, help="API/local pairs, ABBA order (at least 3)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ferry-bench-push-") as tmp:
        result = run(args.mb, max(3, args.pairs), Path(tmp), verbose=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    cpu = result["cpu_s"]
    print(f"package push of {result['megabytes']:.0f} MB, {result['pairs']} pairs in ABBA order "
          "(whole command, process start included; medians):")
    print(f"  over the API (ferry package push in remote mode → ferry serve): {result['api_median_mb_s']:7.1f} MB/s "
          f"({result['api_median_s']:.2f} s); CPU {cpu['api']['client']:.2f} s client + {cpu['api']['serve']:.2f} s "
          f"ferry serve")
    print(f"  local ferry package push on the executor:                      {result['local_median_mb_s']:7.1f} MB/s "
          f"({result['local_median_s']:.2f} s); CPU {cpu['local']['client']:.2f} s")
    verdict = "meets" if result["meets_target"] else "BELOW"
    paired = ", ".join(f"{r:.2f}" for r in result["ratios"])
    print(f"  API/local, paired: {paired} → median {result['ratio_median']:.2f} "
          f"(spread {result['ratio_min']:.2f}–{result['ratio_max']:.2f}; {verdict} the {TARGET_RATIO:.2f} target)")
    print(f"  whole-machine busy CPU-seconds per push (median, all processes): API {cpu['api']['machine']:.1f}, "
          f"local {cpu['local']['machine']:.1f}")
    loads = result["load"]
    print(f"  load average (1 min) before the pushes: {min(loads):.2f}–{max(loads):.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
