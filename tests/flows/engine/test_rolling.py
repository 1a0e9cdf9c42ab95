"""The rolling scheduler on its own: real threads, real timing, no Prefect."""

from __future__ import annotations

import threading
import time

import pytest

from flows.engine.rolling import FAILED, SKIPPED, SUCCESS, Outcome, check_min_healthy, roll, waves, window_size
from snapshots.errors import ConfigError


def test_window_sizes() -> None:
    assert window_size(3, 10) == 3
    assert window_size("25%", 10) == 3  # rounded up
    assert window_size("1%", 10) == 1
    assert waves([1, "50%"], 8) == [1, 4]


def test_min_healthy_cap_and_refusal() -> None:
    assert check_min_healthy(4, 3, "x") == 1
    assert check_min_healthy(4, 0, "x") == 4
    with pytest.raises(ConfigError, match="min_healthy 4 can never hold with 4"):
        check_min_healthy(4, 4, "x")


class Recorder:
    def __init__(self, durations: dict[int, float], fail: set[int] = frozenset()) -> None:
        self.durations, self.fail = durations, set(fail)
        self.spans: dict[int, tuple[float, float]] = {}
        self.calls: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    def __call__(self, target: int, start: int) -> Outcome:
        begin = time.monotonic()
        time.sleep(self.durations.get(target, 0.05))
        with self.lock:
            self.spans[target] = (begin, time.monotonic())
            self.calls.append((target, start))
        return Outcome(FAILED, 1, f"t{target} failed") if target in self.fail else Outcome(SUCCESS)


def overlap(spans: dict[int, tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in spans.values()] + [(f, -1) for _, f in spans.values()])
    running = peak = 0
    for _, d in points:
        running += d
        peak = max(peak, running)
    return peak


def test_sliding_not_batched() -> None:
    rec = Recorder({0: 0.05, 1: 0.6, 2: 0.05, 3: 0.05})
    result = roll(list(range(4)), rec, window=2)
    assert all(o.status == SUCCESS for o in result.outcomes.values())
    assert overlap(rec.spans) == 2
    assert rec.spans[2][0] < rec.spans[1][1] and rec.spans[3][0] < rec.spans[1][1]


def test_ramp_waits_for_the_canary() -> None:
    rec = Recorder({0: 0.2})
    roll(list(range(5)), rec, window=[1, 2])
    first = min(rec.spans, key=lambda t: rec.spans[t][0])
    assert all(rec.spans[t][0] >= rec.spans[first][1] for t in rec.spans if t != first)
    assert overlap({t: s for t, s in rec.spans.items() if t != first}) == 2


def test_stop_after_max_failures_running_ones_finish() -> None:
    rec = Recorder({0: 0.05, 1: 0.3}, fail={0})
    result = roll(list(range(6)), rec, window=2, max_failures=0)
    assert result.outcomes[0].status == FAILED
    assert result.outcomes[1].status == SUCCESS  # was running: finished
    assert result.not_started == [2, 3, 4, 5]


def test_max_failures_tolerates_that_many() -> None:
    rec = Recorder({}, fail={0, 1})
    result = roll(list(range(4)), rec, window=1, max_failures=2)
    assert result.failed == 2 and result.not_started == []


def test_guidance_retry_resumes_at_the_failed_step_then_skip() -> None:
    rec = Recorder({}, fail={1})
    answers = iter(["retry", "skip"])
    asked: list[int] = []

    def guidance(target: int, outcome: Outcome) -> str:
        asked.append(target)
        return next(answers)

    result = roll(list(range(3)), rec, window=1, guidance=guidance)
    assert asked == [1, 1]
    assert (1, 1) in rec.calls  # the retry started at the failed step (index 1)
    assert result.outcomes[1].status == SKIPPED and result.outcomes[2].status == SUCCESS


def test_guidance_abort_stops_everything() -> None:
    rec = Recorder({}, fail={0})
    result = roll(list(range(3)), rec, window=1, guidance=lambda t, o: "abort")
    assert result.aborted and result.not_started == [1, 2]


def test_guidance_waits_for_running_targets_before_asking() -> None:
    rec = Recorder({0: 0.05, 1: 0.4}, fail={0})
    seen: dict[str, float] = {}

    def guidance(target: int, outcome: Outcome) -> str:
        seen["asked"] = time.monotonic()
        return "skip"

    roll(list(range(2)), rec, window=2, guidance=guidance)
    assert seen["asked"] >= rec.spans[1][1]


