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

import httpx

from flows.client.http import PrefectApi, PrefectRun, prefect_api_url, prefect_ui_url
from flows.orchestration.ui_tags import run_tags
from snapshots.errors import FerryError, PrefectUnreachable

if TYPE_CHECKING:  # Prefect is imported where it is used: the CLI imports this module before it needs one
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun
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
    """The Prefect API URL, read without importing Prefect (see ``flows.client.http.prefect_api_url``)."""
    return prefect_api_url()


def run_url(flow_run_id: UUID | str) -> str:
    """Where the run is in the Prefect UI (empty when there is no UI URL)."""
    ui = prefect_ui_url()
    return f"{ui}/runs/flow-run/{flow_run_id}" if ui else ""


_apis: dict[str, PrefectApi] = {}
"""One thin client per Prefect API URL for this process: building an httpx client (its TLS context) costs
tens of milliseconds on a loaded machine, and a CLI call makes several requests."""


def thin_api() -> PrefectApi | None:
    """The process's thin Prefect API client, or None when no Prefect API is configured."""
    url = api_url()
    if not url:
        return None
    if url not in _apis:
        _apis[url] = PrefectApi(url)
    return _apis[url]


def client_or_new(client: SyncPrefectClient | None) -> AbstractContextManager[SyncPrefectClient]:
    """The caller's started client (kept open: ``ferry serve``'s API reuses one per thread, as building one
    costs ~0.3 s on a loaded machine), else a new one for this call."""
    if client is not None:
        return nullcontext(client)
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _served_of(flow: str, found: dict[str, Any]) -> Served:
    polled = found.get("last_polled")
    return Served(UUID(str(found["id"])), f"{flow}/{found['name']}",
                  datetime.fromisoformat(polled.replace("Z", "+00:00")) if polled else None,
                  found.get("work_pool_name"))


def find_served(project: str, flow: str = "deploy-release", *,
                client: SyncPrefectClient | None = None) -> Served | None:
    """The project's served deployment, or None when no Prefect API is configured or none is registered.
    Without ``client`` (the CLI): plain HTTP, no Prefect import."""
    api = thin_api()
    if api is None:
        return None
    if client is None:
        try:
            thin = api.deployment(flow, deployment_name(project))
        except PrefectUnreachable as exc:  # the API is configured but not answering: running locally would fail
            raise FerryError(str(exc)) from None
        except httpx.HTTPStatusError as exc:
            raise FerryError(f"the Prefect API at {api_url()} answered {exc.response.status_code} for "
                             f"{flow}/{deployment_name(project)}") from None
        return _served_of(flow, thin) if thin is not None else None
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
               client: SyncPrefectClient | None = None) -> FlowRun | PrefectRun:
    """A flow run of the served deployment, scheduled now or at ``at``; returns the run (``.id``, ``.name``):
    Prefect's FlowRun with a ``client``, else the thin client's ``PrefectRun`` (no Prefect import)."""
    hint409 = " (a project applied moments ago reaches ferry serve within its --sync-seconds)"
    all_tags = ["ferry", *run_tags(parameters), *(tags or [])]
    if client is None and (api := thin_api()) is not None:
        try:
            try:
                return api.create_flow_run(str(served.id), parameters, at=at, name=name, tags=all_tags)
            except httpx.HTTPStatusError as exc:
                if not _form_behind(exc.response.status_code, _detail(exc.response)):
                    raise
                return api.create_flow_run(str(served.id), parameters, at=at, name=name, tags=all_tags,
                                           enforce_schema=False)
        except PrefectUnreachable as exc:
            raise FerryError(str(exc)) from None
        except httpx.HTTPStatusError as exc:
            raise FerryError(f"{served.full_name} refused the run: {_detail(exc.response)}"
                             f"{hint409 if exc.response.status_code == 409 else ''}") from None
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.states import Scheduled

    state: State[Any] = Scheduled(scheduled_time=at) if at is not None else Scheduled()
    try:
        with client_or_new(client) as prefect:
            try:
                return prefect.create_flow_run_from_deployment(served.id, parameters=parameters, state=state,
                                                              name=name, tags=all_tags)
            except PrefectHTTPStatusError as exc:
                if not _form_behind(exc.response.status_code, _detail(exc.response)):
                    raise
                return _create_unchecked(prefect, served.id, parameters, state, name, all_tags)
    except PrefectHTTPStatusError as exc:
        detail = _detail(exc.response) if exc.response.content else str(exc)
        hint = hint409 if exc.response.status_code == 409 else ""
        raise FerryError(f"{served.full_name} refused the run: {detail}{hint}") from None


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except (ValueError, AttributeError):
        return response.text


def _form_behind(status: int, detail: str) -> bool:
    """Prefect refused a run ferry checked against the store because the deployment's form offers a release,
    target, step or channel only from ``ferry serve``'s next sync on (``flows.orchestration.deploy_form``):
    then the run is created again without the form's check. Any other refusal stands."""
    from flows.orchestration.deploy_form import refused_for_choice

    return status == 409 and refused_for_choice(detail)


def _create_unchecked(prefect: SyncPrefectClient, deployment_id: UUID, parameters: dict[str, Any],
                      state: State[Any], name: str | None, tags: list[str]) -> FlowRun:
    """``create_flow_run_from_deployment`` with ``enforce_parameter_schema=False`` (which it does not take)."""
    from prefect.client.schemas.actions import DeploymentFlowRunCreate
    from prefect.client.schemas.objects import FlowRun
    from prefect.states import to_state_create

    body = DeploymentFlowRunCreate(parameters=parameters, state=to_state_create(state), name=name, tags=tags,
                                   enforce_parameter_schema=False)
    response = prefect.request("POST", "/deployments/{id}/create_flow_run", path_params={"id": deployment_id},
                               json=body.model_dump(mode="json", exclude_unset=True))
    return FlowRun.model_validate(response.json())


