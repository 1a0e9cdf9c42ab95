"""Channels: lanes of releases within a project (Octopus's channels), each with package version rules and
optionally a lifecycle of its own. The YAML shape and its field checks; what a rule accepts and which
channel a release is in live in ``snapshots.channels``."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from snapshots.model.common import Model, Name, NameList
from snapshots.version_ranges import RangeSyntaxError, parse_range

DEFAULT_CHANNEL = "Default"
"""The name of the channel a project has when its YAML marks none as ``default: true``."""


def _range(value: str) -> str:
    try:
        parse_range(value)
    except RangeSyntaxError as exc:
        raise ValueError(str(exc)) from None
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"tag {value!r} is not a regular expression: {exc}") from None
    return value


RangeText = Annotated[str, AfterValidator(_range)]
TagRegex = Annotated[str, AfterValidator(_regex)]


class ChannelRule(Model):
    """Versions a channel's releases may pin: every rule whose packages include a package must accept its
    version (Octopus's channel version rules)."""

    packages: NameList = Field(
        default_factory=list,
        description="The packages this rule applies to (default: every package of the project)")
    version_range: RangeText | None = Field(
        None, description="Versions allowed, as a NuGet range ('[1.0,2.0)', '(,3.0]', '1.0' = at least 1.0) or "
                          "comparators ('>=1.2 <2'); compared by SemVer precedence")
    tag: TagRegex | None = Field(
        None, description="Regular expression the pre-release tag must match (searched; the tag of a stable "
                          "version is ''): '^$' = stable only, '^beta' = beta pre-releases")

    @model_validator(mode="after")
    def _says_something(self) -> ChannelRule:
        if self.version_range is None and self.tag is None:
            raise ValueError("a channel rule needs version_range, tag or both")
        return self

    def describe(self) -> str:
        """The rule as a person reads it in an error: ``version_range [1.0,2.0) and tag '^$'``."""
        parts = []
        if self.version_range is not None:
            parts.append(f"version_range {self.version_range}")
        if self.tag is not None:
            parts.append(f"tag {self.tag!r}")
        return " and ".join(parts)


class Channel(Model):
    """A lane of releases: its releases satisfy its rules and progress through its lifecycle."""

    name: Name = Field(description="The channel's name (`ferry release create --channel NAME`)")
    description: str = Field("", description="What the channel is for")
    default: bool = Field(
        False, description="The channel `release create`, `deploy … latest` and `promote` use when no --channel is "
                           "given (at most one; without one, an implicit channel 'Default' with no rules is)")
    lifecycle: Name | None = Field(
        None, description="The lifecycle this channel's releases progress through (default: the project's)")
    rules: list[ChannelRule] = Field(
        default_factory=list, description="Package version rules a release in this channel must satisfy")


def implicit_default(lifecycle: str) -> Channel:
    """The channel of a project whose YAML names no default one: no rules, the project's lifecycle."""
    return Channel(name=DEFAULT_CHANNEL, default=True, lifecycle=lifecycle)
