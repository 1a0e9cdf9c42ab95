"""One package install on one SSH lab target: ferry's one-session install vs the phased one (issue 17 item 4).

    .venv/bin/python -m benchmarks.package_install [--pairs 8] [--json]

Starts a private one-target lab (its own FERRY_HOME and loopback /24; needs root like `ferry lab up`) and
installs the OctoFX sample package with the sample project's step (substitution of config/site.conf and
config/appsettings.json, Deploy.sh restarting the app, PostDeploy.sh, keep 3) on an open connection, as a
deployment does. Each pair runs both forms in alternating order (ABBA), each with a new version (so the
package is uploaded) and then the same version again (upload skipped). Reports per-install seconds, their
medians, the paired ratios, the SSH sessions each form opened, the load average and the machine's CPU-seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.rolling_vs_ansible import load_average, machine_cpu_seconds
from flows.lab import LAB_USER, Lab
from snapshots.digests import sha256_file
from snapshots.model.infrastructure import SshTransport as SshSpec
from snapshots.model.steps import PackageStep
from snapshots.octostache import render
from steps.context import PackageRef, StepContext
from steps.kinds import package as package_step
from steps.transports.ssh import SshTransport

ROOT = "/srv/bench-octofx"


def _context(ssh: SshTransport, ref: PackageRef, log: list[str]) -> StepContext:
    step = PackageStep(name="Install OctoFX.Web", kind="package", package="OctoFX.Web", root="#{App.Root}",
                       substitute={"files": ["config/site.conf"], "structured": ["config/appsettings.json"]},
                       keep=3)
    variables = {"App.Root": ROOT, "App.Port": "8080", "Site.Host": "octofx.example", "Site.Banner": "OctoFX",
                 "Site:Banner": "OctoFX", "ConnectionStrings:Default": "Server=db01;Database=OctoFX",
                 "Db.Password": "not-a-real-secret", "Release.Number": ref.version,
                 "Environment.Name": "Bench", "Machine.Name": "bench-01"}
    return StepContext(deployment_id=1, project="OctoFX", release=ref.version, environment="Bench", step=step,
                       target=None, transport=ssh, variables=variables,
                       render=lambda text, where: render(text, variables, where=where), log=log.append,
                       packages={"OctoFX.Web": ref})


def _build(version: str, outdir: Path) -> Path:
    """The sample's own package build (examples/octofx/build_package.py: deterministic bytes per version)."""
    spec = importlib.util.spec_from_file_location("octofx_build", Path(__file__).resolve().parents[1]
                                                  / "examples" / "octofx" / "build_package.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path: Path = module.build(version, outdir)
    return path


def _ref(path: Path, version: str) -> PackageRef:
    return PackageRef("OctoFX.Web", version, sha256_file(path), path.name, path)


def run(pairs: int, home: Path, verbose: bool = True) -> dict[str, Any]:
    lab = Lab(home)
    network = f"127.{200 + os.getpid() % 50}.{os.getpid() // 50 % 250 + 1}"  # apart from demo and test labs
    target = lab.up(1, network=network, ssh_port=2222)["targets"][0]
    forms = {"one-session": package_step.run, "phased": package_step.run_phased}
    times: dict[str, dict[str, list[float]]] = {f: {"new": [], "again": []} for f in forms}
    sessions: dict[str, int] = {}
    last_log: dict[str, list[str]] = {}  # the last one-session install's timing lines (as the step logs them)
    load_before, cpu_before = load_average(), machine_cpu_seconds()
    try:
        spec = SshSpec(kind="ssh", host=target["address"], port=target["ssh_port"], user=LAB_USER,
                       key_file=str(lab.key_file), host_key=target["host_key"])
        ssh = SshTransport(target["name"], spec)
        ssh.run(f"rm -rf {ROOT}")
        ssh.run("true")  # the phased form's first run creates its temp dir: not counted against either
        version = 0
        for i in range(pairs):
            order = list(forms) if i % 2 == 0 else list(reversed(forms))
            for form in order:
                version += 1
                ref = _ref(_build(f"1.0.{version}", home / "packages"), f"1.0.{version}")
                for kind in ("new", "again"):
                    log: list[str] = []
                    opened = ssh.channels_opened
                    start = time.perf_counter()
                    forms[form](_context(ssh, ref, log))
                    seconds = time.perf_counter() - start
                    times[form][kind].append(seconds)
                    sessions[f"{form}/{kind}"] = ssh.channels_opened - opened
                    if form == "one-session":
                        last_log[kind] = [line for line in log
                                          if " finished in " in line or line.startswith("uploaded ")]
                    if verbose:
                        print(f"pair {i + 1} {form:11} {kind:5} {seconds:6.3f} s  "
                              f"{ssh.channels_opened - opened} sessions", flush=True)
        ssh.run(f"kill $(cat {ROOT}/Bench/OctoFX.Web/octofx.pid) 2>/dev/null; rm -rf {ROOT}")
        ssh.close()
    finally:
        lab.down()
    load_after, cpu_after = load_average(), machine_cpu_seconds()
    result: dict[str, Any] = {"pairs": pairs, "sessions_per_install": sessions, "one_session_timing_lines": last_log,
                              "load_average": [load_before, load_after],
                              "machine_cpu_seconds": round(cpu_after - cpu_before, 1)}
    for kind in ("new", "again"):
        one, phased = times["one-session"][kind], times["phased"][kind]
        ratios = sorted(a / b for a, b in zip(one, phased, strict=True))
        result[kind] = {"one_session_median_s": round(statistics.median(one), 3),
                        "phased_median_s": round(statistics.median(phased), 3),
                        "paired_ratio_median": round(statistics.median(ratios), 3),
                        "paired_ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=8, help="pairs of installs (each form, new + same version)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ferry-bench-install-") as tmp:
        result = run(max(2, args.pairs), Path(tmp) / "ferry-home", verbose=not args.json)
    print(json.dumps({"schema": "ferry/v1", **result}, indent=2))


if __name__ == "__main__":
    main()
