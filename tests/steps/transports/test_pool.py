"""The transport pool: one session per target, opened on first use or ahead of time (``prefetch``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from snapshots.errors import TransportError
from snapshots.model import Target
from steps.transports import pool as pool_module
from steps.transports.pool import TransportPool


class FakeSession:
    def __init__(self, name: str) -> None:
        self.target, self.closed = name, False

    def close(self) -> None:
        self.closed = True


def _target(name: str) -> Target:
    return Target.model_validate({"name": name, "environment": "Test", "roles": ["web"],
                                  "transport": {"kind": "local", "root": f"/tmp/{name}"}})


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replaces open_transport: records every attempt; ``slow`` targets take 0.3 s, ``down`` ones fail."""
    state: dict[str, Any] = {"attempts": [], "slow": set(), "down": set(), "sessions": {}}
    lock = threading.Lock()

    def fake_open(target: Target, *, home: Path) -> FakeSession:
        with lock:
            state["attempts"].append(target.name)
        if target.name in state["slow"]:
            time.sleep(0.3)
        if target.name in state["down"]:
            raise TransportError("cannot connect: connection refused", target=target.name, operation="connect")
        session = FakeSession(target.name)
        state["sessions"][target.name] = session
        return session

    monkeypatch.setattr(pool_module, "open_transport", fake_open)
    return state


def test_prefetch_opens_each_session_once_and_get_reuses_it(opened: dict[str, Any], tmp_path: Path) -> None:
    pool = TransportPool(tmp_path)
    targets = [_target(f"web-{i}") for i in range(6)]
    pool.prefetch(targets, parallel=2)
    sessions = [pool.get(t) for t in targets]
    assert [s.target for s in sessions] == [t.name for t in targets]
    pool.prefetch(targets)  # already open: nothing more to do
    assert pool.get(targets[0]) is sessions[0]
    pool.close()
    assert sorted(opened["attempts"]) == sorted(t.name for t in targets)  # one attempt each
    assert all(s.closed for s in sessions)


def test_a_step_waits_for_the_attempt_in_flight(opened: dict[str, Any], tmp_path: Path) -> None:
    opened["slow"].add("web-1")
    pool = TransportPool(tmp_path)
    target = _target("web-1")
    pool.prefetch([target])
    time.sleep(0.05)  # the prefetch is connecting now
    assert pool.get(target).target == "web-1"
    assert opened["attempts"] == ["web-1"]
    pool.close()


def test_a_fresh_prefetch_failure_is_the_steps_answer_then_it_tries_again(opened: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    opened["down"].add("web-1")
    pool = TransportPool(tmp_path)
    target = _target("web-1")
    pool.prefetch([target])
    with pytest.raises(TransportError, match="connection refused"):
        pool.get(target)
    assert opened["attempts"] == ["web-1"]  # the step reported the prefetch's attempt, no second wait
    opened["down"].clear()  # the target is back (a guided-failure retry)
    assert pool.get(target).target == "web-1"
    assert opened["attempts"] == ["web-1", "web-1"]
    pool.close()


def test_a_stale_prefetch_failure_is_tried_again(opened: dict[str, Any], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    opened["down"].add("web-1")
    pool = TransportPool(tmp_path)
    target = _target("web-1")
    pool.prefetch([target])
    deadline = time.monotonic() + 5
    while not pool._prefetch_failed and time.monotonic() < deadline:
        time.sleep(0.01)
    monkeypatch.setattr(pool_module, "PREFETCH_FRESH", 0.0)
    opened["down"].clear()
    assert pool.get(target).target == "web-1"
    pool.close()


def test_close_stops_prefetching_and_closes_what_it_opened(opened: dict[str, Any], tmp_path: Path) -> None:
    opened["slow"].update(f"web-{i}" for i in range(10))
    pool = TransportPool(tmp_path)
    pool.prefetch([_target(f"web-{i}") for i in range(10)], parallel=1)
    time.sleep(0.05)
    pool.close()  # waits for the attempt in flight, cancels the rest
    assert len(opened["attempts"]) < 10
    assert all(s.closed for s in opened["sessions"].values())
    pool.prefetch([_target("web-99")])  # after close: ignored
    assert "web-99" not in opened["attempts"]
