"""Release creation at scale: 5,000 variables, 200 steps, 3 packages totalling 300 MB.

    .venv/bin/python -m benchmarks.release_create [--mb 300] [--rounds 3]

Measures, in one run: `sha256sum` over the same package files (the baseline), ferry's package hashing
during `release create`, everything else `release create` does (snapshot, canonical JSON, digest,
encryption, one transaction), and the peak RSS of a real `ferry release create` process. Prints ratios
against the baseline, since absolute times drift on shared machines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import yaml

from snapshots import releases
from snapshots.projects import apply
from snapshots.store import Store
from snapshots.store import feed as feed_module
from snapshots.store.crypto import Vault
from snapshots.store.feed import Feed


def make_project(root: Path, n_vars: int, n_steps: int, package_ids: list[str]) -> Path:
    envs = ["Development", "Test", "Production"]
    infra = {
        "environments": [{"name": e} for e in envs],
        "lifecycles": [{"name": "Default", "phases": [{"name": e, "environments": [e]} for e in envs]}],
        "targets": [{"name": f"web-{i:03}", "environment": envs[i % 3], "roles": ["web"],
                     "transport": {"kind": "local", "root": f"/tmp/t{i}"}} for i in range(30)],
    }
    steps = []
    for i in range(n_steps):
        if i % 4 == 0:
            steps.append({"name": f"Deploy {i}", "kind": "package", "package": package_ids[i % len(package_ids)],
                          "roles": ["web"], "substitute": {"files": ["config/*.conf"]}})
        else:
            line = f"echo step {i} for $(ferry_var Environment.Name) on $(ferry_var Machine.Name)\n"
            steps.append({"name": f"Script {i}", "kind": "script", "roles": ["web"], "script": line * 3})
    variables = []
    for i in range(n_vars):
        var: dict = {"name": f"App.Setting{i % 2000}.Key{i // 2000}", "value": f"value-{i}-#{{Environment.Name}}"}
        if i % 2000 >= 1000:
            var["scope"] = {"environment": [envs[i % 3]]}
        if i % 50 == 0:
            var["sensitive"] = True
            var["value"] = f"secret-{i}-{os.urandom(8).hex()}"
        variables.append(var)
    project = {"project": "Big", "lifecycle": "Default", "packages": package_ids, "process": steps,
               "variables": variables}
    (root / "infra.yaml").write_text(yaml.safe_dump(infra))
    (root / "project.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    return root


def make_packages(root: Path, total_mb: int, ids: list[str]) -> list[Path]:
    paths = []
    each = total_mb * (1 << 20) // len(ids)
    for package_id in ids:
        path = root / f"{package_id}.1.0.0.zip"
        # a real (stored, uncompressed) zip: package push opens and lists every archive
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive, \
                archive.open("payload.bin", "w", force_zip64=True) as fh:
            block = os.urandom(1 << 20)
            for _ in range(each >> 20):
                fh.write(block)
                block = block[1:] + block[:1]
        paths.append(path)
    return paths


def sha256sum_seconds(files: list[Path]) -> float:
    start = time.perf_counter()
    subprocess.run(["sha256sum", *map(str, files)], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ids = ["Big.Web", "Big.Api", "Big.Worker"]
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-release-"))
    os.environ["FERRY_HOME"] = str(work / "home")
    os.environ.pop("FERRY_DATABASE_URL", None)
    make_project(work, 5000, 200, ids)
    files = make_packages(work, args.mb, ids)
    store = Store(f"sqlite:///{work / 'home' / 'ferry.db'}")
    feed = Feed(work / "home" / "feed")
    vault = Vault(os.urandom(32))
    with store.begin() as conn:
        apply(conn, [work / "infra.yaml", work / "project.yaml"], vault, "bench")
        for f in files:
            feed.push(conn, f, "bench")
    stored = [feed.path_of(i, f"{i}.1.0.0.zip") for i in ids]

    pin_seconds = [0.0]
    original_pin = releases._pin_packages

    def timed_pin(*a, **kw):  # type: ignore[no-untyped-def]
        """Package resolution + re-hashing of the feed files, as release create does it (3 threads)."""
        begin = time.perf_counter()
        try:
            return original_pin(*a, **kw)
        finally:
            pin_seconds[0] = time.perf_counter() - begin

    releases._pin_packages = timed_pin  # type: ignore[assignment]
    rows = []
    for round_no in range(args.rounds):
        baseline = sha256sum_seconds(stored)
        begin = time.perf_counter()
        for path in stored:  # one stream at a time, exactly like sha256sum
            feed_module.sha256_file(path)
        single = time.perf_counter() - begin
        begin = time.perf_counter()
        with store.begin() as conn:
            releases.create(conn, feed, "Big", "bench", vault=vault, version=f"1.0.{round_no}")
        rows.append((baseline, single, time.perf_counter() - begin, pin_seconds[0]))
    releases._pin_packages = original_pin  # type: ignore[assignment]

    # peak memory of a real CLI process doing the same
    env = {**os.environ, "FERRY_MASTER_KEY": __import__("base64").urlsafe_b64encode(os.urandom(32)).decode()}
    ferry = str(Path(sys.executable).parent / "ferry")
    proc = subprocess.Popen([ferry, "apply", str(work / "infra.yaml"), str(work / "project.yaml")], env=env,
                            stdout=subprocess.DEVNULL)
    proc.wait()
    start = time.perf_counter()
    proc = subprocess.Popen([ferry, "release", "create", "Big", "--version", "9.0.0"], env=env,
                            stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    cli_wall = time.perf_counter() - start
    if status != 0:
        sys.exit("ferry release create failed")
    peak_mb = usage.ru_maxrss / 1024

    baseline, single, wall, hashing = (statistics.median(r[i] for r in rows) for i in range(4))
    rest = max(wall - hashing, 0.0)
    size_mb = sum(f.stat().st_size for f in stored) / (1 << 20)
    print(f"release create: 5,000 variables, 200 steps, 3 packages = {size_mb:.0f} MB "
          f"(median of {args.rounds} rounds)")
    print(f"  sha256sum, one stream (baseline)     {baseline:7.3f} s  {size_mb / baseline:6.0f} MB/s")
    print(f"  ferry sha256, one stream             {single:7.3f} s  {size_mb / single:6.0f} MB/s"
          f"   speed ratio ferry/sha256sum = {baseline / single:.2f}")
    print(f"  ferry release create: hashing        {hashing:7.3f} s  {size_mb / hashing:6.0f} MB/s"
          f"   (3 files in parallel threads; ratio {baseline / hashing:.2f})")
    print(f"  ferry release create: everything else{rest:7.3f} s")
    print(f"  ferry release create: total          {wall:7.3f} s  (hashing {100 * hashing / wall:.0f}%)")
    print(f"  `ferry release create` process       {cli_wall:7.3f} s wall incl. interpreter start, "
          f"peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
