"""min_healthy counted in the balancer: the guard's arithmetic with ``roll``, against a stand-in balancer whose
servers go out while their target runs (the real HAProxy path is covered by tests/end_to_end/test_rolling_linux.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

from flows.engine.balancer_guard import InServiceGuard
from flows.engine.rolling import FAILED, SUCCESS, Outcome, roll
from snapshots.model import Target


def target(name: str) -> Target:
    return Target.model_validate({"name": name, "environment": "Production", "roles": ["web"],
                                  "transport": {"kind": "local", "root": f"/tmp/{name}"}})


class Balancer:
    """Servers UP unless taken out; ``servers_up`` is all the guard asks of HAProxy."""

    def __init__(self, names: list[str], down: set[str] | None = None) -> None:
        self.up = set(names) - (down or set())
        self.lock = threading.Lock()
        self.fewest = len(self.up)

    def servers_up(self, backend: str) -> set[str]:
        with self.lock:
            return set(self.up)

    def out(self, name: str) -> None:
        with self.lock:
            self.up.discard(name)
            self.fewest = min(self.fewest, len(self.up))

    def back(self, name: str) -> None:
        with self.lock:
            self.up.add(name)


def guard_over(balancer: Balancer, targets: list[Target], scope: list[Target], min_healthy: int,
               log: list[str]) -> InServiceGuard:
    return InServiceGuard(haproxy=balancer, balancer="web-lb", backend="octofx",  # type: ignore[arg-type]
                          servers={t.name: t.name for t in targets}, scope={t.name for t in scope},
                          min_healthy=min_healthy, log=log.append)


def deploy(balancer: Balancer, fail: set[str] | None = None) -> Any:
    def run(t: Target, start: int) -> Outcome:
        balancer.out(t.name)
        time.sleep(0.05)
        if t.name in (fail or set()):
            return Outcome(FAILED, 1, "broken")  # left out of the balancer, as a failed step leaves it
        balancer.back(t.name)
        return Outcome(SUCCESS)
    return run


def test_min_healthy_holds_in_the_balancer_while_rolling() -> None:
    targets = [target(f"prod-0{i}") for i in range(1, 5)]
    lb = Balancer([t.name for t in targets])
    guard = guard_over(lb, targets, targets, 2, [])
    result = roll(guard.order(targets), guard.wrap(deploy(lb)), window=2, max_out_of_service=2,
                  in_service_deficit=guard.deficit)
    assert result.failed == 0 and not result.not_started
    assert lb.fewest == 2


def test_a_server_already_down_elsewhere_narrows_the_window() -> None:
    role = [target(f"prod-0{i}") for i in range(1, 5)]
    lb = Balancer([t.name for t in role], down={"prod-04"})
    log: list[str] = []
    guard = guard_over(lb, role, role[:3], 2, log)  # prod-04 is not in this rollout (--exclude-target) and is DOWN
    result = roll(guard.order(role[:3]), guard.wrap(deploy(lb)), window=2, max_out_of_service=2,
                  in_service_deficit=guard.deficit)
    assert not result.not_started and lb.fewest == 2  # one at a time: never fewer than 2 UP
    assert any("prod-04 out of service in web-lb" in line for line in log)


def test_targets_already_out_go_first_and_a_first_deployment_can_start() -> None:
    role = [target(f"prod-0{i}") for i in range(1, 5)]
    lb = Balancer([t.name for t in role], down={"prod-03"})
    guard = guard_over(lb, role, role, 3, [])
    assert [t.name for t in guard.order(role)] == ["prod-03", "prod-01", "prod-02", "prod-04"]
    nothing_up = Balancer([t.name for t in role], down={t.name for t in role})
    guard = guard_over(nothing_up, role, role, 3, [])
    result = roll(guard.order(role), guard.wrap(deploy(nothing_up)), window=1, max_out_of_service=1,
                  in_service_deficit=guard.deficit)
    assert result.failed == 0 and not result.not_started and nothing_up.up == {t.name for t in role}


def test_a_failed_target_left_out_stops_further_starts_unless_it_is_retried() -> None:
    role = [target(f"prod-0{i}") for i in range(1, 5)]
    lb = Balancer([t.name for t in role])
    guard = guard_over(lb, role, role, 3, [])
    result = roll(guard.order(role), guard.wrap(deploy(lb, fail={"prod-02"})), window=1, max_failures=5,
                  max_out_of_service=1, in_service_deficit=guard.deficit)
    assert result.failed == 1 and [t.name for t in result.not_started] == ["prod-03", "prod-04"]
    assert guard.blocked and "prod-02 out of service" in guard.blocked

    lb = Balancer([t.name for t in role])
    guard = guard_over(lb, role, role, 3, [])
    broken = {"prod-02"}
    answers: list[str] = []

    def guidance(t: Target, outcome: Outcome) -> str:
        broken.clear()  # a person fixes it, then answers retry
        answers.append(t.name)
        return "retry"

    result = roll(guard.order(role), guard.wrap(deploy(lb, fail=broken)), window=1, max_out_of_service=1,
                  in_service_deficit=guard.deficit, guidance=guard.wrap_guidance(guidance))
    assert answers == ["prod-02"] and result.failed == 0 and not result.not_started
    assert lb.up == {t.name for t in role}