def test_in_service_deficit_holds_back_starts() -> None:
    rec = Recorder({i: 0.05 for i in range(4)})
    deficit = {"n": 1}
    roll(list(range(4)), rec, window=2, max_out_of_service=2, in_service_deficit=lambda: deficit["n"])
    assert overlap(rec.spans) == 1  # one server already down elsewhere: only one more may go out


def test_targets_start_in_their_order_and_the_not_started_keep_it() -> None:
    rec = Recorder({}, fail={2})
    result = roll(list(range(6)), rec, window=1)
    assert [t for t, _ in rec.calls] == [0, 1, 2]
    assert result.not_started == [3, 4, 5]


def test_a_window_wider_than_the_targets_and_no_targets_at_all() -> None:
    rec = Recorder({i: 0.2 for i in range(3)})
    result = roll(list(range(3)), rec, window="100%")
    assert overlap(rec.spans) == 3 and len(result.outcomes) == 3
    empty = roll([], Recorder({}), window=[1, "25%"])
    assert empty.outcomes == {} and empty.not_started == [] and not empty.aborted


def test_min_healthy_caps_a_wide_window() -> None:
    rec = Recorder({i: 0.1 for i in range(6)})
    cap = check_min_healthy(6, 4, "step 'Roll out'")  # 6 in service, 4 must stay: 2 may be out
    roll(list(range(6)), rec, window=5, max_out_of_service=cap)
    assert cap == 2 and overlap(rec.spans) == 2


def test_a_three_wave_ramp_finishes_each_wave_before_the_next() -> None:
    rec = Recorder({i: 0.1 for i in range(7)})
    roll(list(range(7)), rec, window=[1, 2, "100%"])
    starts = sorted(rec.spans, key=lambda t: rec.spans[t][0])
    canary, second, rest = starts[:1], starts[1:3], starts[3:]
    assert all(rec.spans[t][0] >= max(rec.spans[c][1] for c in canary) for t in second + rest)
    assert all(rec.spans[t][0] >= max(rec.spans[s][1] for s in second) for t in rest)
    assert overlap({t: rec.spans[t] for t in rest}) == 4  # the last size slides over the rest


def test_ignore_carries_on_after_the_failed_step() -> None:
    calls: list[tuple[int, int]] = []

    def run(target: int, start: int) -> Outcome:  # step 1 of target 1 fails; steps from 2 on succeed
        calls.append((target, start))
        return Outcome(FAILED, 1, "step 1 failed") if target == 1 and start <= 1 else Outcome(SUCCESS)

    result = roll(list(range(3)), run, window=1, guidance=lambda t, o: "ignore")
    assert calls == [(0, 0), (1, 0), (1, 2), (2, 0)]  # resumed after the ignored step, before target 2
    assert all(o.status == SUCCESS for o in result.outcomes.values()) and result.not_started == []


def test_ignore_without_a_failed_step_counts_the_target_as_done() -> None:
    def run(target: int, start: int) -> Outcome:
        raise RuntimeError("boom")  # no step index: the unit as a whole failed

    result = roll([0], run, window=1, guidance=lambda t, o: "ignore")
    assert result.outcomes[0] == Outcome(SUCCESS, None, "failure ignored by a person")


def test_an_unexpected_error_is_a_failed_target_not_a_crashed_rollout() -> None:
    def run(target: int, start: int) -> Outcome:
        if target == 1:
            raise RuntimeError("boom")
        return Outcome(SUCCESS)

    result = roll(list(range(4)), run, window=1, max_failures=1)
    assert result.outcomes[1].status == FAILED and result.outcomes[1].message == "RuntimeError: boom"
    assert result.failed == 1 and result.not_started == [] and result.outcomes[3].status == SUCCESS


def test_each_target_runs_in_a_copy_of_the_caller_s_context() -> None:
    import contextvars

    where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="unset")
    where.set("deployment #7")  # as Prefect's flow run context reaches each task
    seen: list[str] = []
    roll(list(range(3)), lambda t, s: (seen.append(where.get()), Outcome(SUCCESS))[1], window=3)
    assert seen == ["deployment #7"] * 3
