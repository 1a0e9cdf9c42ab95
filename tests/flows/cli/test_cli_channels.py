"""Channels through the real `ferry` command on local targets: a release is created in a channel whose rules
its packages satisfy (or is refused, nothing written), unpinned packages get the newest version the channel
allows, and `latest`, `promote`, the channel's lifecycle and channel-scoped variables stay inside the channel:
a beta pre-release is never what the default (stable) channel deploys or promotes."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.orchestration.launch import promote_request
from snapshots import releases
from snapshots.store import records
from snapshots.workspace import Workspace
from tests.bad_inputs.state import state
from tests.flows.cli.in_process import run_in_process


@pytest.fixture
def ferry(ferry_home: Path) -> Any:
    """`ferry` in this process (many commands per test)."""
    return run_in_process


def package(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"Shop.Web.{version}.tar.gz"
    data = f"Shop.Web {version}\n".encode()
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("VERSION")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


def write_shop(root: Path, **extra_infra: Any) -> None:
    """Dev and Prod with one local target each; lifecycle Default (Dev → Prod) and Beta (Dev only)."""
    root.mkdir(parents=True, exist_ok=True)
    infra = {
        "environments": [{"name": "Dev"}, {"name": "Prod"}],
        "lifecycles": [{"name": "Default", "phases": [{"name": "Dev", "environments": ["Dev"]},
                                                      {"name": "Prod", "environments": ["Prod"]}]},
                       {"name": "Beta", "phases": [{"name": "Dev", "environments": ["Dev"]}]}],
        "targets": [{"name": f"{e.lower()}-01", "environment": e, "roles": ["web"],
                     "transport": {"kind": "local", "root": str(root / "targets" / f"{e.lower()}-01")}}
                    for e in ("Dev", "Prod")],
        **extra_infra,
    }
    project = {
        "project": "Shop", "packages": ["Shop.Web"],
        "channels": [
            {"name": "Stable", "default": True, "description": "what customers get",
             "rules": [{"version_range": "[1.0,2.0)", "tag": "^$"}]},
            {"name": "Beta", "lifecycle": "Beta", "rules": [{"packages": ["Shop.Web"], "tag": "^beta"}]},
        ],
        "process": [{"name": "Greet", "kind": "script", "roles": ["web"],
                     "script": 'echo "$(ferry_var Greeting) $(ferry_var Release.Number)" > "$HOME/greeting"'}],
        "variables": [{"name": "Greeting", "value": "stable"},
                      {"name": "Greeting", "value": "beta", "scope": {"channel": ["Beta"]}}],
    }
    (root / "infrastructure.yaml").write_text(yaml.safe_dump(infra, sort_keys=False))
    (root / "project.yaml").write_text(yaml.safe_dump(project, sort_keys=False))


@pytest.fixture
def shop(ferry: Any, tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    write_shop(root)
    for version in ("1.0.0", "1.1.0", "1.2.1-beta", "2.0.0"):
        assert ferry("package", "push", str(package(tmp_path / "pkgs", version))).exit_code == 0
    result = ferry("apply", str(root / "infrastructure.yaml"), str(root / "project.yaml"))
    assert result.exit_code == 0, result.output
    return root


def greeting(shop: Path, target: str) -> str:
    return (shop / "targets" / target / "greeting").read_text().strip()


def test_a_release_takes_the_newest_package_its_channel_allows_and_refuses_one_it_does_not(
        ferry: Any, shop: Path, ferry_home: Path) -> None:
    stable = ferry("release", "create", "Shop", "--version", "1.0.0", "--json")
    assert stable.exit_code == 0, stable.output
    doc = json.loads(stable.stdout)
    assert doc["channel"] == "Stable" and doc["packages"][0]["version"] == "1.1.0"  # not 2.0.0, not the beta

    beta = ferry("release", "create", "Shop", "--version", "1.2.1-beta", "--channel", "beta")
    assert beta.exit_code == 0, beta.output
    assert "release Shop 1.2.1-beta created in channel Beta: Shop.Web 1.2.1-beta" in beta.stdout

    before = state(ferry_home)
    refused = ferry("release", "create", "Shop", "--version", "3.0.0", "--package", "Shop.Web:2.0.0")
    assert refused.exit_code == 1
    assert refused.stderr.strip() == ("error: package Shop.Web 2.0.0 does not satisfy channel 'Stable': rule "
                                      "version_range [1.0,2.0) and tag '^$'")
    tagged = ferry("release", "create", "Shop", "--version", "3.0.0", "--channel", "Beta", "--package",
                   "Shop.Web:1.1.0")
    assert tagged.stderr.strip() == ("error: package Shop.Web 1.1.0 does not satisfy channel 'Beta': rule tag "
                                     "'^beta' (pre-release tag '')")
    unknown = ferry("release", "create", "Shop", "--version", "3.0.0", "--channel", "Nightly")
    assert unknown.stderr.strip() == "error: project Shop has no channel 'Nightly' (its channels: Stable, Beta)"
    assert state(ferry_home) == before  # nothing written by any of them

    listed = ferry("release", "list", "Shop", "--channel", "Beta", "--json")
    assert [(r["version"], r["channel"]) for r in json.loads(listed.stdout)["items"]] == [("1.2.1-beta", "Beta")]
    table = ferry("release", "list", "Shop")
    assert "channel" in table.stdout and "Stable" in table.stdout and "Beta" in table.stdout
    shown = json.loads(ferry("release", "show", "Shop", "1.2.1-beta", "--json").stdout)
    assert (shown["channel"], shown["lifecycle"]) == ("Beta", "Beta")
    assert "channel Beta, lifecycle Beta" in ferry("release", "show", "Shop", "1.2.1-beta").stdout


def test_latest_promote_lifecycle_and_variables_stay_inside_the_channel(ferry: Any, shop: Path) -> None:
    assert ferry("release", "create", "Shop", "--version", "1.0.0").exit_code == 0
    assert ferry("release", "create", "Shop", "--version", "1.2.1-beta", "--channel", "Beta").exit_code == 0

    # `latest` is the default (stable) channel's latest, though the beta is the higher version
    plan = json.loads(ferry("deploy", "Shop", "latest", "--to", "Dev", "--plan", "--json").stdout)
    assert (plan["release"], plan["channel"], plan["variables"]["dev-01"]["Greeting"]) == ("1.0.0", "Stable", "stable")
    # the Beta channel's latest, with the variable scoped to the channel
    plan = json.loads(ferry("deploy", "Shop", "latest", "--channel", "Beta", "--to", "Dev", "--plan", "--json").stdout)
    assert (plan["release"], plan["channel"], plan["variables"]["dev-01"]["Greeting"]) == ("1.2.1-beta", "Beta", "beta")
    shown = ferry("release", "show", "Shop", "1.2.1-beta", "--target", "dev-01")
    assert "beta" in shown.stdout and "stable" not in shown.stdout

    # the Beta channel's lifecycle has no Prod
    refused = ferry("deploy", "Shop", "1.2.1-beta", "--to", "Prod")
    assert refused.exit_code == 3  # refused before start
    assert "environment 'Prod' is not in lifecycle 'Beta'" in refused.stderr
    wrong = ferry("deploy", "Shop", "1.0.0", "--channel", "Beta", "--to", "Dev")
    assert wrong.stderr.strip() == "error: release Shop 1.0.0 is in channel 'Stable', not 'Beta'"

    # promote takes the stable release that succeeded in Dev, not the beta that succeeded after it
    ctx = Workspace()
    with ctx.store.begin() as conn:
        for version in ("1.0.0", "1.2.1-beta"):
            release = releases.require(conn, "Shop", version)
            records.create(conn, project="Shop", release_id=release.id, environment="Dev",
                           variable_snapshot_id=release.variables.id, parameters={}, actor="test",
                           state=records.SUCCESS)
    assert promote_request(ctx, "Shop", "Dev", "Prod").release == "1.0.0"
    assert promote_request(ctx, "Shop", "Dev", "Prod", channel="Beta").release == "1.2.1-beta"
    beta_promote = ferry("promote", "Shop", "--from", "Dev", "--to", "Prod", "--channel", "Beta")
    assert beta_promote.exit_code == 3 and "not in lifecycle 'Beta'" in beta_promote.stderr
