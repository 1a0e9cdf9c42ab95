"""Checks that span objects or files: names that must exist, names that must be unique.

Each problem carries the path of the offending field so the loader can point at its YAML line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from snapshots.model.infrastructure import Infrastructure
from snapshots.model.project import DeployLatestTrigger, Project, PromoteTrigger, ReleaseOnPushTrigger
from snapshots.model.steps import LoadBalancerStep, ParentStep, Step

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
    return problems


def _step_paths(project: Project) -> list[tuple[Path, Step | ParentStep]]:
    out: list[tuple[Path, Step | ParentStep]] = []
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
        if top_level_leaf and not isinstance(step, ParentStep) and step.run_on != "worker" and not step.roles:
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
    if infra is not None:
        problems += _infrastructure_references(project, infra, steps)
    return problems


def _infrastructure_references(project: Project, infra: Infrastructure,
                               steps: list[tuple[Path, Step | ParentStep]]) -> list[Problem]:
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
        for k, env in enumerate(getattr(step, "environments", [])):
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
