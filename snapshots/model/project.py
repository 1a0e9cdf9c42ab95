"""The project: the recipe a release freezes (process, variables, packages, lifecycle, versioning)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from snapshots.model.channels import Channel
from snapshots.model.common import FromEnv, FromFile, Model, Name, NameList, ScalarText
from snapshots.model.feeds import (
    PACKAGE_FEEDS_DESCRIPTION,
    PACKAGES_DESCRIPTION,
    PACKAGES_SCHEMA,
    split_package_entries,
)
from snapshots.model.runbooks import Runbook
from snapshots.model.steps import ParentStep, Step
from snapshots.model.template_steps import ProjectProcessItem, TemplateStep


class Scope(Model):
    """Where a variable value applies. Same kind ORs, different kinds AND."""

    environment: NameList = Field(default_factory=list, description="Only in these environments, e.g. [Production]")
    role: NameList = Field(default_factory=list, description="Only on targets with one of these roles, e.g. [web]")
    target: NameList = Field(default_factory=list, description="Only on these targets, e.g. [prod-01]")
    step: NameList = Field(default_factory=list, description="Only in these steps (by name)")
    channel: NameList = Field(default_factory=list, description="Only for releases in these channels")

    def is_empty(self) -> bool:
        return not (self.environment or self.role or self.target or self.step or self.channel)


class Prompt(Model):
    """A value asked for at deploy time (``--variable NAME=VALUE``)."""

    label: str = Field("", description="What the person is asked, e.g. 'Who approved?'")
    description: str = Field("", description="Longer help shown with the prompt")
    required: bool = Field(True, description="A deployment without a value is refused (default true)")


class Variable(Model):
    name: Name = Field(description="The variable's name as #{Name} reads it, e.g. ConnectionStrings:Default")
    value: ScalarText | FromEnv | FromFile | None = Field(
        None, description="Text, or {from_env: VAR} / {from_file: path} (read at ferry apply)")
    sensitive: bool = Field(False, description="A secret: encrypted at rest and masked in every output (default false)")
    scope: Scope = Field(
        Scope(), description="Where the value applies (environment, role, target, step, channel); unscoped by default")
    prompt: Prompt | None = Field(None, description="Ask for the value at deploy time (--variable NAME=VALUE)")
    description: str = Field("", description="What the variable is for (for readers)")

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


def _cron(value: str) -> str:
    """Five-field cron (minute hour day month weekday), checked here so a typo fails ``ferry apply``."""
    from cronsim import CronSim, CronSimError

    value = " ".join(value.split())
    if len(value.split(" ")) != 5:
        raise ValueError("cron needs five fields: minute hour day-of-month month day-of-week")
    try:
        CronSim(value, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"invalid cron {value!r}: {exc}") from None
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/London)") from None
    return value


Cron = Annotated[str, AfterValidator(_cron)]
TimeZone = Annotated[str, AfterValidator(_timezone)]


class ScheduledTrigger(Model):
    """Fields of the cron triggers (Octopus's scheduled triggers), run by ``ferry serve`` as Prefect schedules."""

    name: Name = Field(description="The trigger's name, unique in the project")
    cron: Cron = Field(description="When, as five-field cron, e.g. '0 3 * * 1-5' (03:00 on weekdays)")
    timezone: TimeZone = Field("UTC", description="IANA time zone the cron is read in")
    expires_after: int = Field(
        3600, ge=1, le=7 * 86_400,
        description="Seconds after its time a run that has not started is cancelled instead of run late")
    enabled: bool = Field(True, description="false keeps the schedule but does not run it (default true)")


class DeployLatestTrigger(ScheduledTrigger):
    """Deploy the project's latest release to an environment on a schedule."""

    action: Literal["deploy-latest"] = Field(description="deploy-latest: deploy the latest release to an environment")
    environment: Name = Field(description="The environment to deploy to, e.g. Test")
    channel: Name | None = Field(None, description="Deploy the latest release of this channel (default: the "
                                                   "project's default channel)")


class PromoteTrigger(ScheduledTrigger):
    """Deploy the release that last succeeded in ``from`` to ``to`` on a schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    action: Literal["promote"] = Field(description="promote: deploy what last succeeded in from to to")
    from_: Name = Field(alias="from", description="Source environment")
    to: Name = Field(description="Destination environment")
    channel: Name | None = Field(None, description="Promote only releases of this channel (default: the "
                                                   "project's default channel)")


class ReleaseOnPushTrigger(Model):
    """Create a release when a new version of ``package`` is pushed to the built-in feed (then the
    lifecycle's auto-deploy environments get it)."""

    name: Name = Field(description="The trigger's name, unique in the project")
    action: Literal["create-release-on-push"] = Field(
        description="create-release-on-push: create a release when the package is pushed")
    package: Name = Field(description="The package id whose push creates a release")
    channel: Name | None = Field(
        None, description="Create the release in this channel (its rules must accept the pushed version); default: "
                          "the first channel, default one first, whose rules accept it")
    enabled: bool = Field(True, description="false ignores pushes (default true)")


Trigger = Annotated[DeployLatestTrigger | PromoteTrigger | ReleaseOnPushTrigger, Field(discriminator="action")]


class Project(Model):
    project: Name = Field(description="The project's name")
    description: str = Field("", description="What the project deploys (for readers)")
    lifecycle: Name = Field(
        "Default", description="The lifecycle releases follow (default: Default, every environment in order)")
    packages: list[Name] = Field(default_factory=list, description=PACKAGES_DESCRIPTION,
                                 json_schema_extra=PACKAGES_SCHEMA)
    package_feeds: dict[Name, Name] = Field(default_factory=dict, description=PACKAGE_FEEDS_DESCRIPTION)

    @model_validator(mode="before")
    @classmethod
    def _package_entries(cls, data: Any) -> Any:
        return split_package_entries(data)

    versioning: Versioning = Field(Versioning(), description="How release create picks a version when none is given")
    strict_variables: bool = Field(True, description="An unknown #{Name} fails the step (False: warn, leave it)")
    allow_no_targets: bool = Field(
        False, description="A deployment in which a step finds no target (no target has its roles, or all were "
                           "excluded) skips that step instead of failing (a step may also allow it on its own)")
    process: list[ProjectProcessItem] = Field(
        default_factory=list, description="The deployment process in order: steps (kind: …), parent steps (steps: "
                                          "[…], rolling) and step template uses (template: …, parameters: …)")
    variables: list[Variable] = Field(
        default_factory=list, description="Variables read as #{Name}: scoped, sensitive or prompted")
    include: NameList = Field(
        default_factory=list, description="Library variable sets whose variables the project uses, e.g. [Common, "
                                          "Database]; the project's own variable wins over a library one of the "
                                          "same name and scope, an earlier set over a later one")
    triggers: list[Trigger] = Field(
        default_factory=list, description="Cron deploy-latest / promote schedules and release-on-push")
    runbooks: list[Runbook] = Field(
        default_factory=list, description="Operations procedures (restart a service, drain a target) with their "
                                          "own process, published as snapshots (`ferry runbook publish`) and run "
                                          "with `ferry runbook run`; they move no lifecycle")
    channels: list[Channel] = Field(
        default_factory=list, description="Lanes of releases, each with package version rules and optionally its "
                                          "own lifecycle (`release create --channel`); without a channel marked "
                                          "default, an implicit 'Default' channel with no rules is the default")

    @property
    def name(self) -> str:
        return self.project

    def all_steps(self) -> Iterator[tuple[ParentStep | None, Step | TemplateStep]]:
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
