"""The fleet (issue 15 item 1): ``target check`` through the real transports (local targets here, the SSH lab in
the slow test), results recorded, ``target list`` from the records; machine policies at apply."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fleet.cli import ferry, ferry_json


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_infra(root: Path, *, extra_targets: list[dict[str, Any]] | None = None, **more: Any) -> Path:
    infra = {
        "environments": [{"name": "Dev"}, {"name": "Prod"}],
        "lifecycles": [{"name": "Default", "phases": [{"name": "Dev", "environments": ["Dev"]},
                                                      {"name": "Prod", "environments": ["Prod"]}]}],
        "machine_policies": [{"name": "Tolerant", "health_check": {"interval": "10m"},
                              "unavailable_targets": "skip", "exclude_unhealthy_for": "30m"}],
        "targets": [{"name": f"web-0{i}", "environment": "Dev", "roles": ["web"],
                     "transport": {"kind": "local", "root": str(root / f"web-0{i}")}} for i in (1, 2)]
                   + [{"name": "db-01", "environment": "Prod", "roles": ["db"],
                       "transport": {"kind": "local", "root": str(root / "db-01")}}]
                   + (extra_targets or []),
        **more}
    path = root / "infrastructure.yaml"
    path.write_text(yaml.safe_dump(infra, sort_keys=False))
    return path


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
"""Any well-formed key: nothing listens on the port, so no key is ever compared."""


def dead_ssh_target(name: str = "gone-01", environment: str = "Dev", policy: str = "Tolerant") -> dict[str, Any]:
    return {"name": name, "environment": environment, "roles": ["web"], "machine_policy": policy,
            "transport": {"kind": "ssh", "host": "127.0.0.1", "port": free_port(), "user": "nobody",
                          "connect_timeout": 2,
                          "host_key": HOST_KEY}}


def test_check_reports_each_target_and_fails_on_an_unreachable_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for name in ("web-01", "web-02", "db-01"):
        (tmp_path / name).mkdir()
    infra = write_infra(tmp_path, extra_targets=[dead_ssh_target()])
    assert ferry(home, "apply", str(infra)).code == 0
    assert [t["health"] for t in ferry_json(home, "target", "list")] == [None] * 4

    outcome = ferry(home, "target", "check", "--json")
    assert outcome.code == 1, outcome
    import json
    results = {r["target"]: r for r in json.loads(outcome.stdout)["items"]}
    web = results["web-01"]
    assert web["reachable"] and web["reason"] is None and web["free_bytes"] > 0
    assert abs(web["clock_skew_s"]) < 1.0 and web["latency_ms"] > 0 and web["powershell"] is None
    gone = results["gone-01"]
    assert not gone["reachable"] and "\n" not in gone["reason"]
    assert "connect" in gone["reason"] and "refused" in gone["reason"].lower()

    table = ferry(home, "target", "check", "--environment", "Dev")  # the table, and a line per unreachable target
    assert table.code == 1 and "gone-01: connect:" in table.stdout and "web-02" in table.stdout
    assert "db-01" not in table.stdout
    assert ferry(home, "target", "check", "db-01").code == 0

    listed = {t["name"]: t for t in ferry_json(home, "target", "list")}
    assert listed["gone-01"]["health"]["reachable"] is False and listed["gone-01"]["machine_policy"] == "Tolerant"
    assert listed["web-01"]["health"]["reachable"] is True and listed["web-01"]["machine_policy"] == "Default"
    assert [t["name"] for t in ferry_json(home, "target", "list", "--role", "db")] == ["db-01"]
    assert [t["name"] for t in ferry_json(home, "target", "list", "--environment", "Dev")] == \
        ["web-01", "web-02", "gone-01"]
    text = ferry(home, "target", "list").stdout
    assert "UNREACHABLE" in text and "healthy" in text


def test_target_list_shows_what_the_journal_holds(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "web-01" / ".ferry").mkdir(parents=True)
    (tmp_path / "web-01" / ".ferry" / "journal.json").write_text(
        '{"Shop/Dev": {"release": "1.2.0", "deployment_id": 7, "installed_at": "2026-11-28T20:00:00Z"}}')
    assert ferry(home, "apply", str(write_infra(tmp_path))).code == 0
    assert ferry(home, "target", "check", "web-01").code == 0
    listed = {t["name"]: t for t in ferry_json(home, "target", "list")}
    assert listed["web-01"]["holds"] == {"Shop/Dev": {"release": "1.2.0", "deployment_id": 7,
                                                      "installed_at": "2026-11-28T20:00:00Z", "source": "journal"}}
    assert "Shop/Dev 1.2.0" in ferry(home, "target", "list").stdout


@pytest.mark.parametrize(("change", "message"), [
    ({"targets": [{"name": "a", "environment": "Dev", "machine_policy": "Nope",
                   "transport": {"kind": "local", "root": "/tmp"}}]},
     r"infrastructure\.yaml:\d+: targets\[0\]\.machine_policy: unknown machine policy 'Nope' "
     r"\(known: Default, Tolerant\)"),
    ({"machine_policies": [{"name": "P", "health_check": {"interval": "soon"}}]},
     r"infrastructure\.yaml:\d+: machine_policies\[0\]\.health_check\.interval: .*'soon' is not a duration"),
    ({"machine_policies": [{"name": "P", "unavailable_targets": "ignore"}]},
     r"machine_policies\[0\]\.unavailable_targets: .*'fail' or 'skip'"),
])
def test_bad_machine_policies_are_refused(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    import re

    home = tmp_path / "home"
    path = write_infra(tmp_path)
    data = yaml.safe_load(path.read_text())
    if "machine_policies" in change:
        data["machine_policies"] = change["machine_policies"]
    else:
        data["targets"] = change["targets"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    outcome = ferry(home, "apply", str(path))
    assert outcome.code == 1
    line = outcome.stderr.strip()
    assert re.search(message, line), line
    assert "\n" not in line
