"""The YAML side of .NET configuration transforms (XDT) on a package step: what ``transforms:`` entries look like."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from snapshots.model.common import Model, Name


class TransformEntry(Model):
    """One additional transform, Octopus's syntax: ``Transform.config => Target.config``."""

    transform: Name = Field(description="'Web.Custom.config => Web.config' (paths relative to the package; '*' "
                                        "pairs files; #{...} variables allowed), or a bare 'Web.Custom.config' for "
                                        "Web.config")
    optional: bool = Field(False, description="A missing transform file is skipped instead of failing the step")

    @field_validator("transform")
    @classmethod
    def _shape(cls, value: str) -> str:
        if "=>" in value:
            left, _, right = value.partition("=>")
            if not left.strip() or not right.strip():
                raise ValueError("expected 'Transform.config => Target.config'")
        return value


def _entry(value: Any) -> Any:
    """A plain string is a required entry."""
    return {"transform": value} if isinstance(value, str) else value


Transform = Annotated[TransformEntry, BeforeValidator(_entry)]

TRANSFORMS_DESCRIPTION = ("XDT config transforms applied on the worker before upload, after #{...} substitution and "
                          "before structured variables: entries 'Web.Custom.config => Web.config' or "
                          "{transform: ..., optional: true}; a missing file fails the step unless optional")
AUTOMATIC_DESCRIPTION = ("Apply X.Release.config, then X.<Environment>.config, to every X.config in the package "
                         "when those files exist (Octopus's automatic transforms)")
