"""Scale-out: the same deployments registered on a process work pool (``ferry serve --work-pool``) and run by
``prefect worker start`` — here one worker on this machine; in production, as many machines as needed, each
with ferry installed, pointed at the same Prefect server and the same PostgreSQL ferry store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.flows.serve_lab import ServedProject, make_served

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory, prefect_server, postgres) -> Iterator[ServedProject]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("pool")
    pool = f"ferry-{uuid.uuid4().hex[:6]}"
    lab = make_served(root, prefect_server.env(), postgres.create_database(), serve_args=("--work-pool", pool))
    lab.write()
    lab.project.apply()
    lab.project.release("1.0.0")
    registered = lab.ferry("serve", "--project", lab.name, "--work-pool", pool, "--once")
    assert registered.exit_code == 0, registered.output
    assert f"registered (work pool {pool})" in registered.stdout
    workdir = root / "worker"  # a worker runs flows from its own directory: nothing of the repo's is there
    workdir.mkdir()
    log = root / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", pool,
                                   "--type", "process"], cwd=workdir,
                                  env={**lab.env, "PREFECT_WORKER_QUERY_SECONDS": "2"},
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    lab.logs.append(log)
    lab.start()  # the registration keeper: sweeps expired runs, follows applied changes
    try:
        yield lab
    finally:
        lab.stop()
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        lab.forget()


def test_a_process_worker_runs_the_deployment_from_the_api(pooled: ServedProject) -> None:
    deployment = pooled.deployment()
    assert deployment["work_pool_name"].startswith("ferry-")
    assert deployment["entrypoint"].startswith("flows.orchestration.served_flows.deploy_release__")
    response = pooled.create_run({"environment": "Dev", "release": "1.0.0"})
    assert response.status_code == 201, response.text
    run = pooled.wait_final(response.json()["id"], timeout=240)
    assert run["state"]["type"] == "COMPLETED", (run["state"], pooled.serve_log()[-3000:])
    assert pooled.record_of(run["id"])["state"] == "Success"
    # The form a worker serves is the one ferry serve registered: unknown environments are still refused.
    assert pooled.create_run({"environment": "Staging"}).status_code == 409


def test_ferry_deploy_goes_through_the_pool(pooled: ServedProject) -> None:
    result = pooled.ferry("deploy", pooled.name, "1.0.0", "--to", "Dev", "--force", "--wait", timeout=400)
    assert result.exit_code == 0, result.output
    assert f"of deploy-release/{pooled.name}" in result.stdout
    assert "succeeded" in result.stdout.splitlines()[-1]
