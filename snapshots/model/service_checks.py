"""Checks on the service step kinds that ``ferry apply`` makes beyond each field's own shape: a Windows Service
account password refers to a *sensitive* variable, and a systemd-service unit template uses only names that will
exist (the project's variables, system variables, the step's ``Service.*``). ``snapshots.model.references`` adds
them to the project's problems, each with the path of its field so the error names the YAML line.

Names that may come from an included library variable set cannot be judged here, so with ``include:`` an unknown
name is left to the deployment (which fails on it in strict mode)."""

from __future__ import annotations

from typing import Any

from snapshots.errors import TemplateError
from snapshots.model.project import Project
from snapshots.model.steps import ParentStep, SystemdServiceStep, WindowsServiceStep
from snapshots.octostache import referenced_names
from snapshots.variables.scopes import is_system_name

Path = tuple[str | int, ...]
Found = list[tuple[Path, str]]
SERVICE_NAMES = ("Service.Name", "Service.Description", "Service.ExecStart", "Service.WorkingDirectory",
                 "Service.Current", "Service.User")
"""What a unit template gets from the step itself."""


def _steps(project: Project) -> list[tuple[Path, Any]]:
    out: list[tuple[Path, Any]] = []
    for i, item in enumerate(project.process):
        out.append((("process", i), item))
        if isinstance(item, ParentStep):
            out.extend((("process", i, "steps", j), child) for j, child in enumerate(item.steps))
    return out


def _names(text: str) -> set[str]:
    try:
        return set(referenced_names(text, include_optional=True))
    except TemplateError:
        return set()  # reported by the template checks


def service_problems(project: Project) -> Found:
    variables: dict[str, bool] = {}
    for variable in project.variables:
        key = variable.name.casefold()
        variables[key] = variables.get(key, False) or bool(variable.sensitive)
    libraries = bool(project.include)
    found: Found = []
    for path, step in _steps(project):
        if isinstance(step, WindowsServiceStep) and step.password:
            for name in sorted(_names(step.password)):
                if name.casefold() in variables and not variables[name.casefold()]:
                    found.append(((*path, "password"), f"step {step.name!r}: password refers to {name!r}, which is "
                                                       "not a sensitive variable (mark it sensitive: true)"))
                elif name.casefold() not in variables and not libraries:
                    found.append(((*path, "password"), f"step {step.name!r}: password refers to {name!r}, which the "
                                                       "project does not define (a sensitive variable is needed)"))
        if isinstance(step, SystemdServiceStep) and step.unit_template:
            known = {n.casefold() for n in SERVICE_NAMES}
            for name in sorted(_names(step.unit_template)):
                folded = name.casefold()
                if folded in known or folded in variables or is_system_name(name) or libraries:
                    continue
                found.append(((*path, "unit_template"),
                              f"step {step.name!r}: unit_template uses #{{{name}}}, which is neither a project "
                              f"variable, a system variable nor one of {', '.join(SERVICE_NAMES)}"))
    return found
