"""Fixtures for the steps tests: an SSH session to the lab, and WS-Management STAND-IN servers (not Windows)
on this session's loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from steps.transports.ssh import SshTransport
from tests.servers.ssh_lab import LabInfo, private_network
from tests.standins.windows_lab import PASSWORD, Standin, TestCa, free_port, start_standin
from tests.standins.wsman_standin import StandinConfig

ECHO_SCRIPT = Path(__file__).resolve().parents[1] / "standins" / "ps" / "echo-parameters.ps1"
SET_OUTPUT_SCRIPT = ECHO_SCRIPT.with_name("set-output.ps1")


def standin_address(index: int) -> str:
    """Addresses for stand-ins: a loopback /24 of this process, away from the SSH lab's .2-.9."""
    return f"{private_network(offset=3)}.{40 + index}"


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def winrm_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    """One stand-in on HTTP with NTLM and message encryption (WinRM's port 5985 setup)."""
    os.environ.setdefault("FERRY_TEST_WINRM_PASSWORD", PASSWORD)
    address = standin_address(1)
    config = StandinConfig(address=address, port=free_port(address),
                           state_dir=str(tmp_path_factory.mktemp("standin-http")),
                           users={"deploy": PASSWORD, "operator": "0perator!"}, admins=["deploy"],
                           extra_scripts={str(ECHO_SCRIPT): "echo-parameters", str(SET_OUTPUT_SCRIPT): "set-output"})
    server = start_standin(config)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def winrm_https(tmp_path_factory: pytest.TempPathFactory, test_ca: TestCa) -> Iterator[Standin]:
    """One stand-in on HTTPS (certificate from the test CA) with NTLM, Basic and client-certificate auth."""
    os.environ.setdefault("FERRY_TEST_WINRM_PASSWORD", PASSWORD)
    address = standin_address(2)
    cert, key = test_ca.issue("win-https.test", addresses=(address,))
    config = StandinConfig(address=address, port=free_port(address), scheme="https",
                           state_dir=str(tmp_path_factory.mktemp("standin-https")), users={"deploy": PASSWORD},
                           cert_file=str(cert), key_file=str(key), client_ca_file=str(test_ca.cert_file),
                           cert_users={"deploy-cert": "deploy"},
                           extra_scripts={str(ECHO_SCRIPT): "echo-parameters"})
    server = start_standin(config)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dev(lab: LabInfo) -> Iterator[SshTransport]:
    """A connection to dev-01 with its key pinned (from the lab's infrastructure.yaml)."""
    transport = SshTransport("dev-01", lab.spec("dev-01"), known_hosts=lab.known_hosts)
    try:
        yield transport
    finally:
        transport.close()
