"""Lifecycle auto-deploy and release-on-push, called directly: what starts, what is only suggested, and what
is said — against the session's real Prefect server where a served deployment is involved."""

from __future__ import annotations

import io
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client

from flows.engine.request import DeployRequest
from flows.orchestration.served_runs import deployment_name, find_served
from flows.orchestration.triggers import auto_deploy, releases_on_push, served_parameters
from snapshots import releases
from snapshots.store import records
from tests.flows.local_store import Shop
from tests.flows.prefect_api import prefect_api  # noqa: F401  (fixture)

INSTALL = [{"name": "Install", "kind": "script", "roles": ["web"], "script": "true"}]


def auto_phases(*environments: str) -> Any:
    def edit(infra: dict[str, Any]) -> None:
        for phase in infra["lifecycles"][0]["phases"]:
            phase["auto_deploy"] = phase["environments"][0] in environments
    return edit


@pytest.fixture
def shop(ferry_home: Path, tmp_path: Path) -> Shop:
    found = Shop.at(tmp_path / "shop")
    found.local.name = f"Shop-{uuid.uuid4().hex[:8]}"  # the Prefect server is shared by the session
    return found


def deployments(shop: Shop) -> list[records.Deployment]:
    with shop.ctx.store.read() as conn:
        return records.list_deployments(conn, shop.name)


def serve(shop: Shop) -> None:
    """Register the project's deploy-release deployment and poll it once, as a running ``ferry serve`` does."""
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("deploy-release")
        deployment_id = client.create_deployment(flow_id=flow_id, name=deployment_name(shop.name))
        client.get_scheduled_flow_runs_for_deployments(deployment_ids=[deployment_id])
    deadline = time.monotonic() + 20
    while not (served := find_served(shop.name)) or not served.live:
        assert time.monotonic() < deadline, "the served deployment never became live"
        time.sleep(0.2)


def test_nothing_starts_when_no_phase_auto_deploys(shop: Shop) -> None:
    shop.write(INSTALL)
    shop.apply()
    shop.release("1.0.0")
    said: list[str] = []
    assert auto_deploy(shop.ctx, shop.name, "1.0.0", said.append) == []
    assert said == [] and deployments(shop) == []


@pytest.mark.postgres  # the Prefect server's database
def test_without_a_running_serve_the_user_is_told_what_to_run(shop: Shop, prefect_api: str) -> None:  # noqa: F811
    shop.write(INSTALL, infra=auto_phases("Dev"))
    shop.apply()
    shop.release("1.0.0")
    said: list[str] = []
    assert auto_deploy(shop.ctx, shop.name, "1.0.0", said.append) == []
    assert said == [f"lifecycle auto-deploy: {shop.name} 1.0.0 → Dev not started: no `ferry serve` serves it; "
                    f"run `ferry deploy {shop.name} 1.0.0 --to Dev`"]
    with get_client(sync_client=True) as client:  # registered, but no serve has ever polled it
        client.create_deployment(flow_id=client.create_flow_from_name("deploy-release"),
                                 name=deployment_name(shop.name))
    said.clear()
    assert auto_deploy(shop.ctx, shop.name, "1.0.0", said.append) == []
    assert said == [f"lifecycle auto-deploy: {shop.name} 1.0.0 → Dev not started: its `ferry serve` is not running "
                    f"(never polled by a `ferry serve` or worker); run `ferry deploy {shop.name} 1.0.0 --to Dev`"]
    assert deployments(shop) == []  # nothing recorded behind the user's back


@pytest.mark.postgres  # the Prefect server's database
def test_a_live_serve_gets_one_run_per_release_and_environment_phase_by_phase(
        shop: Shop, prefect_api: str) -> None:  # noqa: F811
    shop.write(INSTALL, infra=auto_phases("Dev", "Prod"))
    shop.apply()
    shop.release("1.0.0")
    serve(shop)
    said: list[str] = []
    [started] = auto_deploy(shop.ctx, shop.name, "1.0.0", said.append)
    [record] = deployments(shop)
    assert started["environment"] == "Dev" and started["deployment_id"] == record.id
    assert (record.environment, record.version, record.state) == ("Dev", "1.0.0", records.QUEUED)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(uuid.UUID(started["flow_run_id"]))
    assert run.parameters == {"release": "1.0.0", "environment": "Dev", "force": False, "deployment_id": record.id}
    assert set(run.tags) == {"ferry", "auto-deploy", "environment:Dev"}  # environment: for the UI's filter
    assert said == [f"lifecycle auto-deploy: {shop.name} 1.0.0 → Dev: deployment #{record.id} (flow run {run.name})"]

    said.clear()  # Dev's deployment is under way (or failed): never started twice for the same release
    assert auto_deploy(shop.ctx, shop.name, "1.0.0", said.append) == [] and said == []

    with shop.ctx.store.begin() as conn:
        records.set_state(conn, record.id, records.SUCCESS)  # Dev done: the Prod phase opens and auto-deploys
    [next_one] = auto_deploy(shop.ctx, shop.name, "1.0.0", said.append)
    assert next_one["environment"] == "Prod"
    assert [d.environment for d in deployments(shop)] == ["Prod", "Dev"]


def test_served_parameters_leave_the_project_to_the_served_deployment() -> None:
    request = DeployRequest("Shop", "1.2.0", "Prod", targets=["prod-01"])
    assert served_parameters(request, 7) == {"release": "1.2.0", "environment": "Prod", "targets": ["prod-01"],
                                             "force": False, "deployment_id": 7}


def package(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"Shop.Web.{version}.tar.gz"
    data = f"Shop.Web {version}\n".encode()
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("VERSION")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


def test_a_pushed_package_creates_a_release_of_each_project_that_asks_for_it(shop: Shop, tmp_path: Path) -> None:
    trigger = {"name": "On push", "action": "create-release-on-push", "package": "Shop.Web"}
    shop.write(INSTALL, packages=["Shop.Web"], versioning={"from_package": "Shop.Web"}, triggers=[trigger])
    shop.apply()
    with shop.ctx.store.begin() as conn:
        shop.ctx.feed.push(conn, package(tmp_path / "pkgs", "1.2.0"), "ci")
    said: list[str] = []
    assert releases_on_push(shop.ctx, "Shop.Web", "1.2.0", said.append) == []
    assert said == [f"trigger 'On push': release {shop.name} 1.2.0 created (Shop.Web 1.2.0)"]
    with shop.ctx.store.read() as conn:
        release = releases.require(conn, shop.name, "latest")
    assert release.version == "1.2.0" and release.packages[0]["version"] == "1.2.0"
    assert release.snapshot["notes"] == "Created by trigger 'On push': Shop.Web 1.2.0 pushed"

    errors = releases_on_push(shop.ctx, "Shop.Web", "1.2.0", said.append)  # the same version again
    assert errors == [f"trigger 'On push' of {shop.name}: no release created: release 1.2.0 of {shop.name} "
                      "already exists (use --version)"]
    assert releases_on_push(shop.ctx, "Other.Web", "1.0.0", said.append) == []  # no project asks for it
    with shop.ctx.store.read() as conn:
        assert releases.versions(conn, shop.name) == ["1.2.0"]
