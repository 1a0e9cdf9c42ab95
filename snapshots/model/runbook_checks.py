"""Checks on a project's runbooks that ``ferry apply`` makes (the runbook's own step names, packages, roles,
and — with the infrastructure — its environments and load balancers), each with the path of the field so the
error names its YAML line. ``snapshots.model.references`` adds them to the project's problems."""

from __future__ import annotations

from collections.abc import Iterable

from snapshots.model.infrastructure import Infrastructure
from snapshots.model.project import Project
from snapshots.model.runbooks import Runbook
from snapshots.model.steps import LoadBalancerStep, ParentStep, Step

Path = tuple[str | int, ...]
Found = list[tuple[Path, str]]


def _known(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "none"


def runbook_steps(runbook: Runbook, at: Path) -> list[tuple[Path, Step | ParentStep]]:
    """Every step of a runbook's process (parents and their children) with its path under ``at``."""
    out: list[tuple[Path, Step | ParentStep]] = []
    for j, item in enumerate(runbook.process):
        out.append(((*at, "process", j), item))
        if isinstance(item, ParentStep):
            out.extend(((*at, "process", j, "steps", k), child) for k, child in enumerate(item.steps))
    return out


def runbook_problems(project: Project, infra: Infrastructure | None) -> Found:
    problems: Found = []
    seen: dict[str, int] = {}
    for i, runbook in enumerate(project.runbooks):
        folded = runbook.name.casefold()
        if folded in seen:
            problems.append((("runbooks", i, "name"),
                             f"duplicate runbook name {runbook.name!r} (also runbooks[{seen[folded]}])"))
        else:
            seen[folded] = i
        problems += _inside(project, i, runbook)
        if infra is not None:
            problems += _references(infra, i, runbook)
    return problems


def _inside(project: Project, i: int, runbook: Runbook) -> Found:
    problems: Found = []
    steps = runbook_steps(runbook, ("runbooks", i))
    names: dict[str, Path] = {}
    packages = set(project.packages)
    for path, step in steps:
        folded = step.name.casefold()
        if folded in names:
            where = ".".join(str(p) for p in names[folded])
            problems.append(((*path, "name"), f"duplicate step name {step.name!r} in runbook {runbook.name!r} "
                                              f"(also {where})"))
        else:
            names[folded] = path
        package = getattr(step, "package", None)
        if package is not None and package not in packages:
            problems.append(((*path, "package"),
                             f"package {package!r} is not in the project's packages ({_known(packages)})"))
        top_level_leaf = len(path) == 4
        if top_level_leaf and not isinstance(step, ParentStep) and step.run_on != "worker" and not step.roles:
            problems.append(((*path, "roles"), "a step that runs on targets needs roles"))
    return problems


def _references(infra: Infrastructure, i: int, runbook: Runbook) -> Found:
    problems: Found = []
    envs = {e.name for e in infra.environments}
    balancers = {lb.name for lb in infra.load_balancers}
    for k, env in enumerate(runbook.environments):
        if env not in envs:
            problems.append((("runbooks", i, "environments", k),
                             f"unknown environment {env!r} (known: {_known(envs)})"))
    for path, step in runbook_steps(runbook, ("runbooks", i)):
        for k, env in enumerate(getattr(step, "environments", [])):
            if env not in envs:
                problems.append(((*path, "environments", k), f"unknown environment {env!r} (known: {_known(envs)})"))
        if isinstance(step, LoadBalancerStep) and step.balancer not in balancers:
            problems.append(((*path, "balancer"),
                             f"unknown load balancer {step.balancer!r} (known: {_known(balancers)})"))
    return problems
