"""``ferry serve``: register each project's Prefect deployments (and its triggers as schedules) and run them.

Two ways to run the flow runs:

- **served** (default): this process is a Prefect runner. It polls the server every ``poll_seconds`` and
  starts each run in a pre-started interpreter (``flows.orchestration.warm_pool``), so a REST call from
  CI becomes a running deployment within ~2 s.
- **work pool** (``--work-pool NAME``): the deployments are registered on a process work pool and
  ``prefect worker start --pool NAME`` on as many machines as needed runs them (each imports the flows from
  ``flows.orchestration.served_flows`` and reads the shared ferry store, ``FERRY_DATABASE_URL``). This
  process then only keeps the registrations in step with the store and cancels expired runs.

Either way, every ``sync_seconds`` it re-reads the store: a project applied or changed since gets its
deployments (form, environments) and schedules updated, and scheduled runs whose expiry has passed before
they started are cancelled — together with their ferry deployment record — instead of being run late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import cloudpickle
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate, WorkPoolCreate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import EntrypointType
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.runner import Runner
from prefect.states import Cancelled, State

import flows.orchestration.served_flows
from flows.orchestration import deploy_form, warm_pool
from flows.orchestration.deploy_form import FormChoices
from flows.orchestration.health_serving import sync_health_checks
from flows.orchestration.runbook_serving import register_runbooks
from flows.orchestration.served_flows import ProjectSpec, deadline, load_specs, mark_record, project_flows
from flows.orchestration.served_runs import deployment_name
from snapshots.model.project import DeployLatestTrigger, PromoteTrigger
from snapshots.workspace import Workspace

logger = logging.getLogger("ferry.serve")

SCHEDULE_PREFIX = "ferry-trigger-"


@dataclass
class ServeOptions:
    projects: list[str] | None = None
    work_pool: str | None = None
    limit: int = 5
    poll_seconds: float = 0.2
    sync_seconds: float = 10.0
    warm: int = 1
    once: bool = False
    name: str = field(default_factory=lambda: f"ferry-{socket.gethostname()}")
    api: Any = None
    """The ferry server API to run next to the runner (``flows.server.app.ApiServer``: ``url`` and
    ``async serve(ctx)``), or None (``--no-api``). Passed in, so this module does not depend on the server."""


@dataclass
class Registered:
    """One registered deployment: which project/kind, and the spec it was built from."""

    deployment_id: UUID
    full_name: str
    kind: str
    spec: ProjectSpec


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def schedules_for(spec: ProjectSpec) -> dict[str, list[dict[str, Any]]]:
    """The project's cron triggers as Prefect schedules, per flow kind: {kind: [schedule create payloads]}."""
    out: dict[str, list[dict[str, Any]]] = {"deploy_release": [], "promote": []}
    for trigger in spec.triggers:
        if isinstance(trigger, DeployLatestTrigger):
            kind, parameters = "deploy_release", {"environment": trigger.environment, "release": "latest",
                                                  "expires_after": trigger.expires_after}
        elif isinstance(trigger, PromoteTrigger):
            kind, parameters = "promote", {"from_environment": trigger.from_, "to_environment": trigger.to,
                                           "expires_after": trigger.expires_after}
        else:
            continue
        if trigger.channel is not None:  # only when set: schedules of projects without channels stay as they were
            parameters["channel"] = trigger.channel
        out[kind].append({"slug": SCHEDULE_PREFIX + _slug(trigger.name), "active": trigger.enabled,
                          "parameters": parameters,
                          "schedule": {"cron": trigger.cron, "timezone": trigger.timezone}})
    return out


