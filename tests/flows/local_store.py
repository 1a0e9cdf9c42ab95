"""A ``LocalProject`` (local targets, real bash) applied, released and planned in-process, through the same
functions the CLI calls — no subprocess — so the engine's unit tests stay fast."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flows.engine.plan import DeploymentPlan, prepare
from snapshots import projects, releases
from snapshots.store import records
from snapshots.workspace import Workspace
from tests.flows.local_project import LocalProject


@dataclass
class Shop:
    """One local project in this test's FERRY_HOME (the ``ferry_home`` fixture)."""

    local: LocalProject
    ctx: Workspace

    @classmethod
    def at(cls, root: Path, environments: dict[str, int] | None = None) -> Shop:
        local = LocalProject(root, run=None)
        if environments:
            local.environments = environments
        return cls(local, Workspace())

    @property
    def name(self) -> str:
        return self.local.name

    def write(self, process: list[dict[str, Any]], variables: list[dict[str, Any]] | None = None,
              infra: Any = None, **project: Any) -> None:
        """The project's YAML; ``infra(data)`` may edit the infrastructure document before it is written."""
        self.local.write(process, variables, **project)
        if infra is not None:
            path = self.local.root / "infrastructure.yaml"
            data = yaml.safe_load(path.read_text())
            infra(data)
            path.write_text(yaml.safe_dump(data, sort_keys=False))

    def apply(self) -> None:
        with self.ctx.store.begin() as conn:
            projects.apply(conn, [self.local.root / "infrastructure.yaml", self.local.root / "project.yaml"],
                           self.ctx.vault, self.ctx.actor)

    def release(self, version: str, notes: str = "") -> releases.Release:
        with self.ctx.store.begin() as conn:
            release, _ = releases.create(conn, self.ctx.feed, self.name, self.ctx.actor, vault=self.ctx.vault,
                                         version=version, notes=notes)
        return release

    def prepare(self, version: str, environment: str, **options: Any) -> DeploymentPlan:
        with self.ctx.store.begin() as conn:
            return prepare(conn, self.ctx.feed, self.ctx.vault, project=self.name, release=version,
                           environment=environment, **options)

    def record(self, plan: DeploymentPlan, state: str = records.QUEUED) -> int:
        """A deployment record for ``plan`` (what ``ferry deploy`` creates before the flow runs)."""
        with self.ctx.store.begin() as conn:
            return records.create(conn, project=self.name, release_id=plan.current.release.id,
                                  environment=plan.environment.name,
                                  variable_snapshot_id=plan.current.variable_snapshot_id, parameters={},
                                  actor=self.ctx.actor, state=state)

    def mark_deployed(self, version: str, environment: str) -> int:
        """Record a successful deployment of ``version`` to ``environment`` (as if one had run)."""
        with self.ctx.store.begin() as conn:
            release = releases.require(conn, self.name, version)
            return records.create(conn, project=self.name, release_id=release.id, environment=environment,
                                  variable_snapshot_id=release.variables.id, parameters={}, actor=self.ctx.actor,
                                  state=records.SUCCESS)

    def results(self, deployment_id: int) -> list[records.StepResult]:
        with self.ctx.store.read() as conn:
            return records.results(conn, deployment_id)
