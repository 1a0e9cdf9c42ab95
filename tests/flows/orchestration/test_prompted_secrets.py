"""A prompted sensitive value (issue 12, item 4) is used by the deployment and found nowhere else: not in
Prefect's database or API, not in any file under FERRY_HOME or PREFECT_HOME, not in any process's command
line or environment sampled every 50 ms while the deployment runs. Real parts: the session's Prefect server
on PostgreSQL, ``ferry`` processes, ``ferry serve``, bash on local targets."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.flows.local_project import LocalProject
from tests.secret_scan import (
    Report,
    pg_dump,
    postgres_checkpoint,
    prefect_api_responses,
    sampling,
    scan_bytes,
    scan_files,
    scan_json,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

FERRY = str(Path(sys.executable).parent / "ferry")


def make_secret() -> str:
    """Characters that make every encoding differ from the plain text (and a random part: nothing else in
    the world contains it)."""
    return f"Pa#{{ss W0rd}}/+=Ünï&%-{uuid.uuid4().hex}"


def hashing_project(project: LocalProject, out: Path) -> None:
    """One script step that writes the sha256 of the prompted secret: proof the deployment used it."""
    project.write([{"name": "Use secret", "kind": "script", "roles": ["web"],
                    "script": f'printf %s "$(ferry_var Sec.Prompt)" | sha256sum | cut -d" " -f1 > {out}'}],
                  [{"name": "Sec.Prompt", "sensitive": True, "prompt": {"label": "Database password"}},
                   {"name": "Note", "value": "hello", "prompt": {"required": False}}],
                  )


def scan_everything(secret: str, *, api: httpx.Client, flow_run_ids: list[str], prefect_database_url: str,
                    homes: list[Path], postgres: Any) -> Report:
    """Prefect's database (a dump, and the raw files of the PostgreSQL cluster after a checkpoint: pages,
    TOAST, WAL — rows since updated or deleted too), its API about each run, and every file under the homes."""
    report = Report()
    report.merge(scan_bytes(secret, pg_dump(prefect_database_url), "Prefect database (pg_dump)", "database dumps"))
    postgres_checkpoint(postgres.admin_url)
    report.merge(scan_files(secret, [postgres.data]))
    for run_id in flow_run_ids:
        report.merge(scan_json(secret, prefect_api_responses(api, run_id)))
    report.merge(scan_files(secret, homes))
    return report


def flow_run_of(project: LocalProject, deployment_id: int) -> str:
    record = project.show(deployment_id)
    run_id = record.get("flow_run_id") or record.get("deployment", {}).get("flow_run_id")
    assert run_id, record
    return run_id


@pytest.mark.parametrize("mode", ["timeout-child", "background"])
def test_cli_prompted_secret_found_nowhere(mode: str, tmp_path: Path, ferry: Any, ferry_home: Path,
                                           prefect_server: Any, prefect_env: dict[str, str], postgres: Any) -> None:
    """``ferry deploy … --variable Sec.Prompt`` (value on stdin), run by this machine's processes: in a child
    bounded by ``--timeout`` (it used to get the value as its argument) or detached in the background."""
    secret = make_secret()
    out = tmp_path / "used.sha256"
    project = LocalProject(tmp_path / "shop", ferry, environments={"Dev": 1}, name=f"Sec-{uuid.uuid4().hex[:6]}")
    hashing_project(project, out)
    project.apply()
    project.release("1.0.0")
    args = ["deploy", project.name, "1.0.0", "--to", "Dev", "--variable", "Sec.Prompt", "--variable", "Note=hi",
            "--local"]
    args += ["--wait", "--timeout", "300"] if mode == "timeout-child" else []
    with sampling(secret) as sampler:
        result = ferry(*args, input=secret + "\n")
        assert result.exit_code == 0, result.output
        if mode == "background":
            project.wait_for_state("Success", timeout=180)
    processes = sampler.stop()
    assert out.read_text().strip() == hashlib.sha256(secret.encode()).hexdigest()
    (record,) = project.deployments()
    assert record["state"] == "Success"
    report = scan_everything(secret, api=httpx.Client(base_url=prefect_env["PREFECT_API_URL"], timeout=30),
                             flow_run_ids=[flow_run_of(project, record["id"])],
                             prefect_database_url=prefect_server.database_url,
                             homes=[ferry_home, prefect_server.home], postgres=postgres).merge(processes)
    report.merge(scan_bytes(secret, (result.stdout + result.stderr).encode(), "ferry deploy output", "outputs"))
    print(report)
    assert report.total == 0, str(report)
    assert report.looked_at["samples"] > 20 and report.looked_at["environ reads"] > 100, str(report)


def test_direct_plain_secret_is_refused(tmp_path: Path, ferry: Any, prefect_env: dict[str, str]) -> None:
    """A sensitive prompted value given as a plain flow parameter (as REST straight to Prefect would) is
    refused rather than used: it already sits in Prefect's database, which must be seen, not hidden."""
    out = tmp_path / "used.sha256"
    project = LocalProject(tmp_path / "shop", ferry, environments={"Dev": 1}, name=f"Sec-{uuid.uuid4().hex[:6]}")
    hashing_project(project, out)
    project.apply()
    project.release("1.0.0")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    code = ("from flows.orchestration.deploy_flow import deploy_release as d\n"
            f"s = d(project={project.name!r}, environment='Dev', variables={{'Sec.Prompt': 'plain'}}, "
            "return_state=True)\nprint(s.type.value, s.message)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "FAILED" in proc.stdout, proc.stdout + proc.stderr
    assert "is sensitive but arrived as a plain Prefect parameter" in proc.stdout + proc.stderr
    assert not out.exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_secret(tmp_path: Path, prefect_server: Any, prefect_env: dict[str, str], postgres: Any):  # type: ignore[no-untyped-def]
    """A project whose one step hashes the prompted secret, served by a real ``ferry serve`` with its API
    (and the Prefect proxy under /prefect) on a free port; the ferry store on PostgreSQL."""
    from tests.flows.serve_lab import make_served

    port = _free_port()
    store_url = postgres.create_database()
    lab = make_served(tmp_path, prefect_env, store_url, environments={"Dev": 1},
                      serve_args=("--api-port", str(port)))
    out = tmp_path / "used.sha256"
    hashing_project(lab.project, out)
    lab.project.apply()
    lab.project.release("1.0.0")
    lab.start()
    proxy = httpx.Client(base_url=f"http://127.0.0.1:{port}/prefect/api", timeout=30)
    try:
        yield lab, proxy, out, store_url
    finally:
        lab.stop()
        lab.forget()


def test_served_prompted_secret_found_nowhere(served_secret: Any, prefect_server: Any, postgres: Any) -> None:
    """Through ``ferry serve``: ``ferry deploy --variable Sec.Prompt`` (value on stdin) on the executor, the
    same from a requester in remote mode (only FERRY_SERVER and a scoped FERRY_API_KEY: the value travels to
    the executor over the ferry API), and the Prefect API through ferry's proxy with the form's ``prompted``
    object (what the UI sends). Every deployment uses the value; a copy of a run's parameters gets nothing;
    the secret is found 0 times anywhere."""
    lab, proxy, out, store_url = served_secret
    created_key = subprocess.run([FERRY, "api-key", "create", "ci", "--project", lab.name, "--environment", "Dev",
                                  "--can", "deploy", "--json"], capture_output=True, text=True, env=lab.env,
                                 timeout=120)
    assert created_key.returncode == 0, created_key.stdout + created_key.stderr
    api_key = json.loads(created_key.stdout)["key"]
    port = proxy.base_url.port
    requester_home = lab.root / "requester"
    requester_home.mkdir()
    requester_env = {"PATH": os.environ["PATH"], "HOME": str(requester_home),
                     "FERRY_HOME": str(requester_home / "no-ferry-home"),
                     "FERRY_SERVER": f"http://127.0.0.1:{port}", "FERRY_API_KEY": api_key}
    secret = make_secret()
    expected = hashlib.sha256(secret.encode()).hexdigest()
    deployment = lab.deployment()
    schema = deployment["parameter_openapi_schema"]
    field = schema["definitions"]["Prompted"]["properties"]["Sec.Prompt"]
    assert (field["type"], field["format"], field.get("writeOnly")) == ("string", "password", True)
    assert "Sec.Prompt" in schema["definitions"]["Prompted"]["required"]

    with sampling(secret) as sampler:
        cli = subprocess.run([FERRY, "deploy", lab.name, "1.0.0", "--to", "Dev", "--variable", "Sec.Prompt",
                              "--wait", "--force"], input=secret + "\n", capture_output=True, text=True,
                             env=lab.env, timeout=300)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert "flow run" in cli.stdout, cli.stdout  # it went through ferry serve, not a local run
        assert out.read_text().strip() == expected
        out.unlink()

        remote = subprocess.run([FERRY, "deploy", lab.name, "1.0.0", "--to", "Dev", "--variable", "Sec.Prompt",
                                 "--wait", "--force"], input=secret + "\n", capture_output=True, text=True,
                                env=requester_env, timeout=300)
        assert remote.returncode == 0, remote.stdout + remote.stderr
        assert out.read_text().strip() == expected
        assert not (requester_home / "no-ferry-home").exists()  # the requester opened no store, key or feed
        out.unlink()

        validate = proxy.post("/ui/schemas/validate", json={"schema": schema, "values": {
            "environment": "Dev", "prompted": {"Sec.Prompt": secret}}})
        assert validate.status_code == 200, validate.text
        created = proxy.post(f"/deployments/{deployment['id']}/create_flow_run", json={
            "parameters": {"environment": "Dev", "release": "1.0.0", "force": True,
                           "prompted": {"Sec.Prompt": secret}}})
        assert created.status_code == 201, created.text
        run = lab.wait_final(created.json()["id"])
        assert run["state"]["type"] == "COMPLETED", run["state"]
        assert out.read_text().strip() == expected
        assert set(run["parameters"]) >= {"prompted_ref"} and "prompted" not in run["parameters"]
    processes = sampler.stop()

    # A copy of that run's parameters (what "run again" or someone reading Prefect's API could send) gets no secret.
    copy = lab.create_run(run["parameters"])
    assert copy.status_code == 201, copy.text
    again = lab.wait_final(copy.json()["id"])
    assert again["state"]["type"] == "FAILED", again["state"]

    # Keeping prompted values as a deployment's saved parameters is refused by the proxy.
    patched = proxy.patch(f"/deployments/{deployment['id']}", json={"parameters": {"prompted": {"Sec.Prompt": secret}}})
    assert patched.status_code == 422, patched.text

    records = lab.records()
    assert any(r["created_by"] == "key:ci" for r in records), records  # the remote deploy names its key
    run_ids = [r["flow_run_id"] for r in records if r["flow_run_id"]] + [copy.json()["id"]]
    report = scan_everything(secret, api=lab.api, flow_run_ids=run_ids,
                             prefect_database_url=prefect_server.database_url,
                             homes=[lab.root / "ferry-home", prefect_server.home, Path(lab.env["PREFECT_HOME"])],
                             postgres=postgres)
    report.merge(scan_bytes(secret, pg_dump(store_url), "ferry store (pg_dump)", "database dumps"))
    report.merge(scan_bytes(secret, (cli.stdout + cli.stderr).encode(), "ferry deploy output", "outputs"))
    report.merge(scan_bytes(secret, (remote.stdout + remote.stderr).encode(), "remote ferry deploy output",
                            "outputs"))
    report.merge(scan_files(secret, [requester_home]))
    report.merge(scan_bytes(secret, lab.serve_log().encode(), "ferry serve output", "outputs"))
    report.merge(processes)
    print(report)
    assert report.total == 0, str(report)
    assert report.looked_at["samples"] > 20, str(report)


def test_secret_straight_to_prefect_is_refused(served_secret: Any, prefect_server: Any, postgres: Any) -> None:
    """The form's ``prompted`` object sent to Prefect itself (not through ferry's proxy) is in Prefect's
    database already: the run refuses to use it and says so, rather than working silently. (Also the scan's
    positive control: the same scan that finds 0 above finds this value in Prefect's database and API.)"""
    lab, _proxy, out, _store = served_secret
    leaked = make_secret()
    created = lab.create_run({"environment": "Dev", "prompted": {"Sec.Prompt": leaked}})
    assert created.status_code == 201, created.text
    run = lab.wait_final(created.json()["id"])
    assert run["state"]["type"] == "FAILED"
    refusal = "is sensitive but arrived as a plain Prefect parameter"
    deadline = time.monotonic() + 20  # the run's last log lines are shipped in batches, after its final state
    while True:
        logs = lab.api.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [run["id"]]}}}).json()
        if any(refusal in entry["message"] for entry in logs) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert any(refusal in entry["message"] for entry in logs), (run["state"], logs)
    assert not out.exists()
    found = scan_bytes(leaked, pg_dump(prefect_server.database_url), "Prefect database (pg_dump)")
    found.merge(scan_json(leaked, prefect_api_responses(lab.api, run["id"])))
    postgres_checkpoint(postgres.admin_url)
    found.merge(scan_files(leaked, [postgres.data]))
    places = {place for place, _ in found.hits}
    assert "Prefect database (pg_dump)" in places, str(found)
    assert any(place.startswith(str(postgres.data)) for place in places), str(found)  # the raw files too
    assert any(place.startswith("GET /flow_runs/") for place in places), str(found)
