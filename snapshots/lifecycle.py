"""Lifecycle progression: a release may enter a phase only when the phases before it are satisfied."""

from __future__ import annotations

from snapshots.errors import LifecycleError
from snapshots.model import Lifecycle


def check_progression(lifecycle: Lifecycle, version: str, environment: str, reached: set[str]) -> None:
    """Raise LifecycleError unless ``environment`` may receive release ``version``.

    ``reached`` holds the environments this release was deployed to successfully. Redeploying to one of
    them is always allowed; the first phase is always open; a later phase opens when every earlier phase
    is optional or has at least its required number of environments reached.
    """
    index = next((i for i, p in enumerate(lifecycle.phases) if environment in p.environments), None)
    if index is None:
        names = [e for p in lifecycle.phases for e in p.environments]
        raise LifecycleError(f"environment {environment!r} is not in lifecycle {lifecycle.name!r} "
                             f"({', '.join(names)})")
    if environment in reached:
        return
    for phase in lifecycle.phases[:index]:
        done = sorted(set(phase.environments) & reached)
        needed = phase.required_count
        if len(done) < needed:
            missing = [e for e in phase.environments if e not in reached]
            what = "all of" if phase.minimum is None else f"at least {needed} of"
            raise LifecycleError(
                f"release {version} cannot be deployed to {environment} yet: lifecycle {lifecycle.name!r} "
                f"phase {phase.name!r} needs {what} {', '.join(phase.environments)} first "
                f"(not yet deployed to: {', '.join(missing)})")


def next_auto_deploy(lifecycle: Lifecycle, reached: set[str]) -> list[str]:
    """Environments to deploy automatically now: the auto-deploy environments of the first phase that is
    open (all earlier phases satisfied) and not yet complete."""
    for phase in lifecycle.phases:
        auto = phase.environments if phase.auto_deploy is True else (phase.auto_deploy or [])
        pending = [e for e in auto if e not in reached]
        if pending:
            return pending
        if len(set(phase.environments) & reached) < phase.required_count:
            return []
    return []
