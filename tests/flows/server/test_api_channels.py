"""Channels and freezes in remote mode: `ferry release create --channel`, `release list --channel` and a
deployment's plan into a freeze, as a requester holding only FERRY_SERVER and a scoped key, through the real ferry
server API (uvicorn on loopback; no Prefect: a remote deploy needs ferry serve's Prefect deployment, the
refusal itself is the same prepare() the local tests check)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snapshots import projects
from tests.flows.cli.in_process import run_in_process
from tests.flows.cli.test_cli_channels import package, write_shop
from tests.flows.server.test_api_store import Api, api  # noqa: F401  (fixture)


def test_release_create_and_list_take_a_channel_and_a_frozen_environment_is_refused(
        api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    root = tmp_path / "shop"
    write_shop(root, freezes=[{"name": "Close", "start": "2020-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z",
                               "environments": ["Dev"], "reason": "books closed"}])
    with api.ctx.store.begin() as conn:
        projects.apply(conn, [root / "infrastructure.yaml", root / "project.yaml"], api.ctx.vault, "admin")
        for version in ("1.1.0", "1.2.1-beta"):
            api.ctx.feed.push(conn, package(tmp_path / "pkgs", version), "ci")
    monkeypatch.setenv("FERRY_SERVER", api.url)
    monkeypatch.setenv("FERRY_API_KEY", api.key("ci", ["Dev", "Prod"], ("release", "deploy")))

    beta = run_in_process("release", "create", "Shop", "--version", "1.2.1-beta", "--channel", "Beta")
    assert beta.exit_code == 0, beta.output
    assert "release Shop 1.2.1-beta created in channel Beta: Shop.Web 1.2.1-beta" in beta.stdout
    refused = run_in_process("release", "create", "Shop", "--version", "1.3.0", "--channel", "Beta",
                             "--package", "Shop.Web:1.1.0")
    assert refused.exit_code == 1
    assert "package Shop.Web 1.1.0 does not satisfy channel 'Beta': rule tag '^beta'" in refused.stderr
    stable = run_in_process("release", "create", "Shop", "--version", "1.1.0")
    assert stable.exit_code == 0, stable.output
    listed = json.loads(run_in_process("release", "list", "Shop", "--channel", "Stable", "--json").stdout)["items"]
    assert [(r["version"], r["channel"]) for r in listed] == [("1.1.0", "Stable")]

    planned = run_in_process("deploy", "Shop", "latest", "--to", "Dev", "--plan", "--json")
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.stdout)
    assert (plan["release"], plan["channel"]) == ("1.1.0", "Stable")  # latest of the default channel
    assert (plan["freeze"]["frozen"], plan["freeze"]["allowed"], plan["freeze"]["freeze"]) == (True, False, "Close")
