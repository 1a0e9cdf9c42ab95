"""Runbooks: operations procedures (recycle a pool, drain a target, rotate a log) written in the project YAML
with the same step kinds as the deployment process, published as immutable snapshots and run against an
environment. A runbook run changes no lifecycle and no target's journal: it is not a release."""

from __future__ import annotations

from pydantic import Field

from snapshots.model.common import Model, Name, NameList
from snapshots.model.steps import ProcessItem


class Runbook(Model):
    """One runbook of a project (Octopus's runbooks): its own process, the project's variables."""

    name: Name = Field(description="The runbook's name, unique in the project (`ferry runbook run PROJECT NAME`)")
    description: str = Field("", description="What the runbook is for, shown by `ferry runbook list`")
    environments: NameList = Field(
        default_factory=list, description="Environments the runbook may run in (default: every environment)")
    roles: NameList = Field(
        default_factory=list, description="Only targets with one of these roles are in scope of a run (default: "
                                          "every target of the environment; steps still pick targets by their roles)")
    process: list[ProcessItem] = Field(
        min_length=1, description="The runbook's steps in order: the deployment process's step kinds, parent steps "
                                  "with rolling windows included; it reads the project's variables")
