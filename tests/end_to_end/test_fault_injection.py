"""Fault injection (issue 13's standing suite): a deployment is SIGKILLed, or its SSH connection to a target is
cut, at each phase boundary of a unit — after "remove from the load balancer", in the middle of the install,
after the install but before "add back", in the middle of the add step's health wait — with and without
``--force``; then a plain re-run must leave every target on the release, in service and UP in HAProxy, the
target journals right (the release, no unfinished-unit marker), and no target redone that was done.

On the real lab (sshd targets behind a real HAProxy, the OctoFX sample, a real Prefect server), in the Test
environment: test-01 then test-02, one at a time. The fault always hits test-02's unit, so test-01 is the
target that was done and must not be redone. A connection is cut with a per-test TCP proxy in front of
test-02's sshd (tests/servers/tcp_proxy.py), which resets it as a dropped link would.

Also on local targets (real bash, no balancer): SIGKILL inside a unit; the killed run's scripts end with it,
the re-run waits for no lease (the record's heartbeat says the run is dead) and completes what was left.

Cases are chosen so every phase is hit by both faults and every fault and phase runs with and without
``--force`` at least once, within a few minutes on two cores (one unit of two targets per case).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES
from tests.end_to_end.test_rolling_linux import OctoFX, clean_lab, statuses  # noqa: F401  (clean_lab: fixture)
from tests.flows.local_project import LocalProject
from tests.sample import Sample
from tests.servers.ssh_lab import LabInfo
from tests.servers.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TEST = ["test-01", "test-02"]
VICTIM = "test-02"
STEPS = ["Remove from load balancer", "Install OctoFX.Web", "Smoke test", "Add to load balancer"]
SLOW, SICK = "ferry-slow-install", "ferry-sick"  # under the target's /srv: Deploy.sh waits / /health answers 503

# The line of `ferry deploy --wait` at which each fault strikes (all of them about test-02).
PHASES = {
    "after-remove": re.compile(rf"octofx/{VICTIM} out of rotation \(MAINT\)"),
    "mid-install": re.compile(r"injected: slow install"),
    "before-add": re.compile(rf"Smoke test · {VICTIM}"),  # the install has finished (and is in the journal)
    "mid-health": re.compile(rf"octofx/{VICTIM}: waiting for fresh health checks to pass"),
}


@dataclass(frozen=True)
class Case:
    fault: str  # "kill" | "cut"
    phase: str
    force: bool

    @property
    def id(self) -> str:
        return f"{self.fault}-{self.phase}{'-force' if self.force else ''}"


CASES = [Case("kill", "after-remove", True), Case("kill", "mid-install", False), Case("kill", "before-add", True),
         Case("kill", "mid-health", False), Case("cut", "after-remove", False), Case("cut", "mid-install", True),
         Case("cut", "before-add", False), Case("cut", "mid-health", True)]


def fault_app(tmp_path: Path) -> Path:
    """The sample app, with two switches a test flips on one target: /srv/ferry-slow-install makes Deploy.sh
    wait (recording its pid), /srv/ferry-sick makes /health answer 503 (HAProxy's checks fail; "/" still works)."""
    app = tmp_path / "fault-app"
    shutil.copytree(EXAMPLES / "octofx" / "app", app)
    deploy = app / "Deploy.sh"
    deploy.write_text(deploy.read_text().replace("set -euo pipefail\n", (
        "set -euo pipefail\n"
        f"if [[ -e /srv/{SLOW} ]]; then echo $$ > /srv/{SLOW}.pid; echo 'injected: slow install'; sleep 120; fi\n"), 1))
    server = app / "octofx.py"
    source = server.read_text()
    health = '            if self.path == "/health":\n'
    assert health in source
    server.write_text(source.replace(health, (
        f'            if self.path == "/health" and os.path.exists("/srv/{SICK}"):\n'
        "                self.send_response(503)\n"
        '                self.send_header("Content-Length", "0")\n'
        "                self.end_headers()\n"
        "                return\n" + health), 1))
    return app


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


class Run:
    """`ferry deploy … --wait` (or rollback) in the background, its output read line by line (unbuffered), so a
    fault can strike at the moment a line appears."""

    def __init__(self, *args: str) -> None:
        exe = Path(sys.executable).parent / "ferry"
        self.proc = subprocess.Popen([str(exe), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append("\0eof")
            self._cond.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if pattern.search(line):
                        return line
                    if line == "\0eof":
                        raise AssertionError(f"the deployment ended before {pattern.pattern!r}:\n" + self.output)
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line matched {pattern.pattern!r} in {timeout:g}s:\n" + self.output)
                self._cond.wait(left)

    def finish(self, timeout: float = 240) -> int:
        code = self.proc.wait(timeout)
        with self._cond:
            while not self.lines or self.lines[-1] != "\0eof":
                self._cond.wait(5)
        return code

    @property
    def output(self) -> str:
        return "\n".join(line for line in self.lines if line != "\0eof")


def journal(lab: LabInfo, target: str) -> dict[str, Any]:
    path = lab.lab.user_home(target) / ".ferry" / "journal.json"
    return json.loads(path.read_text()).get("OctoFX/Test", {}) if path.exists() else {}


@pytest.fixture
def octofx(clean_lab: LabInfo, sample: Sample, ferry: Any, prefect_env: dict[str, str]) -> OctoFX:  # noqa: F811
    project = OctoFX(sample, clean_lab, ferry)
    project.infra["lifecycles"] = [{"name": "Default", "phases": [{"name": "Test", "environments": ["Test"]}]}]
    project.step("Smoke test", url="http://#{Machine.Hostname}:#{App.Port}/")  # "/" stays up when /health is sick
    yield project
    for target in TEST:
        srv = clean_lab.lab.app_root(target)
        for name in (SLOW, f"{SLOW}.pid", SICK):
            with contextlib.suppress(FileNotFoundError):
                (srv / name).unlink()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_plain_rerun_converges_after_a_fault(octofx: OctoFX, tmp_path: Path, case: Case) -> None:
    lab = octofx.lab
    proxy = None
    if case.fault == "cut":
        info = lab.info(VICTIM)
        proxy = TcpProxy((info["address"], info["ssh_port"]), listen_host=info["address"])
        next(t for t in octofx.infra["targets"] if t["name"] == VICTIM)["transport"]["port"] = proxy.port
    try:
        _converges(octofx, tmp_path, case, proxy)
    finally:
        if proxy is not None:
            proxy.close()


def _converges(octofx: OctoFX, tmp_path: Path, case: Case, proxy: TcpProxy | None) -> None:
    lab = octofx.lab
    srv = lab.lab.app_root(VICTIM)
    octofx.apply()
    app = fault_app(tmp_path)
    octofx.push("1.0.0", app=app)
    octofx.release("1.0.0")
    baseline = octofx.deploy("1.0.0", "Test")
    assert baseline.exit_code == 0, baseline.output
    if case.force:
        version, args = "1.0.0", ("--force",)
    else:
        octofx.push("1.1.0", app=app)
        octofx.release("1.1.0")
        version, args = "1.1.0", ()
    if case.phase == "mid-install":
        (srv / SLOW).touch()
    if case.phase == "mid-health":
        (srv / SICK).touch()

    started = time.monotonic()
    run = Run("deploy", "OctoFX", version, "--to", "Test", "--wait", *args)
    try:
        run.wait_for(PHASES[case.phase])
        if case.fault == "kill":
            run.proc.send_signal(signal.SIGKILL)
        else:
            assert proxy is not None and proxy.cut() >= 1
        # the fault is in: the target is healthy again (a cut run's add step, on the worker, may then finish)
        (srv / SICK).unlink(missing_ok=True)
        code = run.finish()
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    faulted_in = time.monotonic() - started
    assert code != 0, f"the faulted run claimed success:\n{run.output}"
    slow_pid = srv / f"{SLOW}.pid"
    if case.phase == "mid-install":  # the killed/cut run's remote script ended with it
        pid = int(slow_pid.read_text())
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), "Deploy.sh kept running on the target after the fault"
    for name in (SLOW, SICK):
        with contextlib.suppress(FileNotFoundError):
            (srv / name).unlink()
    if case.fault == "cut":  # mid-script: "connection to test-02 lost during Install …"; between steps: the next
        # use of the session (a step, or the journal) says the connection is lost or closed
        assert re.search(rf"connection to {VICTIM} lost|{VICTIM}: session: not connected", run.output), run.output
        assert "exit code -1" not in run.output

    rerun_started = time.monotonic()
    rerun = octofx.deploy(version, "Test")
    rerun_took = time.monotonic() - rerun_started
    assert rerun.exit_code == 0, rerun.output
    assert rerun_took < 45, f"the re-run took {rerun_took:.0f}s (waiting out a lease?)"

    # every target on the release, in service and UP
    assert {octofx.health(t) for t in TEST} == {f"ok {version}"}
    deadline = time.monotonic() + 10
    while any(statuses(lab)[t] != "UP" for t in TEST) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert {t: statuses(lab)[t] for t in TEST} == {t: "UP" for t in TEST}
    # the journals say so, with no unfinished unit
    for target in TEST:
        entry = journal(lab, target)
        assert entry["release"] == version and "in_progress" not in entry, (target, entry)
    # nothing done was redone: test-01 finished in the faulted run and is skipped whole
    records = octofx.deployments()
    rerun_record = records[0]
    assert rerun_record["state"] == "Success"
    results = octofx.show(rerun_record["id"])["results"]
    first = {r["step"]: r["state"] for r in results if r["target"] == "test-01"}
    assert first == dict.fromkeys(STEPS, "skipped"), first
    victim = {r["step"]: (r["state"], r["message"]) for r in results if r["target"] == VICTIM}
    assert victim["Add to load balancer"][0] == "success", victim
    faulted = records[1]
    assert faulted["state"] == "Failed", faulted
    if case.fault == "kill":
        assert "no heartbeat" in (faulted["error"] or ""), faulted
    print(f"{case.id}: fault after {faulted_in:.1f}s, re-run {rerun_took:.1f}s; {VICTIM} re-ran "
          f"{[s for s, (state, _) in victim.items() if state == 'success']}")


# -- local targets ------------------------------------------------------------------------------------------------

LOCAL_PHASES = ["Prepare", "Install", "Verify"]


@pytest.fixture
def local(ferry_home: Path, tmp_path: Path, ferry: Any, prefect_env: dict[str, str]) -> LocalProject:
    project = LocalProject(tmp_path / "shop", ferry, environments={"Dev": 2})
    gate = 'if [ -e "$HOME/hold-$(ferry_var Step.Name)" ]; then echo $$ > "$HOME/held.pid"; ' \
           'echo "holding $(ferry_var Step.Name) $$"; sleep 120; fi'
    steps = [{"name": name, "kind": "script",
              "script": f'{gate}\necho "{name} $(ferry_var Release.Number)" >> "$HOME/ran"'} for name in LOCAL_PHASES]
    project.write([{"name": "Roll out", "roles": ["web"], "rolling": {"window": 1}, "steps": steps}])
    project.apply()
    return project


@pytest.mark.parametrize(("phase", "force"), [("Install", False), ("Verify", True)],
                         ids=["mid-install", "last-step-force"])
def test_local_targets_converge_after_sigkill(local: LocalProject, phase: str, force: bool) -> None:
    local.release("1.0.0")
    assert local.deploy("1.0.0", "Dev").exit_code == 0
    version = "1.0.0"
    if not force:
        local.release("1.1.0")
        version = "1.1.0"
    victim = local.target_dir("dev-02")
    (victim / f"hold-{phase}").touch()
    run = Run("deploy", local.name, version, "--to", "Dev", "--wait", *(["--force"] if force else []))
    try:
        run.wait_for(re.compile(rf"holding {phase} "))
        held = int((victim / "held.pid").read_text())
        run.proc.send_signal(signal.SIGKILL)
        run.finish()
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    deadline = time.monotonic() + 5
    while _alive(held) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(held), "the killed run's script kept running"
    (victim / f"hold-{phase}").unlink()

    started = time.monotonic()
    rerun = local.deploy(version, "Dev")
    took = time.monotonic() - started
    assert rerun.exit_code == 0, rerun.output
    assert took < 45, f"the re-run took {took:.0f}s: it waited for the dead run's lease"
    base = [f"{s} 1.0.0" for s in LOCAL_PHASES]
    # the steps before the kill ran once, in the killed run; the re-run did only the rest (its marker says so)
    assert (victim / "ran").read_text().splitlines() == [*base, *[f"{s} {version}" for s in LOCAL_PHASES]]
    first = (local.target_dir("dev-01") / "ran").read_text().splitlines()
    assert first == [*base, *[f"{s} {version}" for s in LOCAL_PHASES]], "dev-01 (done) was redone"
    for target in ("dev-01", "dev-02"):
        entry = json.loads((local.target_dir(target) / ".ferry" / "journal.json").read_text())["Shop/Dev"]
        assert entry["release"] == version and "in_progress" not in entry
    killed = [d for d in local.deployments() if d["state"] == "Failed"]
    assert killed and "no heartbeat" in killed[0]["error"], killed
    print(f"local {phase}{' --force' if force else ''}: re-run {took:.1f}s")


def test_a_current_target_left_out_of_the_balancer_is_put_back(octofx: OctoFX, tmp_path: Path) -> None:
    """Issue 13's first finding as reported: the journal says done, HAProxy says MAINT (no marker: a run
    from before markers, or a person's hand). The plain re-run adds it back and says so; nothing else runs."""
    from steps.kinds.haproxy import HAProxy

    octofx.apply()
    octofx.push("1.0.0")
    octofx.release("1.0.0")
    assert octofx.deploy("1.0.0", "Test").exit_code == 0
    HAProxy([octofx.lab.api]).set_state("octofx", VICTIM, "maint")
    assert statuses(octofx.lab)[VICTIM] == "MAINT"
    rerun = octofx.deploy("1.0.0", "Test")
    assert rerun.exit_code == 0, rerun.output
    assert f"{VICTIM}: already at 1.0.0 but octofx/{VICTIM} is MAINT in web-lb; running Add to load balancer" \
        in rerun.output
    results = octofx.show(octofx.deployments()[0]["id"])["results"]
    ran = [(r["target"], r["step"]) for r in results if r["state"] == "success"]
    assert ran == [(VICTIM, "Add to load balancer")]
    deadline = time.monotonic() + 10
    while statuses(octofx.lab)[VICTIM] != "UP" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert {t: statuses(octofx.lab)[t] for t in TEST} == {t: "UP" for t in TEST}


def test_a_killed_rollback_converges_on_a_plain_rerun(octofx: OctoFX, tmp_path: Path) -> None:
    """``ferry rollback`` deploys with force: killed after taking test-02 out, the plain deployment of the
    release it rolled back to finishes the job (test-01, already rolled back, is left alone)."""
    octofx.apply()
    for version in ("1.0.0", "1.1.0"):
        octofx.push(version)
        octofx.release(version)
        assert octofx.deploy(version, "Test").exit_code == 0
    run = Run("rollback", "OctoFX", "--env", "Test", "--wait")
    try:
        run.wait_for(PHASES["after-remove"])
        run.proc.send_signal(signal.SIGKILL)
        run.finish()
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert statuses(octofx.lab)[VICTIM] == "MAINT"
    rerun = octofx.deploy("1.0.0", "Test")
    assert rerun.exit_code == 0, rerun.output
    assert {octofx.health(t) for t in TEST} == {"ok 1.0.0"}
    deadline = time.monotonic() + 10
    while any(statuses(octofx.lab)[t] != "UP" for t in TEST) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert {t: statuses(octofx.lab)[t] for t in TEST} == {t: "UP" for t in TEST}
    results = octofx.show(octofx.deployments()[0]["id"])["results"]
    assert {r["state"] for r in results if r["target"] == "test-01"} == {"skipped"}
    for target in TEST:
        entry = journal(octofx.lab, target)
        assert entry["release"] == "1.0.0" and "in_progress" not in entry
