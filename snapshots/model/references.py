"""Checks that span objects or files: names that must exist, names that must be unique.

Each problem carries the path of the offending field so the loader can point at its YAML line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from snapshots.errors import TemplateError
from snapshots.model.channel_checks import channel_problems
from snapshots.model.freezes import freeze_problems
from snapshots.model.infrastructure import Infrastructure
from snapshots.model.project import DeployLatestTrigger, Project, PromoteTrigger, ReleaseOnPushTrigger
from snapshots.model.runbook_checks import runbook_problems
from snapshots.model.service_checks import service_problems
from snapshots.model.steps import LoadBalancerStep, ParentStep, Step
from snapshots.model.template_steps import TemplateStep
from snapshots.octostache import referenced_names

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str


def _known(names: Iterable[str]) -> str:
    listed = sorted(names)
    return ", ".join(listed) if listed else "none"


def _duplicates(kind: str, key: str, names: Sequence[str]) -> list[Problem]:
    seen: dict[str, int] = {}
    problems = []
    for index, name in enumerate(names):
        folded = name.casefold()
        if folded in seen:
            problems.append(Problem((key, index, "name"),
                                    f"duplicate {kind} name {name!r} (also {key}[{seen[folded]}])"))
        else:
            seen[folded] = index
    return problems


def infrastructure_problems(infra: Infrastructure) -> list[Problem]:
    problems = []
    problems += _duplicates("environment", "environments", [e.name for e in infra.environments])
    problems += _duplicates("lifecycle", "lifecycles", [lc.name for lc in infra.lifecycles])
    problems += _duplicates("load balancer", "load_balancers", [lb.name for lb in infra.load_balancers])
    problems += _duplicates("target", "targets", [t.name for t in infra.targets])
    envs = {e.name for e in infra.environments}
    for i, lc in enumerate(infra.lifecycles):
        for j, phase in enumerate(lc.phases):
            for k, env in enumerate(phase.environments):
                if env not in envs:
                    problems.append(Problem(("lifecycles", i, "phases", j, "environments", k),
                                            f"unknown environment {env!r} (known: {_known(envs)})"))
    for i, target in enumerate(infra.targets):
        if target.environment not in envs:
            problems.append(Problem(("targets", i, "environment"),
                                    f"unknown environment {target.environment!r} (known: {_known(envs)})"))
    problems += [Problem(path, message) for path, message in freeze_problems(infra)]
    problems += _duplicates("machine policy", "machine_policies", [p.name for p in infra.machine_policies])
    problems += _duplicates("certificate", "certificates", [c.name for c in infra.certificates])
    for i, target in enumerate(infra.targets):
        if infra.machine_policy(target.machine_policy) is None:
            policies = {p.name for p in infra.machine_policies} | {"Default"}
            problems.append(Problem(("targets", i, "machine_policy"),
                                    f"unknown machine policy {target.machine_policy!r} (known: {_known(policies)})"))
    return problems


def _step_paths(project: Project) -> list[tuple[Path, Step | ParentStep | TemplateStep]]:
    out: list[tuple[Path, Step | ParentStep | TemplateStep]] = []
    for i, item in enumerate(project.process):
        out.append((("process", i), item))
        if isinstance(item, ParentStep):
            out.extend((("process", i, "steps", j), child) for j, child in enumerate(item.steps))
    return out


def project_problems(project: Project, infra: Infrastructure | None) -> list[Problem]:
    """Problems inside the project, and (when ``infra`` is given) references into the infrastructure."""
    problems: list[Problem] = []
    steps = _step_paths(project)
    seen: dict[str, Path] = {}
    for path, step in steps:
        folded = step.name.casefold()
        if folded in seen:
            where = ".".join(str(p) for p in seen[folded])
            problems.append(Problem((*path, "name"), f"duplicate step name {step.name!r} (also {where})"))
        else:
            seen[folded] = path
    packages = set(project.packages)
    if len(packages) != len(project.packages):
        problems.append(Problem(("packages",), "a package is listed twice"))
    for path, step in steps:
        package = getattr(step, "package", None)
        if package is not None and package not in packages:
            problems.append(Problem((*path, "package"),
                                    f"package {package!r} is not in the project's packages ({_known(packages)})"))
        top_level_leaf = len(path) == 2
        if top_level_leaf and not isinstance(step, ParentStep | TemplateStep) and step.run_on != "worker" \
                and not step.roles:
            problems.append(Problem((*path, "roles"), "a step that runs on targets needs roles"))
    if project.versioning.from_package and project.versioning.from_package not in packages:
        problems.append(Problem(("versioning", "from_package"),
                                f"package {project.versioning.from_package!r} is not in the project's packages"))
    problems += _duplicates("trigger", "triggers", [t.name for t in project.triggers])
    for i, trigger in enumerate(project.triggers):
        if isinstance(trigger, ReleaseOnPushTrigger) and trigger.package not in packages:
            problems.append(Problem(("triggers", i, "package"),
                                    f"package {trigger.package!r} is not in the project's packages "
                                    f"({_known(packages)})"))
    step_names = {s.name.casefold() for _, s in steps}
    for i, var in enumerate(project.variables):
        for k, name in enumerate(var.scope.step):
            if name.casefold() not in step_names:
                problems.append(Problem(("variables", i, "scope", "step", k), f"unknown step {name!r}"))
    problems += [Problem(path, message) for path, message in service_problems(project)]
    problems += [Problem(path, message) for path, message in channel_problems(project, infra)]
    problems += [Problem(path, message) for path, message in runbook_problems(project, infra)]
    if infra is not None:
        problems += _infrastructure_references(project, infra, steps)
        problems += _certificate_references(infra, steps)
    return problems


def _certificate_references(infra: Infrastructure,
                            steps: list[tuple[Path, Step | ParentStep | TemplateStep]]) -> list[Problem]:
    """A step's certificate must be one the infrastructure declares (issue 15)."""
    known = {c.name for c in infra.certificates}
    problems: list[Problem] = []
    for path, step in steps:
        for k, entry in enumerate(getattr(step, "certificates", None) or []):
            if entry.name not in known:
                problems.append(Problem((*path, "certificates", k, "name"),
                                        f"unknown certificate {entry.name!r} (known: {_known(known)})"))
        site = getattr(step, "site", None)
        for k, binding in enumerate(getattr(site, "bindings", None) or []):
            if binding.certificate and binding.certificate not in known:
                problems.append(Problem((*path, "site", "bindings", k, "certificate"),
                                        f"unknown certificate {binding.certificate!r} (known: {_known(known)})"))
    return problems


