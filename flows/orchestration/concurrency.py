"""Prefect global concurrency limits that keep deployments apart.

``ferry-env-<project>-<environment>`` (1 slot): a second deployment of a project to an environment waits
for the first. ``ferry-target-<target>`` (1 slot each): two deployments never work on one server at once —
a deployment takes the slots of all its targets in one all-or-nothing call (no deadlock between two
deployments wanting overlapping targets, and one round trip instead of one per target: measured, a
per-target acquisition cost ~60% of a small step's time).
ferry creates the limits it needs and acquires them with ``strict=True``, so a missing limit is an error
instead of silent parallelism.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency._leases import maintain_concurrency_lease
from prefect.concurrency._sync import acquire_concurrency_slots_with_lease, release_concurrency_slots_with_lease
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

LEASE_SECONDS = 60  # Prefect's minimum: a crashed holder frees its slot after at most this long
_ensured: set[str] = set()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def environment_limit(project: str, environment: str) -> str:
    return f"ferry-env-{_slug(project)}-{_slug(environment)}"


def target_limit(target: str) -> str:
    return f"ferry-target-{_slug(target)}"


PAGE = 200  # the most a Prefect server returns per page by default


def ensure_limits(names: list[str]) -> None:
    """Create (or keep) each limit with one slot. The existing limits are read in one paged listing rather
    than one request per name (a deployment to 32 targets needs 33 limits: 33 round trips before any work)."""
    missing = [n for n in names if n not in _ensured]
    if not missing:
        return
    with get_client(sync_client=True) as client:
        existing: dict[str, int] = {}
        offset = 0
        while True:
            page = client.read_global_concurrency_limits(limit=PAGE, offset=offset)
            existing.update({found.name: found.limit for found in page})
            if len(page) < PAGE:
                break
            offset += PAGE
        for name in missing:
            if name not in existing:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
                except ObjectAlreadyExists:  # another deployment created it a moment ago
                    client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=1))
            elif existing[name] != 1:
                client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=1))
            _ensured.add(name)


def holders(name: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots


@contextmanager
def slot(*names: str, on_lease: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold one slot of every limit in ``names`` at once (waiting as long as it takes). ``on_lease`` gets the
    lease's id as soon as it is held, so the deployment record can name it: a run that finds this process
    dead (no heartbeat) frees the slots at once with ``release_lease`` instead of waiting out the lease."""
    if not names:
        yield
        return
    if on_lease is None:
        with concurrency(list(names), occupy=1, strict=True, lease_duration=LEASE_SECONDS):
            yield
        return
    acquired = acquire_concurrency_slots_with_lease(list(names), 1, strict=True, lease_duration=LEASE_SECONDS)
    try:
        on_lease(str(acquired.lease_id))
        with maintain_concurrency_lease(acquired.lease_id, LEASE_SECONDS, raise_on_lease_renewal_failure=True):
            yield
    finally:
        release_concurrency_slots_with_lease(acquired.lease_id)


def release_lease(lease_id: str) -> bool:
    """Free the slots a dead process held (False when the lease is already gone: expired or released)."""
    with get_client(sync_client=True) as client:
        try:
            client.release_concurrency_slots_with_lease(UUID(lease_id))
        except ObjectNotFound:
            return False
    return True
