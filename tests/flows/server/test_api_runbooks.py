"""Runbooks through the ferry server API over real HTTP, and ``ferry runbook list|run`` in remote mode: the list,
the ``deploy`` scope a run needs (a refusal is audited, nothing recorded), and a run refused in one line while
``ferry serve`` has not registered the runbook's deployment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from snapshots.runbook_snapshots import publish
from snapshots.store.tables import deployments
from tests.flows.local_store import Shop
from tests.flows.server.test_api_store import Api, api  # noqa: F401  (fixture)

RUNBOOK = {"name": "Restart", "description": "Restart the shop", "environments": ["Dev"],
           "process": [{"name": "Restart", "kind": "script", "roles": ["web"], "script": "true"}]}


def test_runbooks_through_the_api_and_the_cli_in_remote_mode(api: Api, tmp_path: Path, ferry: Any) -> None:  # noqa: F811
    shop = Shop.at(tmp_path / "shop", {"Dev": 1, "Prod": 1})
    shop.write([{"name": "Install", "kind": "script", "roles": ["web"], "script": "true"}], runbooks=[RUNBOOK])
    shop.apply()
    with shop.ctx.store.begin() as conn:
        publish(conn, shop.ctx.feed, "Shop", "Restart", "admin", vault=shop.ctx.vault)
    operator = api.key("operator", ["Dev"], ("deploy",))
    pusher = api.key("pusher", ["Dev"], ("push",))

    with api.client(operator) as client:
        listed = client.get("/projects/Shop/runbooks")
        assert listed.status_code == 200, listed.text
        assert [(r["name"], r["snapshot"], r["changed"]) for r in listed.json()] == [("Restart", 1, False)]
        not_served = client.post("/runbooks/runs", json={"project": "Shop", "runbook": "restart", "environment": "Dev"})
        other_env = client.post("/runbooks/runs", json={"project": "Shop", "runbook": "Restart", "environment": "Prod"})
    assert not_served.status_code == 409 and "'Restart' of Shop is not served yet" in not_served.json()["error"]
    assert other_env.status_code == 403
    with api.client(pusher) as client:
        refused = client.post("/runbooks/runs", json={"project": "Shop", "runbook": "Restart", "environment": "Dev"})
    assert refused.status_code == 403 and "may not deploy" in refused.json()["error"]
    with shop.ctx.store.read() as conn:
        assert conn.execute(select(func.count()).select_from(deployments)).scalar_one() == 0

    env = {"FERRY_SERVER": api.url, "FERRY_API_KEY": operator}
    remote = ferry("runbook", "list", "Shop", "--json", env=env)
    assert remote.exit_code == 0, remote.output
    assert [r["name"] for r in json.loads(remote.stdout)["items"]] == ["Restart"]
    run = ferry("runbook", "run", "Shop", "Restart", "--to", "Dev", env=env)
    assert run.exit_code != 0 and run.stderr.strip().splitlines() == [
        "error: runbook 'Restart' of Shop is not served yet: ferry serve registers runbooks within its "
        "--sync-seconds of `ferry apply`"]
    assert ferry("runbook", "publish", "Shop", "Restart", env=env).exit_code != 0  # executor only
