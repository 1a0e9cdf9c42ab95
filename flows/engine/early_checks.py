"""Fresh health checks started as soon as the new version answers, so the ``add`` step only confirms them.

When a target's smoke test (an ``http-check`` step) has passed and the next step that will run on it is an
unconditional ``load-balancer`` ``add``, nothing can change the app between the two: HAProxy's checks of the
server start right then — DRAIN with its health forced down, no new traffic — instead of when ``add``'s task
begins. ``add`` then finds them under way (or passed) and only waits for them and sets READY.

Only that exact shape qualifies: a step in between (which could restart or break the app), a conditional
``add``, or a server that is not in MAINT leaves everything to ``add``, as before. A failure here is only
logged: ``add`` does the whole job itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from snapshots.errors import FerryError
from snapshots.model import Target
from snapshots.model.steps import HttpCheckStep, LoadBalancerStep, Step
from steps.kinds.load_balancer import balancer_client


def add_after_smoke_test(children: Sequence[Step], index: int,
                         skip_reason: Callable[[Step], str | None]) -> LoadBalancerStep | None:
    """The ``add`` step to start checks for once ``children[index]`` passed, or None when it is not a smoke
    test directly followed (skipped steps aside) by an unconditional ``add``."""
    if not isinstance(children[index], HttpCheckStep):
        return None
    for child in children[index + 1:]:
        if skip_reason(child) is not None:
            continue
        if isinstance(child, LoadBalancerStep) and child.action == "add" and child.condition == "success":
            return child
        return None
    return None


def start_after_smoke_test(children: Sequence[Step], index: int, target: Target, *, shared: dict[str, Any],
                           skip_reason: Callable[[Step], str | None],
                           server_of: Callable[[LoadBalancerStep, Target], str],
                           log: Callable[[str], None]) -> bool:
    """Start the fresh checks of ``target``'s server when ``children[index]`` (just passed) allows; True if
    they were started."""
    add = add_after_smoke_test(children, index, skip_reason)
    if add is None:
        return False
    try:
        model, haproxy = balancer_client(shared, add.balancer, step=add.name, target=target.name)
        server = server_of(add, target)
        started = haproxy.start_checks_early(model.backend, server)
    except FerryError as exc:  # add will try again, and say what is wrong if it still is
        log(f"{target.name}: health checks not started early ({exc}); {add.name!r} starts them")
        return False
    if started:
        log(f"{target.name}: smoke test passed; HAProxy's fresh health checks of {model.backend}/{server} started "
            f"(DRAIN, health down: no traffic until {add.name!r})")
    return started


__all__ = ["add_after_smoke_test", "start_after_smoke_test"]
