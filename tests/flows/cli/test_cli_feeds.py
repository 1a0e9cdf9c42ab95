"""External feeds through `ferry`'s command tree, in this process (four commands, no Python start-up each):
`package list ID --feed NAME` asks the feed live with the stored, encrypted credential, and `release create`
pins a package from it; afterwards the secret scan finds the feed password in no form in FERRY_HOME."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from flows.cli.app import build_command
from snapshots.errors import FerryError
from tests.conftest import CliResult
from tests.sample import Sample
from tests.secret_scan import scan_bytes, scan_files
from tests.servers.package_feeds import PASSWORD, USER, StaticFeeds, static_feeds


def ferry_here(*args: str) -> CliResult:
    """As the ``ferry`` fixture, in process: a FerryError becomes ``error: <message>`` and exit code 1."""
    result: Any = CliRunner().invoke(build_command(), list(args), catch_exceptions=True, standalone_mode=False)
    if isinstance(result.exception, FerryError):
        return CliResult(1, result.stdout, result.stderr + f"error: {result.exception}\n")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[StaticFeeds]:
    (tmp_path / "served").mkdir()
    with static_feeds(tmp_path / "served") as feeds:
        feeds.publish_nuget("OctoFX.Web", ["1.0.0", "1.1.0", "2.0.0-rc.1"], private=True)
        yield feeds


def test_package_list_feed_and_release_create_from_it(ferry_home: Path, sample: Sample, web: StaticFeeds,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ferry = ferry_here
    infra = yaml.safe_load(sample.infrastructure.read_text())
    infra["feeds"] = [{"name": "nuget-main", "kind": "nuget", "url": web.nuget_url(private=True), "username": USER,
                       "password": {"from_env": "NUGET_PW"}}]
    sample.infrastructure.write_text(yaml.safe_dump(infra, sort_keys=False))
    sample.edit_project(lambda d: d.update(packages=[{"id": "OctoFX.Web", "feed": "nuget-main"}]))
    monkeypatch.setenv("NUGET_PW", PASSWORD)
    assert ferry("apply", str(sample.infrastructure), str(sample.project)).exit_code == 0
    monkeypatch.delenv("NUGET_PW")
    listed = ferry("package", "list", "OctoFX.Web", "--feed", "nuget-main", "--json")
    assert listed.exit_code == 0, listed.output
    assert [p["version"] for p in json.loads(listed.stdout)["items"]] == ["2.0.0-rc.1", "1.1.0", "1.0.0"]
    created = ferry("release", "create", "OctoFX")
    assert created.exit_code == 0, created.output
    shown = ferry("release", "show", "OctoFX", "1.1.0", "--json")
    assert shown.exit_code == 0, shown.output
    assert PASSWORD not in listed.output + created.output + shown.output
    # the secret scan's forms (plain, base64, hex, URL, JSON…): none in FERRY_HOME (store, feed, cache, logs)
    outputs = scan_bytes(PASSWORD, (listed.output + created.output + shown.output).encode(), "CLI output")
    home = scan_files(PASSWORD, [ferry_home])
    assert home.total == 0 and outputs.total == 0, f"{home}\n{outputs}"
    assert home.looked_at.get("files", 0) > 0
    assert "OctoFX.Web" in shown.stdout and "1.1.0" in shown.stdout
