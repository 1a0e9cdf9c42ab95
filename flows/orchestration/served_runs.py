"""Deployments started through a Prefect server: find the project's served ``deploy-release`` deployment,
create a flow run on it (now or at a time), and follow that run from the command line — its log lines
streamed, its final state as the exit code, a timeout that can cancel it.

This is what makes ``ferry deploy`` from a CI job run on the ``ferry serve`` / worker machines rather than
on the CI runner, and what auto-deploys and triggers use to start deployments.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from snapshots.errors import FerryError

if TYPE_CHECKING:  # Prefect is imported where it is used: the CLI imports this module before it needs one
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun, Log
    from prefect.states import State

LIVE_SECONDS = 90
"""A served deployment polled within this long has a live ``ferry serve`` (or worker) behind it."""


def deployment_name(project: str) -> str:
    """Prefect refuses '/' and '%' in deployment names; everything else in a project name is kept."""
    return re.sub(r"[/%]", "-", project)


@dataclass(frozen=True)
class Served:
    """A registered Prefect deployment of one of ferry's flows for a project."""

    id: UUID
    full_name: str
    last_polled: datetime | None
    work_pool: str | None

    @property
    def live(self) -> bool:
        if self.last_polled is None:
            return False
        return datetime.now(UTC) - self.last_polled < timedelta(seconds=LIVE_SECONDS)

    def describe_liveness(self) -> str:
        if self.last_polled is None:
            return "never polled by a `ferry serve` or worker"
        return f"last polled {self.last_polled:%Y-%m-%d %H:%M:%S} UTC"


def api_url() -> str | None:
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def run_url(flow_run_id: UUID) -> str:
    """Where the run is in the Prefect UI (empty when there is no UI URL)."""
    from prefect.settings import get_current_settings

    ui = get_current_settings().ui_url
    return f"{str(ui).rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else ""


def client_or_new(client: SyncPrefectClient | None) -> AbstractContextManager[SyncPrefectClient]:
    """The caller's started client (kept open: ``ferry serve``'s API reuses one per thread, as building one
    costs ~0.3 s on a loaded machine), else a new one for this call."""
    if client is not None:
        return nullcontext(client)
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def find_served(project: str, flow: str = "deploy-release", *,
                client: SyncPrefectClient | None = None) -> Served | None:
    """The project's served deployment, or None when no Prefect API is configured or none is registered."""
    if not api_url():
        return None
    from prefect.exceptions import ObjectNotFound

    try:
        with client_or_new(client) as prefect:
            found = prefect.read_deployment_by_name(f"{flow}/{deployment_name(project)}")
    except ObjectNotFound:
        return None
    except Exception as exc:  # the API is configured but not answering: running locally would fail too
        raise FerryError(f"cannot reach the Prefect API at {api_url()}: {type(exc).__name__}: {exc}") from None
    return Served(found.id, f"{flow}/{found.name}", found.last_polled, found.work_pool_name)


def create_run(served: Served, parameters: dict[str, Any], *, at: datetime | None = None,
               name: str | None = None, tags: list[str] | None = None,
               client: SyncPrefectClient | None = None) -> FlowRun:
    """A flow run of the served deployment, scheduled now or at ``at``; returns Prefect's FlowRun."""
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.states import Scheduled

    state: State[Any] = Scheduled(scheduled_time=at) if at is not None else Scheduled()
    try:
        with client_or_new(client) as prefect:
            return prefect.create_flow_run_from_deployment(served.id, parameters=parameters, state=state, name=name,
                                                          tags=["ferry", *(tags or [])])
    except PrefectHTTPStatusError as exc:
        detail = exc.response.json().get("detail", exc.response.text) if exc.response.content else str(exc)
        hint = (" (a project applied moments ago reaches ferry serve within its --sync-seconds)"
                if exc.response.status_code == 409 else "")
        raise FerryError(f"{served.full_name} refused the run: {detail}{hint}") from None


TIMED_OUT = 124
"""Exit code when ``--timeout`` passes before the deployment finishes (as ``timeout(1)``)."""


