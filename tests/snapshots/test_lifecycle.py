"""Lifecycle progression on its own: which environment a release may enter next, and what auto-deploys."""

from __future__ import annotations

import pytest

from snapshots.errors import LifecycleError
from snapshots.lifecycle import check_progression, next_auto_deploy
from snapshots.model import Lifecycle


def lifecycle(*phases: dict) -> Lifecycle:
    return Lifecycle.model_validate({"name": "Default", "phases": list(phases)})


DEFAULT = lifecycle({"name": "Dev", "environments": ["Development"], "auto_deploy": True},
                    {"name": "Test", "environments": ["Test-A", "Test-B"], "minimum": 1},
                    {"name": "Production", "environments": ["Production"]})


def test_the_first_phase_is_always_open() -> None:
    check_progression(DEFAULT, "1.0.0", "Development", set())


def test_skipping_a_phase_is_refused_with_what_is_missing() -> None:
    with pytest.raises(LifecycleError) as caught:
        check_progression(DEFAULT, "1.0.0", "Test-A", set())
    assert str(caught.value) == ("release 1.0.0 cannot be deployed to Test-A yet: lifecycle 'Default' phase 'Dev' "
                                 "needs all of Development first (not yet deployed to: Development)")


def test_a_minimum_counts_environments_reached_in_the_phase() -> None:
    with pytest.raises(LifecycleError) as caught:
        check_progression(DEFAULT, "1.0.0", "Production", {"Development"})
    assert str(caught.value) == ("release 1.0.0 cannot be deployed to Production yet: lifecycle 'Default' phase "
                                 "'Test' needs at least 1 of Test-A, Test-B first "
                                 "(not yet deployed to: Test-A, Test-B)")
    check_progression(DEFAULT, "1.0.0", "Production", {"Development", "Test-B"})  # one of two is enough


def test_redeploying_to_a_reached_environment_is_always_allowed() -> None:
    # e.g. Production was reached, then a Test environment was added to the lifecycle
    check_progression(DEFAULT, "1.0.0", "Production", {"Production"})


def test_an_optional_phase_may_be_passed_over() -> None:
    lc = lifecycle({"name": "Dev", "environments": ["Dev"]},
                   {"name": "QA", "environments": ["QA"], "optional": True},
                   {"name": "Prod", "environments": ["Prod"]})
    check_progression(lc, "2.0.0", "Prod", {"Dev"})
    with pytest.raises(LifecycleError, match="phase 'Dev' needs all of Dev first"):
        check_progression(lc, "2.0.0", "Prod", set())


def test_an_environment_outside_the_lifecycle_is_named_with_the_ones_inside() -> None:
    with pytest.raises(LifecycleError) as caught:
        check_progression(DEFAULT, "1.0.0", "Staging", set())
    assert str(caught.value) == ("environment 'Staging' is not in lifecycle 'Default' "
                                 "(Development, Test-A, Test-B, Production)")


def test_auto_deploy_offers_the_first_open_phase_not_yet_done() -> None:
    assert next_auto_deploy(DEFAULT, set()) == ["Development"]
    assert next_auto_deploy(DEFAULT, {"Development"}) == []  # Test does not auto-deploy


def test_auto_deploy_moves_on_once_a_phase_is_satisfied() -> None:
    lc = lifecycle({"name": "Dev", "environments": ["Dev"], "auto_deploy": True},
                   {"name": "Test", "environments": ["Test", "Perf"], "auto_deploy": ["Test"]},
                   {"name": "Prod", "environments": ["Prod"], "auto_deploy": True})
    assert next_auto_deploy(lc, {"Dev"}) == ["Test"]
    # Test reached but Perf (needed: minimum defaults to all) not yet: Prod must wait
    assert next_auto_deploy(lc, {"Dev", "Test"}) == []
    assert next_auto_deploy(lc, {"Dev", "Test", "Perf"}) == ["Prod"]
    assert next_auto_deploy(lc, {"Dev", "Test", "Perf", "Prod"}) == []
