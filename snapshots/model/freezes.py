"""Deployment freezes (Octopus's deployment freezes): windows in which no deployment may start in some
environments (optionally only for some projects), declared in the infrastructure YAML. The shape and its
checks; ``snapshots.freezes`` decides whether a moment is frozen."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import AwareDatetime, Field, model_validator

from snapshots.model.common import Model, Name, NameList

if TYPE_CHECKING:
    from snapshots.model.infrastructure import Infrastructure

WEEK = timedelta(days=7)


class Freeze(Model):
    """A window in which deployments to its environments are refused (unless --override-freeze)."""

    name: Name = Field(description="The freeze's name, shown in the refusal and recorded with an override")
    start: AwareDatetime = Field(description="When the freeze begins: ISO 8601 with a time zone, e.g. "
                                             "2026-11-27T00:00:00Z or 2026-12-24T18:00:00+01:00")
    end: AwareDatetime = Field(description="When the freeze ends (exclusive), ISO 8601 with a time zone; after start")
    environments: NameList = Field(min_length=1, description="Environments in which deployments are refused")
    projects: NameList = Field(default_factory=list,
                               description="Only these projects are frozen (default: every project)")
    reason: str = Field(min_length=1, description="Why: shown in every refusal, e.g. 'Black Friday trading'")
    recurrence: Literal["weekly"] | None = Field(
        None, description="'weekly': the window from start to end repeats every 7 days (end - start must be "
                          "shorter than a week), e.g. every weekend")
    until: AwareDatetime | None = Field(None, description="With recurrence: no window starts at or after this time")

    @model_validator(mode="after")
    def _window(self) -> Freeze:
        if self.end <= self.start:
            raise ValueError(f"freeze {self.name!r}: end {self.end.isoformat()} is not after start "
                             f"{self.start.isoformat()}")
        if self.recurrence == "weekly" and self.end - self.start >= WEEK:
            raise ValueError(f"freeze {self.name!r}: a weekly freeze must be shorter than 7 days")
        if self.until is not None and self.recurrence is None:
            raise ValueError(f"freeze {self.name!r}: until needs recurrence: weekly")
        return self


def freeze_problems(infra: Infrastructure) -> list[tuple[tuple[str | int, ...], str]]:
    """Unique freeze names; environments the infrastructure declares."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    envs = {e.name for e in infra.environments}
    seen: dict[str, int] = {}
    for i, freeze in enumerate(infra.freezes):
        folded = freeze.name.casefold()
        if folded in seen:
            problems.append((("freezes", i, "name"),
                             f"duplicate freeze name {freeze.name!r} (also freezes[{seen[folded]}])"))
        seen.setdefault(folded, i)
        for k, env in enumerate(freeze.environments):
            if env not in envs:
                problems.append((("freezes", i, "environments", k),
                                 f"unknown environment {env!r} (known: {', '.join(sorted(envs)) or 'none'})"))
    return problems
