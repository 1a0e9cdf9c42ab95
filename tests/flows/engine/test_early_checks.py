"""When HAProxy's fresh health checks may start before the ``add`` step: only right after a smoke test that
passed, with nothing but an unconditional ``add`` left before traffic (the real HAProxy side is covered by
tests/steps/kinds/test_haproxy.py and the zero-failed-requests rollout in tests/end_to_end/test_rolling_linux.py)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from flows.engine.early_checks import add_after_smoke_test
from snapshots.model.steps import Step

STEP: TypeAdapter[Any] = TypeAdapter(Step)
REMOVE = {"name": "Remove", "kind": "load-balancer", "balancer": "lb", "action": "remove"}
INSTALL = {"name": "Install", "kind": "script", "script": "true"}
SMOKE = {"name": "Smoke test", "kind": "http-check", "url": "http://#{Machine.Hostname}:8080/health"}
ADD = {"name": "Add", "kind": "load-balancer", "balancer": "lb", "action": "add"}


def steps(*specs: dict[str, Any]) -> list[Any]:
    return [STEP.validate_python(s) for s in specs]


def test_a_smoke_test_right_before_add_starts_the_checks() -> None:
    children = steps(REMOVE, INSTALL, SMOKE, ADD)
    assert add_after_smoke_test(children, 2, lambda s: None) is children[3]
    assert add_after_smoke_test(children, 1, lambda s: None) is None  # the install is no smoke test


def test_a_step_between_smoke_test_and_add_could_change_the_app() -> None:
    children = steps(REMOVE, SMOKE, INSTALL, ADD)
    assert add_after_smoke_test(children, 1, lambda s: None) is None
    skipped = {"Install"}  # a step that will not run (disabled, other environment, --skip) is no obstacle
    assert add_after_smoke_test(children, 1, lambda s: "skipped" if s.name in skipped else None) is children[3]


def test_a_conditional_add_or_none_at_all_starts_nothing() -> None:
    assert add_after_smoke_test(steps(SMOKE, {**ADD, "condition": "always"}), 0, lambda s: None) is None
    assert add_after_smoke_test(steps(SMOKE, REMOVE), 0, lambda s: None) is None
    assert add_after_smoke_test(steps(INSTALL, SMOKE), 1, lambda s: None) is None
