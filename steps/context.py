"""Everything a step needs to run on one target, handed to it by the deploy flow.

A step never talks to the store or to Prefect: the flow resolves variables, opens the transport and
passes a masked log sink.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snapshots.errors import FerryError
from snapshots.model import Target
from steps.transports.protocol import Transport


@dataclass(frozen=True)
class PackageRef:
    """A package pinned by the release: the feed file to send and the digest it must have."""

    id: str
    version: str
    sha256: str
    filename: str
    path: Path


@dataclass
class StepContext:
    deployment_id: int
    project: str
    release: str
    environment: str
    step: Any  # one of the snapshots.model.steps models
    target: Target | None
    transport: Transport
    variables: Mapping[str, str]
    render: Callable[[str, str], str]
    """render(template, where): ``#{...}`` substitution with this target's variables."""
    log: Callable[[str], None]
    """Masked log sink: every line a step prints goes through it."""
    packages: Mapping[str, PackageRef] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    """Objects that live for the whole deployment (e.g. load-balancer clients)."""
    cancel: threading.Event = field(default_factory=threading.Event)

    _evaluated: dict[str, str] | None = field(default=None, repr=False)

    def evaluated_variables(self) -> dict[str, str]:
        """Every variable with ``#{...}`` in its value evaluated (Octopus evaluates nested values), for
        scripts reading them as data; one that cannot be evaluated is passed as written rather than failing a
        step that may never read it."""
        if self._evaluated is None:
            values = {}
            for name, value in self.variables.items():
                if "#{" in value:
                    with contextlib.suppress(FerryError):
                        value = self.render(value, f"variable {name}")
                values[name] = value
            self._evaluated = values
        return self._evaluated

    @property
    def where(self) -> str:
        return f"step {self.step.name!r}"

    @property
    def target_name(self) -> str | None:
        return self.target.name if self.target else None
