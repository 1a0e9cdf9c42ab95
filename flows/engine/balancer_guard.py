"""``min_healthy`` measured in the load balancer: when a rolling step takes its targets out of a balancer,
"in service" means what HAProxy's own health checks say, not what ferry believes.

The rollout's sliding window already caps how many targets ferry takes out at once (``total - min_healthy``).
This guard adds what ferry did not do itself: a server of the step's role that is DOWN, in MAINT or left out
by an earlier failure counts against that cap, so the next target only starts when enough servers are UP.

Targets still waiting for their turn that are already out of service are moved to the front: updating
them costs no capacity (and on a first deployment nothing is UP yet, so nothing could be taken out).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flows.engine.rolling import FAILED, Outcome
from snapshots.errors import FerryError
from snapshots.model import Target
from snapshots.model.steps import LoadBalancerStep, Step
from steps.kinds.haproxy import HAProxy, LoadBalancerError
from steps.kinds.load_balancer import balancer_client


@dataclass
class InServiceGuard:
    """Counts, for ``roll``'s ``in_service_deficit`` hook, the role's servers out of service in the balancer
    that are not running in this rollout and not about to be retried."""

    haproxy: HAProxy
    balancer: str
    backend: str
    servers: dict[str, str]
    """target name → its server name in the backend (every target of the role in the environment)."""
    scope: set[str]
    """targets this rollout deploys to (the others only count when they are out of service)."""
    min_healthy: int
    log: Callable[[str], None]
    running: set[str] = field(default_factory=set)
    started: set[str] = field(default_factory=set)
    retrying: set[str] = field(default_factory=set)
    blocked: str | None = None
    _last: tuple[str, ...] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _up(self) -> set[str]:
        try:
            return self.haproxy.servers_up(self.backend)
        except LoadBalancerError as exc:
            raise FerryError(f"min_healthy: cannot count the servers UP in {self.balancer}: {exc}") from exc

    def order(self, targets: Sequence[Target]) -> list[Target]:
        """Targets already out of service first (stable otherwise)."""
        up = self._up()
        return sorted(targets, key=lambda t: self.servers.get(t.name) in up)

    def deficit(self) -> int:
        up = self._up()
        with self._lock:
            out = tuple(sorted(
                name for name, server in self.servers.items()
                if server not in up and name not in self.running and name not in self.retrying
                and (name in self.started or name not in self.scope)))
        if out != self._last:
            self._last = out
            if out:
                in_service = len(self.servers) - len(out) - len(self.running)
                self.blocked = (f"min_healthy {self.min_healthy}: {', '.join(out)} out of service in "
                                f"{self.balancer} ({self.backend}); {in_service} of {len(self.servers)} in service")
                self.log(self.blocked)
            else:
                self.blocked = None
        return len(out)

    def wrap(self, run: Callable[[Target, int], Outcome]) -> Callable[[Target, int], Outcome]:
        def guarded(target: Target, start: int) -> Outcome:
            with self._lock:
                self.running.add(target.name)
                self.started.add(target.name)
                self.retrying.discard(target.name)
            try:
                return run(target, start)
            finally:
                with self._lock:
                    self.running.discard(target.name)
        return guarded

    def wrap_guidance(self, guidance: Callable[[Target, Outcome], str] | None
                      ) -> Callable[[Target, Outcome], str] | None:
        """A target answered ``retry``/``ignore`` goes back in line: its own absence must not block it."""
        if guidance is None:
            return None

        def answered(target: Target, outcome: Outcome) -> str:
            answer = guidance(target, outcome)
            if answer in ("retry", "ignore") and outcome.status == FAILED:
                with self._lock:
                    self.retrying.add(target.name)
            return answer
        return answered


def guard_for(unit_children: Sequence[Step], shared: dict[str, Any], role_targets: Sequence[Target],
              targets: Sequence[Target], min_healthy: int, server_of: Callable[[LoadBalancerStep, Target], str],
              log: Callable[[str], None]) -> InServiceGuard | None:
    """A guard when the rolling step's children take targets out of a load balancer (and min_healthy is set)."""
    if not min_healthy:
        return None
    lb_step = next((c for c in unit_children if isinstance(c, LoadBalancerStep) and c.enabled
                    and c.action == "remove"), None)
    if lb_step is None:
        return None
    model, haproxy = balancer_client(shared, lb_step.balancer, step=lb_step.name)
    return InServiceGuard(haproxy=haproxy, balancer=model.name, backend=model.backend,
                          servers={t.name: server_of(lb_step, t) for t in role_targets},
                          scope={t.name for t in targets}, min_healthy=min_healthy, log=log)


__all__ = ["InServiceGuard", "guard_for"]
