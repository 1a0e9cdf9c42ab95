"""Library variable sets and step templates (Octopus's names): variables and one parameterised step defined
once, each in its own YAML document, and used by several projects (``include: [Common]``; a process step
``template: Migrate DB`` with ``parameters:``). A release freezes what they were at that moment."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from snapshots.model.common import Model, Name, ScalarText
from snapshots.model.project import Variable
from snapshots.model.steps import Step

_TEMPLATE_MARK = "#{"


class LibraryVariableSet(Model):
    """Variables shared by the projects that ``include`` this set; scoped exactly like a project's own."""

    library_variable_set: Name = Field(description="The set's name, as projects list it in include, e.g. Common")
    description: str = Field("", description="What the set is for (shown nowhere else; for readers of the file)")
    variables: list[Variable] = Field(
        default_factory=list, description="Variables as in a project (name, value, sensitive, scope, prompt); a "
                                          "project's own variable of the same name and scope wins")


class TemplateParameter(Model):
    """One value a project fills in when it uses the template; the body reads it as ``#{Name}``."""

    name: Name = Field(description="How the body refers to it: #{Name} in fields, ferry_var Name in a script")
    label: str = Field("", description="A readable label, e.g. 'Database name'")
    default: ScalarText | None = Field(
        None, description="Used when the project gives no value; no default makes the parameter required")
    sensitive: bool = Field(
        False, description="The value is a secret: a project must pass a #{reference} to a sensitive variable "
                           "(never the secret itself), and no default may be written here")
    help: str = Field("", description="Longer help for whoever fills the parameter in")

    @model_validator(mode="after")
    def _sensitive_default(self) -> TemplateParameter:
        if self.sensitive and self.default is not None and _TEMPLATE_MARK not in self.default:
            raise ValueError(f"sensitive parameter {self.name!r}: a default must be a #{{...}} reference to a "
                             "sensitive variable, not the secret itself")
        return self


class StepTemplate(Model):
    """One parameterised step body of any kind, used by projects as ``template: <name>``."""

    step_template: Name = Field(description="The template's name, as a project step's template: names it")
    description: str = Field("", description="What the step does")
    parameters: list[TemplateParameter] = Field(
        default_factory=list, description="Values a project fills in; the body refers to them as #{Name}")
    step: Step = Field(description="The step body: any step kind (script, package, http-check, …) whose fields "
                                   "may use #{Parameter}; its name defaults to the template's name")

    @model_validator(mode="before")
    @classmethod
    def _body_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("step"), dict) and "name" not in data["step"]:
            data = {**data, "step": {"name": data.get("step_template") or "template", **data["step"]}}
        return data

    @model_validator(mode="after")
    def _unique_parameters(self) -> StepTemplate:
        seen: set[str] = set()
        for parameter in self.parameters:
            if parameter.name.casefold() in seen:
                raise ValueError(f"parameter {parameter.name!r} is listed twice")
            seen.add(parameter.name.casefold())
        return self