async def reconcile_schedules(client: PrefectClient, deployment_id: UUID, wanted: list[dict[str, Any]]) -> None:
    """Make the deployment's ferry-owned schedules (slug ``ferry-trigger-…``) exactly ``wanted``; schedules
    someone added by hand in the UI (other slugs) are left alone."""
    existing = {s.slug: s for s in await client.read_deployment_schedules(deployment_id)
                if s.slug and s.slug.startswith(SCHEDULE_PREFIX)}
    by_slug = {w["slug"]: w for w in wanted}
    for slug, current in existing.items():
        want = by_slug.get(slug)
        same = want is not None and (
            getattr(current.schedule, "cron", None) == want["schedule"]["cron"]
            and getattr(current.schedule, "timezone", None) == want["schedule"]["timezone"]
            and current.active == want["active"] and current.parameters == want["parameters"])
        if same:
            by_slug.pop(slug)
        else:
            await client.delete_deployment_schedule(deployment_id, current.id)
    if by_slug:
        await client.create_deployment_schedules(deployment_id, [
            DeploymentScheduleCreate(schedule=CronSchedule(**w["schedule"]), active=w["active"],
                                     parameters=w["parameters"], slug=w["slug"]) for w in by_slug.values()])


class Server:
    """Registers deployments, keeps them in step with the store, and sweeps expired scheduled runs."""

    def __init__(self, ctx: Workspace, options: ServeOptions, say: Callable[[str], None]) -> None:
        self.ctx, self.options, self.say = ctx, options, say
        self.runner: Runner | None = None
        self.registered: dict[tuple[str, str], Registered] = {}
        self._signature: dict[str, tuple[int, int, FormChoices | None]] = {}

    async def sync(self) -> None:
        """(Re-)register every project whose revision or infrastructure changed since the last sync, or whose
        form would offer other choices (a release created, a target added: ``flows.orchestration.deploy_form``)."""
        specs = await asyncio.to_thread(load_specs, self.ctx, self.options.projects)
        forms = await asyncio.to_thread(deploy_form.load_all, self.ctx, [(s.name, s.environments) for s in specs])
        for spec in specs:
            choices = forms.get(spec.name)
            signature = (spec.revision, spec.infrastructure_revision, choices)
            if self._signature.get(spec.name) == signature:
                continue
            await self.register(spec, choices)
            self._signature[spec.name] = signature
        # machine policies' health checks (issue 15): one interval-scheduled deployment per policy in use
        self._health = await sync_health_checks(self.ctx, self.runner, self.options.work_pool,
                                                getattr(self, "_health", None), self.say)

    async def register(self, spec: ProjectSpec, choices: FormChoices | None = None) -> None:
        flows = project_flows(spec)
        schedules = schedules_for(spec)
        pool = self.options.work_pool
        for kind, flow in flows.items():
            deployment = await flow.ato_deployment(
                name=deployment_name(spec.name), description=flow.description, tags=["ferry"],
                work_pool_name=pool, entrypoint_type=EntrypointType.MODULE_PATH, enforce_parameter_schema=True)
            deploy_form.apply(deployment, choices)  # the UI form: choices from the store, internals hidden
            deployment.entrypoint = f"{flow.fn.__module__}.{flow.fn.__name__}"
            if self.runner is not None:
                deployment_id = await self.runner.aadd_deployment(deployment)
                self.runner._deployment_registry.register_flow(deployment_id, flow)
            else:
                deployment_id = await deployment.aapply(work_pool_name=pool)
            async with get_client() as client:
                await reconcile_schedules(client, deployment_id, schedules.get(kind, []))
            full = f"{flow.name}/{deployment.name}"
            self.registered[(spec.name, kind)] = Registered(deployment_id, full, kind, spec)
        served_runbooks = await register_runbooks(self.ctx, spec.name, self.runner, pool)
        if served_runbooks:
            self.say(f"{spec.name}: runbooks registered: {', '.join(served_runbooks)}")
        triggers = sum(len(s) for s in schedules.values())
        where = f"work pool {pool}" if pool else "served here"
        self.say(f"{spec.name}: deploy-release, promote, rollback, create-release, plan-release registered ({where}); "
                 f"environments {', '.join(spec.environments)}; {triggers} scheduled trigger(s)"
                 + (f"; form offers {len(choices.releases)} release(s), {len(choices.targets)} target(s), "
                    f"{len(choices.steps)} skippable step(s)" if choices is not None else ""))

    async def sweep_expired(self) -> int:
        """Cancel scheduled runs of ferry's deployments whose ``expires_after`` passed before they started."""
        ids = [r.deployment_id for r in self.registered.values()]
        if not ids:
            return 0
        cancelled = 0
        now = datetime.now(UTC)
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=ids)), limit=200)
            for run in runs:
                expires_after = (run.parameters or {}).get("expires_after")
                expected = run.next_scheduled_start_time or run.expected_start_time
                limit = deadline(expected, expires_after)
                if limit is None or now <= limit:
                    continue
                message = (f"expired: scheduled for {expected:%Y-%m-%d %H:%M:%S} UTC, not started by "
                           f"{limit:%Y-%m-%d %H:%M:%S} UTC; cancelled instead of running late")
                cancel: State[None] = Cancelled(message=message)
                result = await client.set_flow_run_state(run.id, cancel, force=True)
                if str(getattr(result.status, "value", result.status)).upper() != "ACCEPT":
                    continue
                cancelled += 1
                self.say(f"flow run {run.name}: {message}")
                deployment_id = (run.parameters or {}).get("deployment_id")
                if deployment_id is not None:
                    await asyncio.to_thread(mark_record, int(deployment_id), "Cancelled", message)
        return cancelled

    async def tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.options.sync_seconds)
            try:
                await self.sync()
                await self.sweep_expired()
            except Exception as exc:  # a store or API hiccup must not stop serving
                logger.warning(f"sync failed (retrying in {self.options.sync_seconds:g}s): "
                               f"{type(exc).__name__}: {exc}")


