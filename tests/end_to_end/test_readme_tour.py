"""README.md's tour as a tested document: its shell commands, taken from the fenced ``sh`` blocks of the
"A 5-minute tour" section in order, run as written in one bash session on a fresh FERRY_HOME against the lab,
so the README cannot drift from what ferry does.

The session's lab fixture stands in for the tour's ``ferry lab up`` (it runs on a private loopback network, so
a developer's own lab is left alone): its infrastructure.yaml is put where ``ferry lab up`` writes it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.servers.ssh_lab import LabInfo

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TOUR_HEADING = "## A 5-minute tour"


def tour_commands(readme: str) -> list[str]:
    """The tour's commands in order: every line of its ``sh`` blocks up to the next heading, comments out,
    ``\\``-continued lines joined."""
    section = readme.split(f"\n{TOUR_HEADING}\n", 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    commands: list[str] = []
    for block in re.findall(r"^```sh\n(.*?)^```", section, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
    return commands


def test_tour_commands_are_found_in_order() -> None:
    commands = tour_commands((REPO / "README.md").read_text())
    assert commands[0] == "ferry lab up"
    assert commands[1].startswith("export OCTOFX_DB_PASSWORD=")
    assert any(c.startswith("ferry release diff OctoFX 1.0.0 1.1.0") for c in commands)
    assert commands.index(next(c for c in commands if "build_package.py 1.0.0" in c)) < commands.index(
        next(c for c in commands if c.startswith("ferry package push")))


@pytest.mark.timeout(900)  # the lab and Prefect fixtures start inside this budget; a loaded machine is slow
def test_the_readme_tour_runs_as_written(lab: LabInfo, tmp_path: Path, ferry_home: Path,
                                         prefect_env: dict[str, str]) -> None:
    commands = tour_commands((REPO / "README.md").read_text())
    assert commands[0] == "ferry lab up"
    ferry_home.mkdir(mode=0o700)
    (ferry_home / "lab").mkdir(mode=0o700)
    shutil.copy(lab.lab.infrastructure_file, ferry_home / "lab" / "infrastructure.yaml")
    work = tmp_path / "checkout"  # the tour runs from the repository's root; its build output lands here
    work.mkdir()
    (work / "examples").symlink_to(REPO / "examples")
    script = ["set -euo pipefail"]
    for index, command in enumerate(commands[1:], start=1):
        script += [f"echo \"@@@ {index} $(date +%s.%N)\"", f"echo '@@@ {index}' >&2", command]
    env = {key: value for key, value in os.environ.items() if key != "OCTOFX_DB_PASSWORD"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    started, started_at = time.monotonic(), time.time()
    proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=540)  # a loaded CI machine: each ferry command pays its start-up
    took = time.monotonic() - started
    reached = [(int(i), float(t)) for i, t in re.findall(r"^@@@ (\d+) ([\d.]+)$", proc.stdout, flags=re.M)]
    last = reached[-1][0] if reached else 0
    end = started_at + took
    for (index, at), (_, after) in zip(reached, [*reached[1:], (0, end)], strict=True):
        print(f"{after - at:6.1f} s  {commands[index]}")
    assert proc.returncode == 0, (f"tour command {last} failed: {commands[last]!r}\n--- stdout\n{proc.stdout[-3000:]}"
                                  f"\n--- stderr\n{proc.stderr[-3000:]}")
    assert last == len(commands) - 1
    out = proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "tour-only-secret" not in out + proc.stderr
    assert "1.0.0" in out and "1.1.0" in out
    assert re.search(r"rolling Development back from 1\.1\.0 to 1\.0\.0", out), out[-2000:]
    assert out.count("succeeded") >= 4  # deploy 1.0.0, deploy latest, promote, rollback
    print(f"README tour: {len(commands)} commands in {took:.1f} s")
