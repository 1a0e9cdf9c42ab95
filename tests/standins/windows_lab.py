"""Start WS-Management STAND-IN servers (tests/standins/wsman_standin.py) for tests and benchmarks, and a test CA.

Each stand-in is its own process on its own loopback address, like a separate Windows server; it is a
stand-in, not Windows (see wsman_standin's docstring for what it proves and what it does not).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from snapshots.model.infrastructure import WinRmTransport as WinRmSpec
from tests.standins.wsman_standin import StandinConfig

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "Passw0rd!"


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


@dataclass
class TestCa:
    """A throwaway certificate authority issuing the stand-ins' server and client certificates."""

    root: Path

    @classmethod
    def create(cls, root: Path, name: str = "ferry test CA") -> TestCa:
        root.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        (root / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (root / "ca.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
        return cls(root)

    @property
    def cert_file(self) -> Path:
        return self.root / "ca.pem"

    def issue(self, name: str, *, addresses: tuple[str, ...] = (), client: bool = False) -> tuple[Path, Path]:
        """A leaf certificate (server by default, client auth with ``client``); returns (cert, key) paths."""
        ca_cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        ca_key = serialization.load_pem_private_key((self.root / "ca.key").read_bytes(), None)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                                         else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        if not client:
            names: list[x509.GeneralName] = [x509.DNSName(name)]
            names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        stem = self.root / ("client-" + name if client else name)
        cert_path, key_path = stem.with_suffix(".pem"), stem.with_suffix(".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path


@dataclass
class Standin:
    """A running stand-in "Windows server"."""

    config: StandinConfig
    process: subprocess.Popen[bytes]
    config_file: Path

    @property
    def state_dir(self) -> Path:
        return Path(self.config.state_dir)

    def iis(self) -> dict[str, Any]:
        """The simulated IIS: sites, app pools, bindings, faults, the log of IIS calls."""
        return json.loads((self.state_dir / "iis.json").read_text())  # type: ignore[no-any-return]

    def edit_iis(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Seed or fault-inject the simulated IIS (the stand-in re-reads the file on every operation)."""
        path = self.state_dir / "iis.json"
        state = json.loads(path.read_text())
        change(state)
        tmp = path.with_name("iis.json.seed")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(path)

    def fs(self, windows_path: str) -> Path:
        drive, _, rest = windows_path.partition(":")
        return self.state_dir.joinpath("fs", drive.upper(), *[p for p in rest.replace("/", "\\").split("\\") if p])

    def spec(self, **changes: Any) -> WinRmSpec:
        """Transport settings for this stand-in, as a target in infrastructure.yaml would give them."""
        base: dict[str, Any] = {"kind": "winrm", "host": self.config.address, "port": self.config.port,
                                "scheme": self.config.scheme, "auth": "ntlm", "username": "deploy",
                                "password": {"from_env": "FERRY_TEST_WINRM_PASSWORD"},
                                "operation_timeout": 5, "read_timeout": 15}
        base.update(changes)
        return WinRmSpec.model_validate(base)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_standin(config: StandinConfig, *, timeout: float = 20) -> Standin:
    """Start one stand-in process and wait until it listens."""
    Path(config.state_dir).mkdir(parents=True, exist_ok=True)
    config_file = config.save(Path(config.state_dir) / "standin.json")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(Path(config.state_dir) / "standin.log", "wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "tests.standins.wsman_standin", str(config_file)],
                                   stdout=subprocess.PIPE, stderr=log_file, env=env, cwd=REPO)
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != b"ready":
        process.kill()
        log = (Path(config.state_dir) / "standin.log").read_text(errors="replace")
        raise RuntimeError(f"the WS-Management stand-in did not start: {line!r} {log[-2000:]}")
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((config.address, config.port), timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    return Standin(config, process, config_file)
