"""Is a deployment allowed to start now (or at a scheduled time)? The infrastructure's deployment freezes
decide: a deployment of a project to an environment that would start inside a freeze window is refused with
the freeze's name, end and reason, unless the requester overrides it (which the record keeps: who, which
freeze)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from snapshots.errors import DeploymentFrozen
from snapshots.model.freezes import WEEK, Freeze
from snapshots.model.infrastructure import Infrastructure


@dataclass(frozen=True)
class FreezeWindow:
    """One window of a freeze that contains a moment (for a weekly freeze, that week's window)."""

    freeze: Freeze
    start: datetime
    end: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"freeze": self.freeze.name, "start": self.start.isoformat(), "end": self.end.isoformat(),
                "reason": self.freeze.reason}


def window_at(freeze: Freeze, when: datetime) -> FreezeWindow | None:
    """The freeze's window containing ``when`` (start inclusive, end exclusive), or None."""
    if when < freeze.start:
        return None
    start, end = freeze.start, freeze.end
    if freeze.recurrence == "weekly":
        weeks = (when - freeze.start) // WEEK
        start, end = freeze.start + weeks * WEEK, freeze.end + weeks * WEEK
        if freeze.until is not None and start >= freeze.until:
            return None
    return FreezeWindow(freeze, start, end) if start <= when < end else None


def applies(freeze: Freeze, project: str, environment: str) -> bool:
    return environment in freeze.environments and (not freeze.projects or project in freeze.projects)


def active(infra: Infrastructure, project: str, environment: str, when: datetime | None = None) -> FreezeWindow | None:
    """The freeze window (the one that ends last, if several) in force for the project and environment at
    ``when`` (default: now)."""
    moment = when or datetime.now(UTC)
    found = [w for f in infra.freezes if applies(f, project, environment)
             if (w := window_at(f, moment)) is not None]
    return max(found, key=lambda w: w.end, default=None)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def check(infra: Infrastructure, project: str, environment: str, *, when: datetime | None = None,
          override: bool = False) -> FreezeWindow | None:
    """Raise DeploymentFrozen if a freeze is in force and not overridden; return the window overridden (or
    None when nothing is frozen)."""
    window = active(infra, project, environment, when)
    if window is None or override:
        return window
    at = f" at {_utc(when)}" if when is not None else ""
    raise DeploymentFrozen(f"{environment} is frozen{at} by freeze {window.freeze.name!r} until "
                           f"{_utc(window.end)}: {window.freeze.reason} (--override-freeze to deploy anyway)",
                           freeze=window.freeze.name, until=window.end.isoformat())
