"""The CI worked examples (examples/ci/*.yml) run as written — every ``run`` step of the GitHub workflow,
every ``script`` of the GitLab pipeline, in their order — against a real executor: ``ferry serve`` with its
ferry server API, the session's real Prefect server, the ferry store on PostgreSQL, local targets.

The job's environment holds nothing but what the examples declare (``FERRY_SERVER`` and a scoped
``FERRY_API_KEY`` made with ``ferry api-key create``, the version, the notes) plus PATH and an empty HOME;
``FERRY_HOME`` points at a directory that does not exist and must still not exist afterwards. The only
lines not run are the ones that install tools (``pip install ferry``, ``apk add``): the test's PATH already
holds ferry, curl and jq. The project is the served test project under its own name (the session's Prefect
server is shared, so ``OctoFX`` is replaced by it), with the sample's OctoFX.Web package built by the
example's own ``build_package.py`` call.

With that key the job pushes the package, creates the release, deploys it to Development and Test (and once
more over plain HTTP), and is refused Production: HTTP 403, exit code 3, the refusal in the audit log under
the key's name, and nothing deployed there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import EXAMPLES
from tests.flows.serve_lab import ServedProject, make_served

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ENVIRONMENTS = {"Development": 1, "Test": 1, "Production": 1}
INSTALLS = ("pip install", "apk add")
STEP_SECONDS = 240


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory, prefect_server, postgres) -> Iterator[tuple[ServedProject, str]]:  # type: ignore[no-untyped-def]
    """The served project (package OctoFX.Web, nothing released yet) and a CI key for Development + Test."""
    served = make_served(tmp_path_factory.mktemp("ci-examples"), prefect_server.env(), postgres.create_database(),
                         environments=ENVIRONMENTS)
    served.write(packages=["OctoFX.Web"])
    served.project.apply()
    served.start()
    created = served.ferry("api-key", "create", "ci", "--project", served.name, "--environment", "Development",
                           "--environment", "Test", "--can", "push,release,deploy", "--json")
    assert created.exit_code == 0, created.output
    try:
        yield served, json.loads(created.stdout)["key"]
    finally:
        served.stop()
        served.forget()


class Job:
    """Where the example's scripts run: a fresh directory holding ``examples/`` (as a checkout would), an
    environment with nothing else in it."""

    def __init__(self, root: Path, served: ServedProject, key: str, given: dict[str, str]) -> None:
        self.root, self.served = root, served
        (root / "home").mkdir(parents=True)
        (root / "checkout").mkdir()
        (root / "checkout" / "examples").symlink_to(EXAMPLES)
        self.home = root / "no-ferry-home"
        self.base = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(root / "home"),
                     "FERRY_HOME": str(self.home)}
        self.given = {"FERRY_SERVER": served.api_url, "FERRY_API_KEY": key, **given}

    def env(self, declared: dict[str, Any], system: tuple[str, ...] = ()) -> dict[str, str]:
        """The example's ``env:`` / ``variables:`` with the CI system's expressions filled in by the test, plus
        the ``system`` variables the CI system sets itself (GitLab's CI/CD settings and predefined ones)."""
        env = {**self.base, **{name: self.given[name] for name in system}}
        for name, value in declared.items():
            text = str(value)
            if "${{" in text:
                assert name in self.given, f"the example needs {name}: the test must give it"
                text = self.given[name]
            env[name] = re.sub(r"\$\{(\w+)\}", lambda m: self.given.get(m.group(1), env.get(m.group(1), "")), text)
        return env

    def script(self, text: str) -> str:
        lines = [line for line in text.splitlines() if not line.strip().startswith(INSTALLS)]
        return re.sub(r"\bOctoFX\b(?!\.)", self.served.name, "\n".join(lines))

    def run(self, shell: list[str], script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([*shell, self.script(script)], cwd=self.root / "checkout", env=env,
                                  capture_output=True, text=True, timeout=STEP_SECONDS)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
            raise AssertionError(f"still running after {STEP_SECONDS}s:\n{self.script(script)}\n--- output:\n"
                                 f"{out}\n--- ferry serve:\n{self.served.serve_log()[-4000:]}") from None


def github_steps(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    for job_name, job in doc["jobs"].items():
        for step in job["steps"]:
            if "run" in step and not step["run"].strip().startswith(INSTALLS):
                yield f"{job_name}: {step.get('name', step['run'][:40])}", \
                    {**doc.get("env", {}), **job.get("env", {}), **step.get("env", {})}, step["run"]


def gitlab_jobs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    jobs = {name: job for name, job in doc.items() if isinstance(job, dict) and "script" in job}
    for stage in doc["stages"]:
        for name, job in jobs.items():
            if job.get("stage") == stage:
                base = doc.get(job.get("extends", ""), {})
                lines = [*(job.get("before_script") or base.get("before_script") or []), *job["script"]]
                yield name, {**doc.get("variables", {}), **job.get("variables", {})}, "\n".join(lines)


@pytest.mark.timeout(1200)
@pytest.mark.parametrize(("example", "version"), [("github-actions.yml", "1.4.7"), ("gitlab-ci.yml", "1.4.8")])
def test_the_ci_example_runs_as_written_with_only_a_scoped_key(executor: tuple[ServedProject, str], tmp_path: Path,
                                                              example: str, version: str) -> None:
    served, key = executor
    doc = yaml.safe_load((EXAMPLES / "ci" / example).read_text())
    run_number = version.rsplit(".", 1)[1]
    job = Job(tmp_path, served, key, {"VERSION": version, "NOTES": "Fix the rounding of rates\nsecond line",
                                      "CI_PIPELINE_IID": run_number, "CI_COMMIT_TITLE": "Fix the rounding of rates"})
    if "jobs" in doc:
        steps = list(github_steps(doc))
        shell = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]
        system: tuple[str, ...] = ()  # GitHub: everything through the workflow's env (vars, secrets)
    else:
        steps = list(gitlab_jobs(doc))
        shell = ["sh", "-e", "-c"]
        system = ("FERRY_SERVER", "FERRY_API_KEY", "CI_PIPELINE_IID", "CI_COMMIT_TITLE")  # CI/CD settings
    assert len(steps) >= 4, steps
    outputs: dict[str, str] = {}
    for name, declared, script in steps:
        env = job.env(declared, system)
        assert set(env) <= {*job.base, *declared, *system}, "the job's environment holds what the example names"
        assert not any(name.startswith(("FERRY_DATABASE", "FERRY_MASTER", "FERRY_FEED", "PREFECT")) for name in env)
        proc = job.run(shell, script, env)
        outputs[name] = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{example}: {name} exited {proc.returncode}:\n{outputs[name]}\n" \
                                     f"{served.serve_log()[-3000:]}"
    joined = "\n".join(outputs.values())
    assert f"OctoFX.Web {version}: pushed" in joined
    assert f"release {served.name} {version} created: OctoFX.Web {version}" in joined
    assert "deployment #" in joined and f"{served.name} {version} → Test" in joined
    finals = re.findall(r"^deployment #\d+ (\w+)$", joined, flags=re.MULTILINE)  # `ferry deploy --wait`'s last line
    assert finals == ["succeeded", "succeeded"], joined  # Development, then Test
    assert re.search(r"^\d\d:\d\d:\d\d \| INFO +\| Install · test-01 \| ", joined, flags=re.MULTILINE), joined
    assert "deployed (Success)" in joined  # the curl job

    records = [d for d in served.records() if d["version"] == version]
    assert sorted((d["environment"], d["state"]) for d in records) == \
        [("Development", "Success"), ("Test", "Success"), ("Test", "Success")]
    assert {d["created_by"] for d in records} == {"key:ci"}
    releases = json.loads(served.ferry("release", "list", served.name, "--json").stdout)["items"]
    assert [r["created_by"] for r in releases if r["version"] == version] == ["key:ci"]

    # The same job asking for Production: refused before anything starts, recorded, nothing deployed.
    env = job.env(doc.get("env") or doc.get("variables") or {}, system)
    refused = job.run(shell, 'ferry deploy OctoFX "$VERSION" --to Production --wait', env)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert refused.stderr.strip() == "error: api key 'ci' may not deploy to Production"
    assert not any(d["environment"] == "Production" for d in served.records())
    assert not any(e.target.startswith("production") for e in served.project.events())
    with httpx.Client(base_url=f"{served.api_url}/api/v1", headers={"Authorization": f"Bearer {key}"}) as api:
        entries = api.get("/audit", params={"limit": 50}).json()["entries"]
    assert any(e["actor"] == "key:ci" and e["action"] == "refused" and "Production" in json.dumps(e)
               for e in entries), entries

    assert not job.home.exists(), "a CI job in remote mode created a FERRY_HOME"
    assert not (tmp_path / "home" / ".ferry").exists()
    assert os.listdir(tmp_path / "checkout" / "dist") == [f"OctoFX.Web.{version}.tar.gz"]


def test_remote_mode_reads_as_the_executor_and_promotes_and_cancels(executor: tuple[ServedProject, str],
                                                                     tmp_path: Path) -> None:
    """The other remote commands, with the same CI key: ``status``, ``deployment list`` and ``show`` print
    the executor's own --json documents; ``promote --wait`` streams and succeeds; ``deployment cancel``
    stops a running deployment and the record says who cancelled it."""
    served, key = executor
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "FERRY_HOME": str(tmp_path / "none"),
           "FERRY_SERVER": served.api_url, "FERRY_API_KEY": key}

    def remote(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ferry", *args], env=env, capture_output=True, text=True, timeout=STEP_SECONDS)

    version = "2.0.0"
    (tmp_path / "dist").mkdir()
    package = subprocess.run([sys.executable, str(EXAMPLES / "octofx" / "build_package.py"), version,
                              str(tmp_path / "dist")], capture_output=True, text=True, check=True).stdout.strip()
    for args in (["package", "push", package], ["release", "create", served.name, "--version", version],
                 ["deploy", served.name, version, "--to", "Development", "--wait"]):
        proc = remote(*args)
        assert proc.returncode == 0, f"{args}: {proc.stdout}{proc.stderr}"

    promoted = remote("promote", served.name, "--from", "Development", "--to", "Test", "--wait")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert promoted.stdout.splitlines()[0] == f"deployment #{served.records()[0]['id']}: {served.name} {version} → Test"
    assert promoted.stdout.splitlines()[-1].endswith("succeeded")

    latest = str(served.records()[0]["id"])
    for args in (["status", served.name, "--json"], ["deployment", "list", served.name, "--json"],
                 ["deployment", "show", latest, "--json"]):
        here, there = served.ferry(*args), remote(*args)
        assert there.returncode == 0, there.stdout + there.stderr
        assert json.loads(there.stdout) == json.loads(here.stdout), args

    started = remote("deploy", served.name, version, "--to", "Development", "--force", "--variable", "Sleep=60")
    assert started.returncode == 0, started.stdout + started.stderr
    deployment_id = re.match(r"deployment #(\d+):", started.stdout).group(1)  # type: ignore[union-attr]
    served.wait_state(served.records()[0]["flow_run_id"], "RUNNING")
    cancelled = remote("deployment", "cancel", deployment_id)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert cancelled.stdout.strip() == f"deployment #{deployment_id}: cancel requested (cancelled by key:ci)"
    run = served.wait_final(served.records()[0]["flow_run_id"], timeout=120)
    assert run["state"]["type"] == "CANCELLED"
    assert not (tmp_path / "none").exists()
