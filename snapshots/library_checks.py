"""``ferry apply``'s checks of a project that includes library variable sets or uses step templates: unknown
names, missing or unknown parameters, and then the same checks a plain project gets, run on the expanded
process and variables — so a mistake is reported at apply time, at the project's own YAML line, and not
first at ``release create``."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from snapshots.library import Library, expand, uses_library
from snapshots.model.documents import LoadedProject
from snapshots.model.infrastructure import Infrastructure
from snapshots.model.references import Problem, TemplateValue, project_problems, template_problems
from snapshots.model.template_steps import ProjectProcessItem
from snapshots.variables.scopes import ambiguities, step_names, system_name_clashes

_PROCESS = TypeAdapter(list[ProjectProcessItem])


def problems(item: LoadedProject, infra: Infrastructure | None, library: Library) -> list[Problem]:
    document = item.model.model_dump(mode="json")
    if not uses_library(document):
        return []
    own = len(document["variables"])
    expanded = expand(document, library)
    if expanded.problems:
        return expanded.problems
    model = item.model.model_copy(update={"process": _PROCESS.validate_python(expanded.process)})
    found = project_problems(model, infra)
    variables = expanded.variables
    steps = step_names(expanded.process)
    clashes = [(i, message) for i, message in system_name_clashes(variables)]
    clashes += [(b, message) for _, b, message in ambiguities(variables, infra, steps)]
    found += [_where(i, own, variables[i], message) for i, message in sorted(clashes)]
    values = [TemplateValue(("variables", i, "value"), var["name"], _text(item, i, var, library), var["sensitive"])
              for i, var in enumerate(variables)]
    found += [_relocate(p, own, variables) for p in template_problems(expanded.process, values)]
    return found


def _text(item: LoadedProject, index: int, var: dict[str, Any], library: Library) -> str | None:
    if index in item.values:
        return item.values[index]
    if var.get("ciphertext"):
        return library.vault.decrypt(var["ciphertext"])
    return var.get("value")


def _where(index: int, own: int, var: dict[str, Any], message: str) -> Problem:
    """A problem with a variable the project did not write is reported at ``include`` (a set's) or at the
    template step (a parameter), naming where the variable came from."""
    if index < own:
        return Problem(("variables", index, "name"), message)
    return Problem(("include",) if str(var.get("source", "")).startswith("library") else ("process",),
                   f"{var.get('source')}: {message}")


def _relocate(problem: Problem, own: int, variables: list[dict[str, Any]]) -> Problem:
    if problem.path[:1] == ("variables",) and isinstance(problem.path[1], int) and problem.path[1] >= own:
        return _where(problem.path[1], own, variables[problem.path[1]], problem.message)
    return problem