def _infrastructure_references(project: Project, infra: Infrastructure,
                               steps: list[tuple[Path, Step | ParentStep | TemplateStep]]) -> list[Problem]:
    problems: list[Problem] = []
    envs = {e.name for e in infra.environments}
    targets = {t.name for t in infra.targets}
    balancers = {lb.name for lb in infra.load_balancers}
    if infra.lifecycle(project.lifecycle) is None:
        problems.append(Problem(("lifecycle",), f"unknown lifecycle {project.lifecycle!r} "
                                                f"(known: {_known(lc.name for lc in infra.lifecycles)})"))
    for i, var in enumerate(project.variables):
        for k, env in enumerate(var.scope.environment):
            if env not in envs:
                problems.append(Problem(("variables", i, "scope", "environment", k),
                                        f"unknown environment {env!r} (known: {_known(envs)})"))
        for k, target in enumerate(var.scope.target):
            if target not in targets:
                problems.append(Problem(("variables", i, "scope", "target", k),
                                        f"unknown target {target!r} (known: {_known(targets)})"))
    for path, step in steps:
        for k, env in enumerate(getattr(step, "environments", None) or []):
            if env not in envs:
                problems.append(Problem((*path, "environments", k),
                                        f"unknown environment {env!r} (known: {_known(envs)})"))
        if isinstance(step, LoadBalancerStep) and step.balancer not in balancers:
            problems.append(Problem((*path, "balancer"),
                                    f"unknown load balancer {step.balancer!r} (known: {_known(balancers)})"))
    problems += _trigger_references(project, infra)
    return problems


def _trigger_references(project: Project, infra: Infrastructure) -> list[Problem]:
    """A scheduled trigger names environments of the project's lifecycle, and a promotion goes forward."""
    lifecycle = infra.lifecycle(project.lifecycle)
    if lifecycle is None:
        return []  # already reported
    order = [env for phase in lifecycle.phases for env in phase.environments]
    phase_of = {env: i for i, phase in enumerate(lifecycle.phases) for env in phase.environments}
    problems: list[Problem] = []

    def check(path: Path, env: str) -> bool:
        if env in order:
            return True
        problems.append(Problem(path, f"environment {env!r} is not in lifecycle {lifecycle.name!r} "
                                      f"({', '.join(order)})"))
        return False

    for i, trigger in enumerate(project.triggers):
        if isinstance(trigger, DeployLatestTrigger):
            check(("triggers", i, "environment"), trigger.environment)
        elif isinstance(trigger, PromoteTrigger):
            known = check(("triggers", i, "from"), trigger.from_) & check(("triggers", i, "to"), trigger.to)
            if known and trigger.from_ == trigger.to:
                problems.append(Problem(("triggers", i, "to"), "a promotion needs two different environments"))
            elif known and phase_of[trigger.to] < phase_of[trigger.from_]:
                problems.append(Problem(("triggers", i, "to"), f"promotes backwards: {trigger.to} comes before "
                                                               f"{trigger.from_} in lifecycle {lifecycle.name!r}"))
    return problems


