"""ferry's Prefect global concurrency limits, against a real Prefect server."""

from __future__ import annotations

import os
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from flows.orchestration import concurrency
from tests.flows.prefect_api import prefect_api  # noqa: F401  (fixture)


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, prefect_api: str) -> str:  # noqa: F811
    """Forget what this process already ensured; a name prefix unique to the test."""
    monkeypatch.setattr(concurrency, "_ensured", set())
    return f"ferry-test-{os.getpid()}-{os.urandom(3).hex()}"


def _limits(prefix: str) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        found, offset = [], 0
        while page := client.read_global_concurrency_limits(limit=200, offset=offset):
            found += page
            offset += 200
    return {limit.name: limit for limit in found if limit.name.startswith(prefix)}


def test_creates_missing_limits_and_fixes_a_wrong_one(fresh: str, monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"{fresh}-env", *(f"{fresh}-t{i}" for i in range(5))]
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=names[1], limit=3))
    monkeypatch.setattr(concurrency, "PAGE", 2)  # several pages, as on a server with many limits
    concurrency.ensure_limits(names)
    limits = _limits(fresh)
    assert sorted(limits) == sorted(names)
    assert {name: limit.limit for name, limit in limits.items()} == dict.fromkeys(names, 1)


def test_ensured_limits_cost_no_request_the_second_time(fresh: str, monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"{fresh}-a", f"{fresh}-b"]
    concurrency.ensure_limits(names)
    monkeypatch.setattr(concurrency, "get_client", lambda **_: pytest.fail("asked the server again"))
    concurrency.ensure_limits(names)


def test_a_limit_created_meanwhile_is_not_an_error(fresh: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"{fresh}-raced"
    real = concurrency.get_client

    class RacingClient:
        """Lists the limits, then another deployment creates the same one before we do."""

        def __init__(self) -> None:
            self.inner = real(sync_client=True)

        def __enter__(self) -> RacingClient:
            self.inner.__enter__()
            return self

        def __exit__(self, *exc: object) -> None:
            self.inner.__exit__(*exc)

        def read_global_concurrency_limits(self, **kwargs: Any) -> Any:
            listed = self.inner.read_global_concurrency_limits(**kwargs)
            with real(sync_client=True) as other:
                other.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            return listed

        def __getattr__(self, attribute: str) -> Any:
            return getattr(self.inner, attribute)

    monkeypatch.setattr(concurrency, "get_client", lambda **_: RacingClient())
    concurrency.ensure_limits([name])
    assert _limits(name)[name].limit == 1
