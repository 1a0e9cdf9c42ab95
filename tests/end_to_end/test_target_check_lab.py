"""``ferry target check`` against the lab's real sshd targets (issue 15 item 1): a pinned target is measured over
real SSH; one whose host key is neither pinned nor recorded is refused with the key's fingerprint, as a
deployment refuses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.fleet.cli import ferry
from tests.servers.ssh_lab import LabInfo


@pytest.mark.slow
def test_target_check_over_real_ssh(lab: LabInfo, tmp_path: Path) -> None:
    infra = yaml.safe_load(lab.lab.infrastructure_file.read_text())
    infra["targets"] = [t for t in infra["targets"] if t["name"] in ("dev-01", "test-01")]
    unpinned = next(t for t in infra["targets"] if t["name"] == "test-01")
    unpinned["transport"].pop("host_key", None)
    (tmp_path / "infrastructure.yaml").write_text(yaml.safe_dump(infra, sort_keys=False))
    home = tmp_path / "home"  # no known_hosts here: only the pin in the YAML is trusted
    assert ferry(home, "apply", str(tmp_path / "infrastructure.yaml")).code == 0

    outcome = ferry(home, "target", "check", "--json")
    assert outcome.code == 1
    results = {r["target"]: r for r in json.loads(outcome.stdout)["items"]}
    dev = results["dev-01"]
    assert dev["reachable"] and dev["transport"] == "ssh"
    assert dev["free_bytes"] > 0 and 0 < dev["latency_ms"] < 5000 and abs(dev["clock_skew_s"]) < 1
    refused = results["test-01"]
    assert not refused["reachable"]
    assert refused["reason"].startswith("connect: unknown host key: the server presents SHA256:")
    assert "ferry target trust test-01" in refused["reason"]
    assert "error: 1 of 2 target(s) unreachable: test-01" in ferry(home, "target", "check").stderr
