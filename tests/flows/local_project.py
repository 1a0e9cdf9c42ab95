"""A project on `local` targets (directories on this machine running real bash), written per test, with
an event log the scripts append to so tests can check order and overlap from real timestamps."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EVENT = 'echo "$1 $(ferry_var Machine.Name) $(ferry_var Step.Name) $(date +%s.%N)" >> {events}'


@dataclass
class Event:
    kind: str
    target: str
    step: str
    at: float


@dataclass
class LocalProject:
    root: Path
    run: Any  # the `ferry` fixture
    environments: dict[str, int] = field(default_factory=lambda: {"Dev": 1, "Prod": 4})
    name: str = "Shop"

    @property
    def events_file(self) -> Path:
        return self.root / "events.log"

    def target_dir(self, name: str) -> Path:
        return self.root / "targets" / name

    def targets(self, env: str) -> list[str]:
        return [f"{env.lower()}-{i:02}" for i in range(1, self.environments[env] + 1)]

    def script(self, body: str, *, record: bool = True) -> str:
        """A step script that logs start/finish events around ``body``."""
        log = EVENT.format(events=self.events_file).replace("$1", "{kind}")
        if not record:
            return body
        return f"{log.format(kind='start')}\n{body}\nrc=$?\n{log.format(kind='finish')}\nexit $rc\n"

    def write(self, process: list[dict], variables: list[dict] | None = None, **project: Any) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        envs = list(self.environments)
        infra = {
            "environments": [{"name": e} for e in envs],
            "lifecycles": [{"name": "Default", "phases": [{"name": e, "environments": [e]} for e in envs]}],
            "targets": [{"name": t, "environment": e, "roles": ["web"],
                         "transport": {"kind": "local", "root": str(self.target_dir(t))}}
                        for e in envs for t in self.targets(e)],
        }
        (self.root / "infrastructure.yaml").write_text(yaml.safe_dump(infra, sort_keys=False))
        doc = {"project": self.name, "lifecycle": "Default", **project, "process": process,
               "variables": variables or []}
        (self.root / "project.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    def apply(self) -> None:
        result = self.run("apply", str(self.root / "infrastructure.yaml"), str(self.root / "project.yaml"))
        assert result.exit_code == 0, result.output

    def release(self, version: str, notes: str = "") -> None:
        result = self.run("release", "create", self.name, "--version", version, "--notes", notes)
        assert result.exit_code == 0, result.output

    def deploy(self, version: str, env: str, *args: str):  # type: ignore[no-untyped-def]
        return self.run("deploy", self.name, version, "--to", env, "--wait", *args)

    def deploy_async(self, version: str, env: str, *args: str) -> subprocess.Popen[str]:
        exe = Path(sys.executable).parent / "ferry"
        return subprocess.Popen([str(exe), "deploy", self.name, version, "--to", env, "--wait", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def events(self) -> list[Event]:
        if not self.events_file.exists():
            return []
        out = []
        for line in self.events_file.read_text().splitlines():
            kind, target, *step, at = line.split(" ")
            out.append(Event(kind, target, " ".join(step), float(at)))
        return out

    def spans(self, step: str | None = None) -> dict[str, tuple[float, float]]:
        """target → (start, finish) of the whole unit (first start, last finish) or of one step."""
        spans: dict[str, list[float]] = {}
        for e in self.events():
            if step and e.step != step:
                continue
            span = spans.setdefault(e.target, [float("inf"), 0.0])
            if e.kind == "start":
                span[0] = min(span[0], e.at)
            else:
                span[1] = max(span[1], e.at)
        return {t: (s[0], s[1]) for t, s in spans.items()}

    def deployments(self) -> list[dict]:
        result = self.run("deployment", "list", self.name, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["items"]

    def show(self, deployment_id: int) -> dict:
        result = self.run("deployment", "show", str(deployment_id), "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def wait_for_state(self, state: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [d for d in self.deployments() if d["state"] == state]
            if found:
                return found[0]
            time.sleep(0.5)
        raise AssertionError(f"no deployment reached {state} within {timeout}s: {self.deployments()}")


def max_overlap(spans: dict[str, tuple[float, float]]) -> int:
    """The most targets that were running at the same moment."""
    points = sorted([(s, 1) for s, _ in spans.values()] + [(f, -1) for _, f in spans.values()],
                    key=lambda p: (p[0], p[1]))
    running = peak = 0
    for _, delta in points:
        running += delta
        peak = max(peak, running)
    return peak