TIMED_OUT = 124
"""Exit code when ``--timeout`` passes before the deployment finishes (as ``timeout(1)``)."""

FOLLOW_POLL = 0.2
"""Seconds between two looks at a followed run: the CLI exits within this long of the run's end."""


def follow(flow_run_id: UUID | str, *, timeout: float | None = None, cancel_on_timeout: bool = False,
           echo: Callable[[str], None] | None = None, on_pause: Callable[[PrefectRun], None] | None = None,
           poll: float = FOLLOW_POLL, flushed: bool = False) -> tuple[str, int]:
    """Stream a flow run's log lines until it ends. Returns (final state name, exit code): 0 when it
    completed, 1 when it failed, crashed or was cancelled, ``TIMED_OUT`` when ``timeout`` passed first
    (after cancelling it if ``cancel_on_timeout``). Plain HTTP (the thin client): no Prefect import.

    ``flushed``: the flow sends its whole log before it reports its final state (``deploy-release`` does),
    so a Completed or Failed run is done once the log has been read after that state — no waiting for the
    engine's own closing line, which Prefect ships in a later batch (up to ~2 s)."""
    api = thin_api()
    if api is None:
        raise FerryError("no Prefect API is configured (PREFECT_API_URL) to follow the run on")
    run_id = str(flow_run_id)
    echo = echo or _print
    deadline = time.monotonic() + timeout if timeout is not None else None
    seen: set[str] = set()
    after: str | None = None
    paused_notified = False
    ended = [False]  # the engine's own last line ("Finished in state …") has been shown
    task_names: dict[str, str | None] = {}

    def task_of(log: dict[str, Any]) -> str | None:
        task_run_id = log.get("task_run_id")
        if not task_run_id:
            return None
        if str(task_run_id) not in task_names:
            task_names[str(task_run_id)] = api.task_run_name(str(task_run_id))
        return task_names[str(task_run_id)]

    def drain() -> int:
        nonlocal after
        shown = 0
        while True:
            logs = api.logs(run_id, after=after, limit=200)
            fresh = [log for log in logs if str(log["id"]) not in seen]
            for log in fresh:
                seen.add(str(log["id"]))
                echo(_format(log, task_of(log)))
                shown += 1
                if log.get("task_run_id") is None and str(log.get("message", "")).startswith("Finished in state"):
                    ended[0] = True
            if logs:
                after = str(logs[-1]["timestamp"])
            if len(fresh) < 200:
                return shown

    try:
        while True:
            asked = time.monotonic()
            drain()
            run = api.flow_run(run_id)
            if run.final:
                if run.state_type in ("COMPLETED", "FAILED") and flushed:
                    drain()  # lines sent just before the final state, after the read above
                else:
                    _drain_tail(drain, ended)
                return run.state_name, 0 if run.state_type == "COMPLETED" else 1
            if run.state_type == "PAUSED" and not paused_notified:
                paused_notified = True
                if on_pause is not None:
                    on_pause(run)
            elif run.state_type != "PAUSED":
                paused_notified = False
            if deadline is not None and time.monotonic() > deadline:
                if cancel_on_timeout:
                    _cancel(api, run_id, f"timed out after {timeout:g}s (--cancel-on-timeout)")
                    final = _wait_final(api, run_id, 60)
                    _drain_tail(drain, ended)
                    return final, TIMED_OUT
                return (run.state_name or "unknown"), TIMED_OUT
            pause = poll - (time.monotonic() - asked)
            if pause > 0:
                time.sleep(pause)
    except PrefectUnreachable as exc:
        raise FerryError(str(exc)) from None


def _drain_tail(drain: Callable[[], int], ended: list[bool]) -> None:
    """Log lines reach the API in batches (every ~2 s), some after the final state: read until the engine's
    closing line has been shown, or the log has been quiet for a while."""
    quiet_since = time.monotonic()
    give_up = time.monotonic() + 8
    while not ended[0] and time.monotonic() < give_up and time.monotonic() - quiet_since < 3:
        time.sleep(0.3)
        if drain():
            quiet_since = time.monotonic()


def _cancel(api: PrefectApi, flow_run_id: str, message: str) -> None:
    run = api.flow_run(flow_run_id)
    if run.final:
        return
    # A run nobody has picked up yet has no process to stop: cancel it outright.
    waiting = run.state_type in ("", "SCHEDULED")
    api.set_state(flow_run_id, "CANCELLED" if waiting else "CANCELLING", message)


def _wait_final(api: PrefectApi, flow_run_id: str, seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        run = api.flow_run(flow_run_id)
        if run.final:
            return run.state_name
        time.sleep(0.5)
    return "Cancelling"


def _format(log: dict[str, Any], task: str | None = None) -> str:
    """``HH:MM:SS | LEVEL   | step · target | message``: a streamed line keeps its task (step and target)."""
    from logging import getLevelName

    stamp = datetime.fromisoformat(str(log["timestamp"]).replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    where = f"{task} | " if task else ""
    return f"{stamp} | {getLevelName(int(log.get('level') or 20)):<7} | {where}{log.get('message', '')}"


def _print(line: str) -> None:
    print(line, flush=True)
    sys.stdout.flush()
