"""``POST /api/v1/deployments/plan`` over real HTTP (uvicorn on loopback, as ferry serve runs it) and
``ferry deploy … --plan`` in remote mode through it: the plan document, the deploy scope it needs, nothing
recorded and no target touched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from snapshots.store.tables import audit_log, deployments
from tests.flows.local_store import Shop
from tests.flows.server.test_api_store import Api, api  # noqa: F401  (fixture)

SECRET = "api-plan-s3cret"


def ready(tmp_path: Path, monkeypatch: Any) -> Shop:
    monkeypatch.setenv("SHOP_SECRET", SECRET)
    shop = Shop.at(tmp_path / "shop", {"Dev": 2})
    shop.write([{"name": "Roll out", "roles": ["web"], "rolling": {"window": 1, "min_healthy": 1},
                 "steps": [{"name": "Install", "kind": "script", "script": "true"}]}],
               [{"name": "Db.Password", "sensitive": True, "value": {"from_env": "SHOP_SECRET"}}])
    shop.apply()
    shop.release("1.0.0")
    return shop


def counts(shop: Shop) -> tuple[int, int]:
    with shop.ctx.store.read() as conn:
        return (conn.execute(select(func.count()).select_from(deployments)).scalar_one(),
                conn.execute(select(func.count()).select_from(audit_log)).scalar_one())


def test_plan_through_the_api_and_the_cli_in_remote_mode(api: Api, tmp_path: Path, monkeypatch: Any,  # noqa: F811
                                                          ferry: Any) -> None:
    shop = ready(tmp_path, monkeypatch)
    ci = api.key("ci", ["Dev"], ("deploy",))
    reader = api.key("reader", ["Dev"], ("push",))
    before = counts(shop)
    with api.client(ci) as client:
        response = client.post("/deployments/plan", json={"project": "Shop", "release": "1.0.0",
                                                          "environment": "Dev"})
    assert response.status_code == 200, response.text
    doc = response.json()
    assert counts(shop) == before and not (tmp_path / "shop" / "targets").exists()
    rolling = doc["units"][0]["rolling"]
    assert rolling["windows"] == [["dev-01"], ["dev-02"]] and rolling["max_out_of_service"] == 1
    assert doc["variables"]["dev-01"]["Db.Password"] == "********" and SECRET not in response.text

    with api.client(reader) as client:
        refused = client.post("/deployments/plan", json={"project": "Shop", "environment": "Dev"})
    assert refused.status_code == 403 and "may not deploy" in refused.json()["error"]

    env = {"FERRY_SERVER": api.url, "FERRY_API_KEY": ci}
    remote = ferry("deploy", "Shop", "1.0.0", "--to", "Dev", "--plan", "--json", env=env)
    assert remote.exit_code == 0, remote.output
    assert json.loads(remote.stdout) == {"schema": "ferry/v1", **doc}  # the CLI's --json envelope around the API's
    text = ferry("deploy", "Shop", "1.0.0", "--to", "Dev", "--plan", env=env)
    assert text.exit_code == 0 and "plan: Shop 1.0.0 → Dev" in text.stdout
    unknown = ferry("deploy", "Shop", "9.9.9", "--to", "Dev", "--plan", env=env)
    assert unknown.exit_code != 0 and len(unknown.stderr.strip().splitlines()) == 1