def follow(flow_run_id: UUID, *, timeout: float | None = None, cancel_on_timeout: bool = False,
           echo: Callable[[str], None] | None = None, on_pause: Callable[[FlowRun], None] | None = None,
           poll: float = 1.0) -> tuple[str, int]:
    """Stream a flow run's log lines until it ends. Returns (final state name, exit code): 0 when it
    completed, 1 when it failed, crashed or was cancelled, ``TIMED_OUT`` when ``timeout`` passed first
    (after cancelling it if ``cancel_on_timeout``)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterTimestamp
    from prefect.client.schemas.sorting import LogSort

    echo = echo or _print
    deadline = time.monotonic() + timeout if timeout is not None else None
    seen: set[UUID] = set()
    after: datetime | None = None
    paused_notified = False
    ended = [False]  # the engine's own last line ("Finished in state …") has been shown

    with get_client(sync_client=True) as client:
        def drain() -> int:
            nonlocal after
            shown = 0
            while True:
                logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]),
                                                  timestamp=LogFilterTimestamp(after_=after) if after else None),
                                        limit=200, sort=LogSort.TIMESTAMP_ASC)
                fresh = [log for log in logs if log.id not in seen]
                for log in fresh:
                    seen.add(log.id)
                    echo(_format(log))
                    shown += 1
                    if log.task_run_id is None and log.message.startswith("Finished in state"):
                        ended[0] = True
                if logs:
                    after = logs[-1].timestamp
                if len(logs) < 200:
                    return shown

        while True:
            drain()
            run = client.read_flow_run(flow_run_id)
            state = run.state
            if state is not None and state.is_final():
                _drain_tail(drain, ended)
                return state.name or str(state.type.value), 0 if state.is_completed() else 1
            if state is not None and state.is_paused() and not paused_notified:
                paused_notified = True
                if on_pause is not None:
                    on_pause(run)
            elif state is not None and not state.is_paused():
                paused_notified = False
            if deadline is not None and time.monotonic() > deadline:
                if cancel_on_timeout:
                    _cancel(client, flow_run_id, f"timed out after {timeout:g}s (--cancel-on-timeout)")
                    final = _wait_final(client, flow_run_id, 60)
                    _drain_tail(drain, ended)
                    return final, TIMED_OUT
                return (state.name if state and state.name else "unknown"), TIMED_OUT
            time.sleep(poll)


def _drain_tail(drain: Callable[[], int], ended: list[bool]) -> None:
    """Log lines reach the API in batches (every ~2 s), some after the final state: read until the engine's
    closing line has been shown, or the log has been quiet for a while."""
    quiet_since = time.monotonic()
    give_up = time.monotonic() + 8
    while not ended[0] and time.monotonic() < give_up and time.monotonic() - quiet_since < 3:
        time.sleep(0.3)
        if drain():
            quiet_since = time.monotonic()


def _cancel(client: SyncPrefectClient, flow_run_id: UUID, message: str) -> None:
    from prefect.states import Cancelled, Cancelling

    run = client.read_flow_run(flow_run_id)
    if run.state is not None and run.state.is_final():
        return
    # A run nobody has picked up yet has no process to stop: cancel it outright.
    state: State[Any] = Cancelled(message=message) if run.state is None or run.state.is_scheduled() else Cancelling(
        message=message)
    client.set_flow_run_state(flow_run_id, state, force=True)


def _wait_final(client: SyncPrefectClient, flow_run_id: UUID, seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        state = client.read_flow_run(flow_run_id).state
        if state is not None and state.is_final():
            return state.name or str(state.type.value)
        time.sleep(0.5)
    return "Cancelling"


def _format(log: Log) -> str:
    from logging import getLevelName

    stamp = log.timestamp.astimezone().strftime("%H:%M:%S")
    return f"{stamp} | {getLevelName(log.level):<7} | {log.message}"


def _print(line: str) -> None:
    print(line, flush=True)
    sys.stdout.flush()
