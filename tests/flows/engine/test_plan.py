"""The deployment plan, called directly: which targets and steps are in scope, what the lifecycle allows,
rolling windows and min_healthy rendered per environment, and the one-line refusals — before any target
or flow run is touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.engine.plan import resolve_rolling
from snapshots.errors import ConfigError, LifecycleError, NotFoundError
from snapshots.variables.scopes import ScopeContext
from tests.flows.local_store import Shop


@pytest.fixture
def shop(ferry_home: Path, tmp_path: Path) -> Shop:
    return Shop.at(tmp_path / "shop")


def roll_out(rolling: dict[str, Any] | None = None, *steps: dict[str, Any]) -> list[dict[str, Any]]:
    children = list(steps) or [{"name": "Install", "kind": "script", "script": "true"}]
    return [{"name": "Roll out", "roles": ["web"], "rolling": rolling or {"window": 1}, "steps": children}]


def released(shop: Shop, process: list[dict[str, Any]], variables: list[dict[str, Any]] | None = None,
             version: str = "1.0.0", **options: Any) -> Shop:
    shop.write(process, variables, **options)
    shop.apply()
    shop.release(version)
    return shop


def names(targets: list[Any]) -> list[str]:
    return [t.name for t in targets]


def test_targets_in_scope_default_to_the_whole_environment(shop: Shop) -> None:
    released(shop, roll_out())
    plan = shop.prepare("1.0.0", "Dev")
    assert plan.environment.name == "Dev" and plan.current.release.version == "1.0.0"
    assert names(plan.targets) == names(plan.environment_targets) == ["dev-01"]
    assert plan.skip_steps == set() and not plan.force and not plan.guided_failure


def test_target_and_exclude_target_narrow_the_targets_but_not_the_environment(shop: Shop) -> None:
    released(shop, roll_out())
    shop.mark_deployed("1.0.0", "Dev")
    plan = shop.prepare("1.0.0", "Prod", targets=["prod-02", "prod-03", "prod-04"], exclude_targets=["prod-03"])
    assert names(plan.targets) == ["prod-02", "prod-04"]
    assert names(plan.environment_targets) == ["prod-01", "prod-02", "prod-03", "prod-04"]  # min_healthy counts these
    with pytest.raises(ConfigError) as caught:
        shop.prepare("1.0.0", "Prod", targets=["dev-01"])
    assert str(caught.value) == "target 'dev-01' is not in Prod (its targets: prod-01, prod-02, prod-03, prod-04)"


def test_unknown_environment_and_release_are_named(shop: Shop) -> None:
    released(shop, roll_out())
    with pytest.raises(NotFoundError) as caught:
        shop.prepare("1.0.0", "Staging")
    assert str(caught.value) == "unknown environment 'Staging' (known: Dev, Prod)"
    with pytest.raises(NotFoundError, match=r"project Shop has no release 2\.0\.0"):
        shop.prepare("2.0.0", "Dev")


def test_latest_and_the_lifecycle_are_checked_before_anything_runs(shop: Shop) -> None:
    released(shop, roll_out())
    shop.release("1.1.0")
    with pytest.raises(LifecycleError) as caught:
        shop.prepare("latest", "Prod")
    assert str(caught.value) == ("release 1.1.0 cannot be deployed to Prod yet: lifecycle 'Default' phase 'Dev' "
                                 "needs all of Dev first (not yet deployed to: Dev)")
    shop.mark_deployed("1.0.0", "Dev")  # another release reaching Dev does not open Prod for 1.1.0
    with pytest.raises(LifecycleError):
        shop.prepare("1.1.0", "Prod")
    assert shop.prepare("1.0.0", "Prod").current.release.version == "1.0.0"


def test_skipped_steps_must_exist_and_not_be_required(shop: Shop) -> None:
    released(shop, roll_out(None, {"name": "Install", "kind": "script", "script": "true"},
                            {"name": "Audit", "kind": "script", "script": "true", "required": True}))
    assert shop.prepare("1.0.0", "Dev", skip_steps=["Install"]).skip_steps == {"Install"}
    with pytest.raises(ConfigError) as caught:
        shop.prepare("1.0.0", "Dev", skip_steps=["Audit"])
    assert str(caught.value) == "--skip 'Audit': the step is required and cannot be skipped"
    with pytest.raises(ConfigError) as caught:
        shop.prepare("1.0.0", "Dev", skip_steps=["Instal"])
    assert str(caught.value) == "--skip 'Instal': no such step (steps: Roll out, Install, Audit)"


def test_guided_failure_follows_the_environment_unless_asked(shop: Shop) -> None:
    def prod_guided(infra: dict[str, Any]) -> None:
        infra["environments"][1]["guided_failure"] = True

    shop.write(roll_out(), infra=prod_guided)
    shop.apply()
    shop.release("1.0.0")
    shop.mark_deployed("1.0.0", "Dev")
    assert shop.prepare("1.0.0", "Prod").guided_failure is True
    assert shop.prepare("1.0.0", "Prod", guided_failure=False).guided_failure is False
    assert shop.prepare("1.0.0", "Dev", guided_failure=True).guided_failure is True


WINDOWS = [{"name": "Window", "value": "1"}, {"name": "Window", "value": "50%", "scope": {"environment": ["Prod"]}},
           {"name": "Keep", "value": "0"}, {"name": "Keep", "value": "3", "scope": {"environment": ["Prod"]}}]


def test_rolling_settings_are_rendered_per_environment(shop: Shop) -> None:
    released(shop, roll_out({"window": [1, "#{Window}"], "min_healthy": "#{Keep}"}), WINDOWS)
    shop.mark_deployed("1.0.0", "Dev")
    for env, window, keep in (("Dev", [1, 1], 0), ("Prod", [1, "50%"], 3)):
        plan = shop.prepare("1.0.0", env)
        rolling = resolve_rolling(plan.current, plan.current.process[0], env)
        assert (rolling.window, rolling.min_healthy) == (window, keep)


def test_min_healthy_that_can_never_hold_is_refused_up_front(shop: Shop) -> None:
    variables = [*WINDOWS[:2], {"name": "Keep", "value": "0"},
                 {"name": "Keep", "value": "4", "scope": {"environment": ["Prod"]}}]
    released(shop, roll_out({"window": "#{Window}", "min_healthy": "#{Keep}"}), variables)
    shop.mark_deployed("1.0.0", "Dev")
    with pytest.raises(ConfigError) as caught:
        shop.prepare("1.0.0", "Prod")
    assert str(caught.value) == ("step 'Roll out' in Prod: min_healthy 4 can never hold with 4 target(s) in service "
                                 "(taking even one out leaves 3)")
    # narrowing the deployment to fewer targets does not change what must stay in service
    with pytest.raises(ConfigError, match="min_healthy 4 can never hold with 4"):
        shop.prepare("1.0.0", "Prod", targets=["prod-01"])


def test_min_healthy_counts_only_targets_with_the_step_s_roles(shop: Shop) -> None:
    def add_db(infra: dict[str, Any]) -> None:
        infra["targets"].append({"name": "db-01", "environment": "Prod", "roles": ["db"],
                                 "transport": {"kind": "local", "root": str(shop.local.target_dir("db-01"))}})

    shop.write(roll_out({"window": 1, "min_healthy": 4}), infra=add_db)
    shop.apply()
    shop.release("1.0.0")
    shop.mark_deployed("1.0.0", "Dev")
    with pytest.raises(ConfigError, match="min_healthy 4 can never hold with 4 target"):
        shop.prepare("1.0.0", "Prod")  # 5 targets in Prod, but only 4 are web servers


def test_a_rolling_value_that_is_wrong_after_substitution_says_so(shop: Shop) -> None:
    released(shop, roll_out({"window": "#{Window}"}), [{"name": "Window", "value": "all of them"}])
    with pytest.raises(ConfigError) as caught:
        shop.prepare("1.0.0", "Dev")  # refused before a deployment record or flow run exists
    assert str(caught.value) == ("step 'Roll out' in Dev: rolling.window 'all of them' must be a count or a "
                                 "percentage like '25%' (after variable substitution)")


def test_the_release_plan_carries_prompted_values_secrets_masked_and_the_previous_release(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_TOKEN", "t0ken-value")
    variables = [{"name": "Colour", "value": "blue", "prompt": {"required": False, "description": "colour"}},
                 {"name": "Token", "sensitive": True, "value": {"from_env": "SHOP_TOKEN"}}]
    released(shop, roll_out(), variables)
    shop.mark_deployed("1.0.0", "Dev")
    shop.release("1.1.0")
    plan = shop.prepare("1.1.0", "Dev", variables={"Colour": "green"})
    assert plan.current.previous_for_environment == "1.0.0"
    assert plan.prompted == {"Colour": "green"}
    resolved = plan.current.index.resolve(ScopeContext(environment="Dev"))
    assert resolved.get("Colour") == "green" and resolved.get("Token") == "t0ken-value"  # decrypted in memory
    assert plan.current.masker.mask("token is t0ken-value") == "token is ********"
    with pytest.raises(ConfigError, match="--variable Color: not a prompted variable of this project"):
        shop.prepare("1.1.0", "Dev", variables={"Color": "green"})
    assert shop.prepare("1.0.0", "Prod").current.previous_for_environment is None
