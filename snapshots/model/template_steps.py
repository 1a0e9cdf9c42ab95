"""A process step that uses a step template (``template: Migrate DB`` + ``parameters:``), and the union of what a
project's process may hold. Apart from ``library`` so the project model can use it without an import circle."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag

from snapshots.model.common import Model, Name, NameList, ScalarText
from snapshots.model.steps import ParentStep, Step


class TemplateStep(Model):
    """A process step that uses a step template: its body comes from the template's newest revision when a
    release is created; the fields given here override the body's."""

    name: Name = Field(description="The step's name in this project (scopes, --skip and logs use it)")
    template: Name = Field(description="The step template to use, e.g. Migrate DB")
    parameters: dict[str, ScalarText] = Field(
        default_factory=dict, description="A value per template parameter, e.g. {DbName: '#{Db.Name}'}; "
                                          "parameters with a default may be left out")
    roles: NameList | None = Field(None, description="Target roles (default: the template body's)")
    environments: NameList | None = Field(None, description="Run only in these environments (default: the body's)")
    condition: str | None = Field(None, description="success | failure | always | #{...} (default: the body's)")
    required: bool | None = Field(None, description="Cannot be skipped at deploy time (default: the body's)")
    enabled: bool | None = Field(None, description="false leaves the step out (default: the body's)")
    allow_no_targets: bool | None = Field(
        None, description="Skip the step when no target has its roles (default: the body's)")


OVERRIDES = ("roles", "environments", "condition", "required", "enabled", "allow_no_targets")
"""TemplateStep fields that, when given, replace the template body's."""


def _project_item_tag(value: Any) -> str:
    if isinstance(value, dict):
        if "template" in value and "kind" not in value:
            return "template"
        return "parent" if "steps" in value and "kind" not in value else "step"
    if isinstance(value, TemplateStep):
        return "template"
    return "parent" if isinstance(value, ParentStep) else "step"


ProjectProcessItem = Annotated[
    Annotated[Step, Tag("step")] | Annotated[ParentStep, Tag("parent")] | Annotated[TemplateStep, Tag("template")],
    Discriminator(_project_item_tag),
]
"""What a project's process holds: a step, a parent step, or a use of a step template (expanded into a plain
step when a release is created, so deployments only ever see steps and parent steps)."""
