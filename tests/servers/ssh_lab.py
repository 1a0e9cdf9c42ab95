"""The real SSH + HAProxy lab for tests: ``ferry lab`` in a private FERRY_HOME on a private loopback /24.

Each test session picks its own 127.x.y.0/24 (from its pid), so tests can run while a developer's own lab
(127.0.0.x, the sample's addresses) is up, and two sessions do not collide.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flows.lab import Lab
from snapshots.model.infrastructure import Infrastructure, SshTransport, Target

SSH_PORT = 2222  # not 22: also exercises known_hosts' "[host]:port" entries


def private_network(offset: int = 0) -> str:
    """A loopback /24 for this process (``offset`` < 8 picks another one for a second lab).

    The offset has its own range of the second octet, so two processes with neighbouring pids (pytest-xdist
    workers) never land on each other's networks: 127.(100 + 16·offset + pid mod 16).(pid / 16 mod 250 + 1)."""
    if not 0 <= offset < 8:
        raise ValueError(f"offset {offset} is outside 0..7")
    pid = os.getpid()
    return f"127.{100 + 16 * offset + pid % 16}.{(pid // 16) % 250 + 1}"


@dataclass
class LabInfo:
    """A running lab, as tests see it."""

    lab: Lab
    status: dict[str, Any]

    @property
    def home(self) -> Path:
        return self.lab.home

    @property
    def key_file(self) -> Path:
        return self.lab.key_file

    @property
    def known_hosts(self) -> Path:
        return self.lab.home / "known_hosts"

    @property
    def infrastructure(self) -> Infrastructure:
        return Infrastructure.model_validate(yaml.safe_load(self.lab.infrastructure_file.read_text()))

    @property
    def api(self) -> str:
        return str(self.status["haproxy"]["api"])

    @property
    def socket(self) -> str:
        return str(self.status["haproxy"]["socket"])

    def target(self, name: str) -> Target:
        return next(t for t in self.infrastructure.targets if t.name == name)

    def spec(self, name: str, **changes: Any) -> SshTransport:
        """The target's SSH settings from the lab's infrastructure.yaml, with ``changes`` applied."""
        spec = self.target(name).transport
        assert isinstance(spec, SshTransport)
        return spec.model_copy(update=changes)

    def info(self, name: str) -> dict[str, Any]:
        return next(t for t in self.status["targets"] if t["name"] == name)


def start_lab(home: Path, targets: int = 7, *, network: str | None = None) -> LabInfo:
    lab = Lab(home)
    status = lab.up(targets, network=network or private_network(), ssh_port=SSH_PORT)
    return LabInfo(lab, status)
