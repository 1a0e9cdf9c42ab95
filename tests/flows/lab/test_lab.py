"""`ferry lab up|down|status` and `ferry target trust`, run as a user would (the real CLI, real sshd/HAProxy)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.lab.lab import _alive
from snapshots.errors import TransportError
from snapshots.model.infrastructure import Infrastructure
from steps.transports.ssh import SshTransport, fingerprint, scan_host_key
from tests.conftest import CliResult
from tests.servers.ssh_lab import SSH_PORT, private_network

NETWORK = private_network(offset=2)
UP = ("lab", "up", "--targets", "2", "--network", NETWORK, "--ssh-port", str(SSH_PORT))


@pytest.fixture
def lab_cli(ferry: Callable[..., CliResult], ferry_home: Path) -> Iterator[Callable[..., CliResult]]:
    """The `ferry` runner, with whatever lab a test starts in its FERRY_HOME stopped afterwards."""
    try:
        yield ferry
    finally:
        ferry("lab", "down")


def _json(result: CliResult) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_up_status_down_are_idempotent(lab_cli: Callable[..., CliResult], ferry_home: Path) -> None:
    first = _json(lab_cli(*UP, "--json"))
    assert first["up"] is True and first["balancer_url"] == f"http://{NETWORK}.1:8000/"
    assert first["changed"] == ["dev-01", "test-01", "haproxy"]
    assert [(t["name"], t["address"], t["ssh_port"], t["app_url"], t["state"]) for t in first["targets"]] == [
        ("dev-01", f"{NETWORK}.2", SSH_PORT, f"http://{NETWORK}.2:8080/", "up"),
        ("test-01", f"{NETWORK}.3", SSH_PORT, f"http://{NETWORK}.3:8080/", "up")]
    assert first["haproxy"]["api"] == f"tcp://{NETWORK}.1:9999" and first["haproxy"]["backend"] == "octofx"

    again = _json(lab_cli(*UP, "--json"))
    assert again["changed"] == [] and [t["sshd_pid"] for t in again["targets"]] == [
        t["sshd_pid"] for t in first["targets"]]
    text = lab_cli(*UP)
    assert text.exit_code == 0 and "lab already up: nothing to start" in text.stdout

    status = _json(lab_cli("lab", "status", "--json"))
    assert status == {k: v for k, v in again.items() if k != "changed"}

    other = lab_cli("lab", "up", "--targets", "3", "--network", NETWORK, "--ssh-port", str(SSH_PORT))
    assert other.exit_code == 1
    assert other.stderr.startswith("error: a lab with other settings is already up")
    assert "ferry lab down" in other.stderr

    # The infrastructure file pins the keys the servers really present, and they are recorded as trusted.
    infra = Infrastructure.model_validate(yaml.safe_load((ferry_home / "lab" / "infrastructure.yaml").read_text()))
    assert [t.name for t in infra.targets] == ["dev-01", "test-01"]
    for target, info in zip(infra.targets, status["targets"], strict=True):
        presented = scan_host_key(info["address"], info["ssh_port"])
        assert target.transport.host_key == f"{presented.get_name()} {presented.get_base64()}"
        assert info["fingerprint"] == fingerprint(presented)
        with SshTransport.for_target(target.model_copy(update={"transport": target.transport.model_copy(
                update={"host_key": None})}), home=ferry_home) as ssh:  # known_hosts alone is enough
            assert ssh.run("echo $FERRY_LAB_TARGET").output_tail == [target.name]

    # Something a deployment left running inside a target; then a target's sshd dies.
    with SshTransport.for_target(infra.targets[0], home=ferry_home) as ssh:
        app_pid = int(ssh.run("nohup sleep 600 >/dev/null 2>&1 & echo $!").output_tail[0])
    assert _alive(app_pid)
    os.kill(first["targets"][1]["sshd_pid"], signal.SIGKILL)
    time.sleep(0.2)
    broken = _json(lab_cli("lab", "status", "--json"))
    assert broken["up"] is False and [t["state"] for t in broken["targets"]] == ["up", "down"]
    repaired = _json(lab_cli(*UP, "--json"))
    assert repaired["changed"] == ["test-01"] and repaired["up"] is True

    down = _json(lab_cli("lab", "down", "--json"))
    assert down["stopped"] == ["dev-01", "test-01", "haproxy"]
    time.sleep(0.2)
    pids = [t["sshd_pid"] for t in repaired["targets"]] + [repaired["haproxy"]["pid"], app_pid]
    assert not any(_alive(pid) for pid in pids), "lab down left a process running"
    assert not (ferry_home / "lab").exists()
    assert not Path(repaired["haproxy"]["socket"].removeprefix("unix://")).exists()
    again_down = lab_cli("lab", "down")
    assert again_down.exit_code == 0 and "the lab was not running" in again_down.stdout
    assert _json(lab_cli("lab", "status", "--json"))["up"] is False
    assert "start it with `ferry lab up`" in lab_cli("lab", "status").stdout


def test_status_table_for_people(lab_cli: Callable[..., CliResult]) -> None:
    assert lab_cli(*UP).exit_code == 0
    out = lab_cli("lab", "status").stdout
    assert f"balancer     http://{NETWORK}.1:8000/" in out
    assert "dev-01" in out and "test-01" in out and "SHA256:" in out
    assert f"ferry@{NETWORK}.2 -p {SSH_PORT}" in out


def test_not_root_is_one_clear_line(ferry_home: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "ferry"
    proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", str(exe), "lab", "up"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: the lab needs root") and len(proc.stderr.strip().splitlines()) == 1


def test_missing_debian_package_is_named(ferry: Callable[..., CliResult], tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = ferry(*UP, env={"PATH": str(empty)})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: missing Debian packages: haproxy")
    assert "(no haproxy" in result.stderr and "apt-get install haproxy" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_target_trust_records_the_key_after_asking(lab_cli: Callable[..., CliResult], ferry_home: Path,
                                                   tmp_path: Path) -> None:
    status = _json(lab_cli(*UP, "--json"))
    # An infrastructure file without pinned keys, and a FERRY_HOME that has never seen these servers.
    doc = yaml.safe_load((ferry_home / "lab" / "infrastructure.yaml").read_text())
    for target in doc["targets"]:
        del target["transport"]["host_key"]
    infra_file = tmp_path / "infrastructure.yaml"
    infra_file.write_text(yaml.safe_dump(doc))
    assert lab_cli("apply", str(infra_file)).exit_code == 0
    (ferry_home / "known_hosts").unlink()
    infra = Infrastructure.model_validate(doc)
    expected = status["targets"][0]["fingerprint"]

    with pytest.raises(TransportError, match=re.escape(f"unknown host key: the server presents {expected}")):
        SshTransport.for_target(infra.targets[0], home=ferry_home)

    declined = lab_cli("target", "trust", "dev-01", input="n\n")
    assert declined.exit_code != 0 and expected in declined.stdout and "Trust this key?" in declined.stdout
    assert not (ferry_home / "known_hosts").exists()

    accepted = _json(lab_cli("target", "trust", "dev-01", "--yes", "--json"))
    assert accepted["fingerprint"] == expected and accepted["recorded"] is True
    assert accepted["already_trusted"] is False
    with SshTransport.for_target(infra.targets[0], home=ferry_home) as ssh:
        assert ssh.run("echo trusted").output_tail == ["trusted"]

    asked = lab_cli("target", "trust", "test-01", input="y\n")
    assert asked.exit_code == 0 and "recorded in" in asked.stdout
    assert "already trusted" in lab_cli("target", "trust", "test-01").stdout

    missing = lab_cli("target", "trust", "prod-09")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "error: no target named 'prod-09' in the applied infrastructure " \
                                     "(targets: dev-01, test-01)"
