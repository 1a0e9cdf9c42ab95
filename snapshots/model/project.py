"""The project: the recipe a release freezes (process, variables, packages, lifecycle, versioning)."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field, model_validator

from snapshots.model.common import FromEnv, FromFile, Model, Name, NameList, ScalarText
from snapshots.model.steps import ParentStep, ProcessItem, Step


class Scope(Model):
    """Where a variable value applies. Same kind ORs, different kinds AND."""

    environment: NameList = Field(default_factory=list)
    role: NameList = Field(default_factory=list)
    target: NameList = Field(default_factory=list)
    step: NameList = Field(default_factory=list)
    channel: NameList = Field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.environment or self.role or self.target or self.step or self.channel)


class Prompt(Model):
    """A value asked for at deploy time (``--variable NAME=VALUE``)."""

    label: str = ""
    description: str = ""
    required: bool = True


class Variable(Model):
    name: Name
    value: ScalarText | FromEnv | FromFile | None = None
    sensitive: bool = False
    scope: Scope = Scope()
    prompt: Prompt | None = None
    description: str = ""

    @model_validator(mode="after")
    def _has_value(self) -> Variable:
        if self.value is None and self.prompt is None:
            raise ValueError("a variable needs a value (or a prompt to ask for one at deploy time)")
        return self


class Versioning(Model):
    """How ``release create`` picks a version when none is given."""

    template: str | None = Field(
        None, description="e.g. #{Version.LastMajor}.#{Version.LastMinor}.#{Version.NextPatch}")
    from_package: str | None = Field(None, description="Use this package's version as the release version")

    @model_validator(mode="after")
    def _one(self) -> Versioning:
        if self.template and self.from_package:
            raise ValueError("choose either template or from_package, not both")
        return self


class Project(Model):
    project: Name = Field(description="The project's name")
    description: str = ""
    lifecycle: Name = "Default"
    packages: list[Name] = Field(default_factory=list, description="Package ids a release pins")
    versioning: Versioning = Versioning()
    strict_variables: bool = Field(True, description="An unknown #{Name} fails the step (False: warn, empty)")
    process: list[ProcessItem] = Field(default_factory=list)
    variables: list[Variable] = Field(default_factory=list)

    @property
    def name(self) -> str:
        return self.project

    def all_steps(self) -> Iterator[tuple[ParentStep | None, Step]]:
        """Every leaf step in process order, with its parent (None at top level)."""
        for item in self.process:
            if isinstance(item, ParentStep):
                for child in item.steps:
                    yield item, child
            else:
                yield None, item

    def step_names(self) -> list[str]:
        names: list[str] = []
        for item in self.process:
            names.append(item.name)
            if isinstance(item, ParentStep):
                names.extend(child.name for child in item.steps)
        return names