# -- templates: every #{...} parsed, variable cycles found, before anything is stored or frozen ---------------

_SCRIPT_REFERENCE = re.compile(r"(?<!#)#\{\s*([^}\s|]*)[^}]*\}")
_NOT_TEMPLATES = {"name", "kind", "steps", "script", "syntax"}
"""Step fields that are never rendered (a script body is sent as written; its values arrive as data)."""


@dataclass(frozen=True)
class TemplateValue:
    """A variable's value as text, with the path of its YAML field (``("variables", 3, "value")``)."""

    path: Path
    name: str
    text: str | None
    sensitive: bool = False


def template_problems(process: list[dict[str, Any]], values: list[TemplateValue]) -> list[Problem]:
    """Every ``#{...}`` in variable values and step fields parsed (a malformed block, an unknown filter), variable
    cycles (``#{A}`` → ``#{B}`` → ``#{A}``) found, and ``#{...}`` in a script body refused with the way a script
    reads a value. ``process`` is the dumped process (the stored form), so a release checks what it freezes."""
    problems: list[Problem] = []
    graph: dict[str, set[str]] = {}
    first_path: dict[str, tuple[Path, str]] = {}
    for value in values:
        key = value.name.lower()
        first_path.setdefault(key, (value.path, value.name))
        if not value.text or "#{" not in value.text:
            continue
        try:
            names = referenced_names(value.text, include_optional=True)
        except TemplateError as exc:
            detail = "its sensitive value does not parse as a template (its text is not shown)" if value.sensitive \
                else f"its value does not parse as a template: {exc}"
            problems.append(Problem(value.path, f"variable {value.name!r}: {detail}"))
            continue
        graph.setdefault(key, set()).update(n.lower() for n in names)
    cycle = _first_cycle(graph)
    if cycle:
        path, name = first_path[cycle[0]]
        shown = " -> ".join(first_path[k][1] for k in cycle) + f" -> {name}"
        problems.append(Problem(path, f"variable {name!r} refers to itself ({shown})"))
    for index, item in enumerate(process):
        problems += _step_template_problems(("process", index), item)
        for child_index, child in enumerate(item.get("steps") or []):
            problems += _step_template_problems(("process", index, "steps", child_index), child)
    return problems


def _first_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """The first cycle in a name → referenced names graph (iterative depth-first search), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        iterators = [iter(sorted(graph.get(start, ())))]
        state[start] = 1
        while iterators:
            nxt = next(iterators[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iterators.pop()
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt):]
            if nxt in graph and not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iterators.append(iter(sorted(graph[nxt])))
    return None


def _step_template_problems(path: Path, step: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    name = step.get("name", "?")
    script = step.get("script")
    if isinstance(script, str) and (match := _SCRIPT_REFERENCE.search(script)):
        variable = match.group(1) or "NAME"
        how = f"$OctopusParameters['{variable}']" if step.get("syntax") == "powershell" else f"ferry_var {variable}"
        line = script.count("\n", 0, match.start()) + 1
        problems.append(Problem((*path, "script"), f"step {name!r}: {match.group(0)} in the script body (line {line}) "
                                                   f"is not substituted: read the value as data with {how} "
                                                   "(or write ##{ for a literal #{)"))
    for field_path, text in _strings(step, ()):
        if "#{" not in text:
            continue
        try:
            referenced_names(text, include_optional=True)
        except TemplateError as exc:
            dotted = ".".join(str(p) for p in field_path).replace(".[", "[")
            problems.append(Problem((*path, *field_path), f"step {name!r} {dotted}: {exc}"))
    return problems


def _strings(value: Any, at: Path) -> list[tuple[Path, str]]:
    """Every string inside a dumped step, with its path (the step's own name, kind, children and script left out)."""
    if isinstance(value, str):
        return [(at, value)]
    found: list[tuple[Path, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not at and key in _NOT_TEMPLATES:
                continue
            found += _strings(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _strings(item, (*at, index))
    return found
