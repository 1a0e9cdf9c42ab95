"""Rolling a unit of work across targets: a sliding window (count, percentage or ramp) with guards.

The next target starts as soon as any running one finishes (sliding, not batched). A ramp such as
``[1, "25%"]`` runs its leading sizes as waves that must finish before the next begins (canary first),
and the last size as the sliding window for the rest. ``min_healthy`` is checked before every start;
``max_failures`` stops new starts once more targets than that have failed; running ones always finish.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from snapshots.errors import ConfigError

T = TypeVar("T")

SUCCESS, FAILED, SKIPPED = "success", "failed", "skipped"


def window_size(spec: int | str, total: int) -> int:
    """A count, or a percentage of ``total`` rounded up; at least 1."""
    if isinstance(spec, str):
        return max(1, math.ceil(total * int(spec.strip().rstrip("%")) / 100))
    return max(1, spec)


def waves(spec: int | str | list[int | str], total: int) -> list[int]:
    """The ramp as sizes: all but the last are waves; the last is the sliding window."""
    parts = spec if isinstance(spec, list) else [spec]
    return [window_size(p, total) for p in parts]


@dataclass
class Outcome:
    """What running the unit on one target gave. ``resume_at`` lets a retry continue where it failed."""

    status: str
    failed_at: int | None = None
    message: str = ""


@dataclass
class RollResult(Generic[T]):
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    not_started: list[T] = field(default_factory=list)
    aborted: bool = False

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes.values() if o.status == FAILED)


Guidance = Callable[[T, Outcome], str]
"""Asked (from the flow's own thread) about a failed target: 'retry' | 'skip' | 'ignore' | 'abort'."""


def check_min_healthy(total: int, min_healthy: int, what: str) -> int:
    """The most targets that may be out of service at once; refuse up front when none may be."""
    allowed = total - min_healthy
    if min_healthy and allowed < 1:
        raise ConfigError(f"{what}: min_healthy {min_healthy} can never hold with {total} target(s) in service "
                          f"(taking even one out leaves {total - 1})")
    return allowed if min_healthy else total


def roll(targets: Sequence[T], run: Callable[[T, int], Outcome], *, window: int | str | list[int | str],
         max_failures: int = 0, max_out_of_service: int | None = None,
         in_service_deficit: Callable[[], int] | None = None, guidance: Guidance[T] | None = None,
         max_workers: int | None = None) -> RollResult[T]:
    """Run ``run(target, start_index)`` over ``targets`` with a sliding window. Each call runs in a worker
    thread inside a copy of the caller's context (so Prefect's run context reaches it).

    ``max_out_of_service`` caps how many run at once (from min_healthy). ``in_service_deficit`` may report
    extra targets out of service that ferry did not take out (e.g. DOWN in the balancer)."""
    total = len(targets)
    sizes = waves(window, total)
    cap = max_out_of_service if max_out_of_service is not None else total
    result: RollResult[T] = RollResult()
    pending: list[tuple[int, int]] = [(i, 0) for i in range(total)]  # (target index, start step)
    running: dict[Future[Outcome], tuple[int, int]] = {}
    failures = 0
    wave_no = 0
    wave_started = 0
    pool = ThreadPoolExecutor(max_workers=max_workers or max(1, min(total, max(sizes))) or 1,
                              thread_name_prefix="ferry-target")

    def limit() -> int:
        size = sizes[min(wave_no, len(sizes) - 1)]
        return min(size, cap)

    needs_answer: list[tuple[int, Outcome]] = []
    try:
        while True:
            stop_starting = result.aborted or failures > max_failures or bool(needs_answer)
            in_last_wave = wave_no >= len(sizes) - 1
            while pending and not stop_starting:
                deficit = in_service_deficit() if in_service_deficit else 0
                if len(running) + deficit >= limit():
                    break
                if not in_last_wave and wave_started >= sizes[wave_no]:
                    break
                index, start = pending.pop(0)
                ctx = contextvars.copy_context()
                running[pool.submit(ctx.run, run, targets[index], start)] = (index, start)
                wave_started += 1
            if not running:
                if needs_answer and guidance is not None:
                    # Everything else has finished: ask about one failure at a time, from this thread.
                    index, outcome = needs_answer.pop(0)
                    answer = guidance(targets[index], outcome)
                    if answer in ("retry", "ignore"):
                        resume = (outcome.failed_at or 0) + (1 if answer == "ignore" else 0)
                        if answer == "ignore" and outcome.failed_at is None:
                            result.outcomes[index] = Outcome(SUCCESS, None, "failure ignored by a person")
                        else:
                            pending.insert(0, (index, resume))
                            wave_started -= 1
                    elif answer == "skip":
                        result.outcomes[index] = Outcome(SKIPPED, outcome.failed_at, "skipped by a person")
                    else:
                        result.outcomes[index] = outcome
                        failures += 1
                        result.aborted = True
                    continue
                if pending and not stop_starting and not in_last_wave:
                    wave_no, wave_started = wave_no + 1, 0
                    continue
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                index, _start = running.pop(future)
                try:
                    outcome = future.result()
                except Exception as exc:  # an unexpected error is a failed target, not a crashed rollout
                    outcome = Outcome(FAILED, None, f"{type(exc).__name__}: {exc}")
                if outcome.status == FAILED and guidance is not None:
                    needs_answer.append((index, outcome))
                    continue
                result.outcomes[index] = outcome
                if outcome.status == FAILED:
                    failures += 1
            if (not running and not in_last_wave and pending and not needs_answer
                    and wave_started >= sizes[wave_no]):
                wave_no, wave_started = wave_no + 1, 0
    finally:
        pool.shutdown(wait=True)
    result.not_started = [targets[i] for i, _ in pending]
    return result


__all__: Sequence[str] = ["FAILED", "SKIPPED", "SUCCESS", "Outcome", "RollResult", "check_min_healthy", "roll",
                          "waves", "window_size"]
