"""``make demo``: the sample project (examples/octofx) applied, its package pushed, released and shown.

It runs in its own FERRY_HOME (``.demo/`` in the repository, wiped at the start so every run begins
from a clean slate) and prints how to look around afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "examples" / "octofx"
HOME = Path(os.environ.get("FERRY_DEMO_HOME", REPO / ".demo"))


def ferry(*args: str) -> None:
    print(f"\n$ ferry {' '.join(args)}", flush=True)
    subprocess.run([str(Path(sys.executable).parent / "ferry"), *args], check=True)


def main() -> None:
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    os.environ["FERRY_HOME"] = str(HOME)
    os.environ.setdefault("OCTOFX_DB_PASSWORD", "demo-only-" + os.urandom(6).hex())
    packages = Path(tempfile.mkdtemp(prefix="octofx-packages-"))
    build = [sys.executable, str(SAMPLE / "build_package.py")]
    v1 = subprocess.run([*build, "1.0.0", str(packages)], check=True, capture_output=True, text=True).stdout.strip()
    v2 = subprocess.run([*build, "1.1.0", str(packages)], check=True, capture_output=True, text=True).stdout.strip()

    ferry("apply", str(SAMPLE / "infrastructure.yaml"), str(SAMPLE / "project.yaml"))
    ferry("package", "push", v1, v2)
    ferry("release", "create", "OctoFX", "--package", "OctoFX.Web:1.0.0", "--notes", "First release of OctoFX")
    ferry("release", "create", "OctoFX", "--notes", "Faster quotes page")
    ferry("release", "list", "OctoFX")
    ferry("release", "show", "OctoFX", "1.1.0")
    ferry("release", "diff", "OctoFX", "1.0.0", "1.1.0")
    ferry("release", "verify", "OctoFX", "1.1.0")
    shutil.rmtree(packages, ignore_errors=True)
    print(f"\nDone. Look around with:  export FERRY_HOME={HOME}; .venv/bin/ferry release list OctoFX")


if __name__ == "__main__":
    main()