async def ensure_work_pool(name: str) -> None:
    async with get_client() as client:
        try:
            await client.read_work_pool(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # another ferry serve was quicker
                await client.create_work_pool(WorkPoolCreate(name=name, type="process"))


async def run(options: ServeOptions, say: Callable[[str], None]) -> None:
    ctx = Workspace()
    server = Server(ctx, options, say)
    api_task = None
    if options.api is not None and not options.once:
        # Open the store and the feed once, before the API's threads share them.
        await asyncio.to_thread(lambda: (ctx.store, ctx.feed))
        api_task = asyncio.create_task(options.api.serve(ctx))
        api_task.add_done_callback(_api_stopped)
        say(f"ferry API on {options.api.url}/api/v1 (requesters: FERRY_SERVER={options.api.url} + FERRY_API_KEY)")
    if options.work_pool:
        await ensure_work_pool(options.work_pool)
    elif not options.once:
        server.runner = Runner(name=options.name, query_seconds=options.poll_seconds, limit=options.limit,
                               pause_on_shutdown=False)
        # The runner pickles each served flow into its run's process. Looking a flow up by reference would call
        # flows.orchestration.served_flows.__getattr__ — a store query per run — only to find a different
        # object: pickle by value.
        cloudpickle.register_pickle_by_value(flows.orchestration.served_flows)
    await server.sync()
    if not server.registered:
        say("no projects to serve yet: `ferry apply` one (ferry serve picks it up within "
            f"{options.sync_seconds:g}s)")
    await server.sweep_expired()
    if options.once:
        return
    try:
        await _serve(server, options, say)
    finally:
        if api_task is not None:
            api_task.cancel()


def _api_stopped(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        logger.error(f"the ferry API stopped: {type(exc).__name__}: {exc}")


async def _serve(server: Server, options: ServeOptions, say: Callable[[str], None]) -> None:
    ticker = asyncio.create_task(server.tick_forever())
    try:
        if server.runner is None:
            say(f"registered on work pool {options.work_pool!r}: start workers with "
                f"`prefect worker start --pool {options.work_pool}`; keeping registrations in step")
            await asyncio.Event().wait()
        else:
            pool = warm_pool.install(options.warm)
            say(f"serving (poll every {options.poll_seconds:g}s, up to {options.limit} runs at once, "
                f"{options.warm if pool else 0} warm process(es)); Ctrl-C stops")
            try:
                await server.runner.start()
            finally:
                warm_pool.uninstall()
    finally:
        ticker.cancel()
