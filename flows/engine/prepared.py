"""The plan ``check_and_record`` prepared for the deployment it just recorded, kept so a flow run in the same
process (``ferry deploy --wait`` without ``ferry serve``) does not prepare it a second time: preparing loads
the release, verifies its digest, decrypts and evaluates its variables (~0.1–0.2 s on a loaded machine).

Only the most recent plan is kept, and taken at most once: the server API records deployments that run in
other processes, whose plans must not pile up here."""

from __future__ import annotations

import threading

from flows.engine.plan import DeploymentPlan

_lock = threading.Lock()
_last: dict[int, DeploymentPlan] = {}


def remember(deployment_id: int, plan: DeploymentPlan) -> None:
    """Keep ``plan`` as the one prepared for ``deployment_id`` (forgetting any other)."""
    with _lock:
        _last.clear()
        _last[deployment_id] = plan


def take(deployment_id: int | None) -> DeploymentPlan | None:
    """The plan prepared in this process for ``deployment_id``, once; None when there is none."""
    if deployment_id is None:
        return None
    with _lock:
        return _last.pop(deployment_id, None)
