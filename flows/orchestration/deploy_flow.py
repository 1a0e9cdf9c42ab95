"""The ``deploy-release`` Prefect flow: one flow run per deployment of one release to one environment."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import TagsContext
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Cancelled, State
from sqlalchemy import Connection

from flows.engine import prepared
from flows.engine.plan import DeploymentPlan, prepare
from flows.engine.request import freeze_parameters
from flows.orchestration import artifacts, events, ui_tags
from flows.orchestration.concurrency import ensure_limits, environment_limit, release_lease, slot, target_limit
from flows.orchestration.execution import Engine
from flows.orchestration.triggers import auto_deploy
from snapshots import releases
from snapshots.errors import ConfigError, ConflictError, DeploymentFailed, FerryError, NotFoundError, StepOutcome
from snapshots.store import prompted, records
from snapshots.store.freeze_overrides import note_override
from snapshots.variables.masking import install_masking_filter
from snapshots.variables.scopes import variable_key
from snapshots.versions import sort_key
from snapshots.workspace import Workspace

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
"""What Prefect's ``get_run_logger`` returns."""


def _run_name() -> str:
    params = current_flow_run.parameters
    return f"{params.get('project')} {params.get('release', 'latest')} → {params.get('environment')}"


@flow(name="deploy-release", flow_run_name=_run_name, persist_result=False, log_prints=False)
def deploy_release(project: str, environment: str, release: str = "latest", targets: list[str] | None = None,
                   exclude_targets: list[str] | None = None, skip_steps: list[str] | None = None,
                   variables: dict[str, str] | None = None, guided_failure: bool | None = None,
                   force: bool = False, deployment_id: int | None = None,
                   prompted_ref: str | None = None, actor: str | None = None, channel: str | None = None,
                   override_freeze: bool = False) -> dict[str, Any] | State:
    """Deploy a release of a project to an environment, rolling across its targets.

    Args:
        project: The project to deploy.
        environment: The environment to deploy to.
        release: A release version, or "latest".
        targets: Deploy only to these targets (default: every target in the environment).
        exclude_targets: Leave these targets out.
        skip_steps: Steps to skip (a step marked required cannot be skipped).
        variables: Values for prompted variables that are not sensitive, NAME: VALUE (a sensitive one is
            refused here: it would sit in Prefect's database in plain text).
        guided_failure: Pause on a failed step and ask a person (default: the environment's setting).
        force: Redeploy to targets whose journal says they already have this release.
        deployment_id: Internal: the ferry deployment record a CLI call created (its prompted values are
            read from the ferry store).
        prompted_ref: Internal: prompted values ferry's Prefect API proxy stored for this run.
        actor: Internal: who asked, for a record this run creates (the served flows name a run that came
            straight from Prefect: ``prefect-ui``, ``prefect-schedule``). Default: this process's user.
        channel: With release "latest": the latest release of this channel (default: the default channel).
        override_freeze: Deploy although a deployment freeze is in force (recorded on the deployment).
    """
    logger = get_run_logger()
    ctx = Workspace()
    flow_run_id = str(current_flow_run.id) if current_flow_run.id else None
    ui_tags.tag_current_run({"project": project, "environment": environment})
    direct = dict(variables or {})
    try:
        from_ref = _bundle_values(ctx, prompted_ref, project, flow_run_id) if prompted_ref else {}
        with ctx.store.begin() as conn:
            if deployment_id is not None:
                _check_record(conn, deployment_id, project, environment)
                stored = prompted.read(conn, ctx.vault, deployment_id)
            else:
                stored = from_ref
            # prepared once: the plan this process made when it recorded the deployment, if it did
            plan = prepared.take(deployment_id) or prepare(
                conn, ctx.feed, ctx.vault, project=project, release=release, environment=environment,
                targets=targets, exclude_targets=exclude_targets, skip_steps=skip_steps,
                variables={**direct, **stored}, guided_failure=guided_failure, force=force,
                channel=channel, override_freeze=override_freeze)
            _refuse_plain_secrets(plan, direct)
            if deployment_id is None:
                deployment_id = records.create(
                    conn, project=project, release_id=plan.current.release.id, environment=environment,
                    variable_snapshot_id=plan.current.variable_snapshot_id, actor=actor or ctx.actor,
                    parameters={"targets": targets, "exclude_targets": exclude_targets, "skip_steps": skip_steps,
                                "prompted": sorted({*direct, *stored}), "force": force,
                                **freeze_parameters(plan, actor or ctx.actor)})
                if prompted_ref and prompted.bundle_state(conn, prompted_ref) is not None:
                    prompted.claim_bundle(conn, prompted_ref, deployment_id=deployment_id, project=project,
                                          flow_run_id=flow_run_id)
                elif prompted_ref:  # a retry: the values the first attempt claimed, for this attempt's record
                    prompted.store_for_deployment(conn, ctx.vault, deployment_id, project, stored, ctx.actor)
            if plan.freeze is not None and plan.override_freeze:  # met as it starts (--at): who overrode it
                note_override(conn, deployment_id, plan.freeze.as_dict(), records.get(conn, deployment_id).created_by)
            records.set_state(conn, deployment_id, records.QUEUED, flow_run_id=flow_run_id)
    except CancelledBeforeStart as stop:
        return stop.state(ctx, logger)
    except FerryError as exc:
        if deployment_id is not None:
            with ctx.store.begin() as conn:
                records.set_state(conn, deployment_id, records.FAILED, error=str(exc), flow_run_id=flow_run_id)
        elif prompted_ref:  # no record will own them: the values go
            with ctx.store.begin() as conn:
                prompted.discard_bundle(conn, prompted_ref)
        events.emit_refused(str(exc), project=project, environment=environment, release=release,
                            actor=actor or ctx.actor, store=ctx.store, deployment_id=deployment_id)
        logger.error(str(exc))
        send_log()
        raise
    remove_filter = install_masking_filter(plan.current.masker)
    try:
        return _run(plan, deployment_id, ctx, logger)
    except CancelledBeforeStart as stop:
        return stop.state(ctx, logger)
    finally:
        send_log()
        remove_filter()


class CancelledBeforeStart(Exception):
    """The record was cancelled (``ferry deployment cancel``, the server API) while this run was still
    starting or waiting for its slots: the run ends Cancelled without touching a target. The record decides,
    not Prefect's state: a run forced Cancelled while its runner was starting the process goes Running
    again when the process proposes it, and would then deploy."""

    def __init__(self, deployment_id: int, reason: str | None) -> None:
        super().__init__(reason or "cancelled")
        self.deployment_id = deployment_id

    def state(self, ctx: Workspace, logger: Logger) -> State:
        message = f"deployment #{self.deployment_id} was cancelled before it started ({self}): nothing was done"
        logger.warning(message)
        events.emit_for(ctx.store, self.deployment_id, events.CANCELLED, error=str(self), flush=True)
        send_log()
        return Cancelled(message=message)


def send_log() -> None:
    """Send the run's log lines to the Prefect API now, before the engine sets the final state: a follower
    (``ferry deploy --wait``, the server API's log) that sees Completed/Failed then has the whole log and
    exits at once, instead of waiting for Prefect's next batch (every 2 s) or the process's exit."""
    from prefect.logging.handlers import APILogWorker

    try:  # what APILogHandler.flush does from sync code; the next line logged starts a new worker
        APILogWorker.drain_all(timeout=5, at_exit=False)
    except Exception:  # no API (a test's in-process run) or a broken connection: the lines come at exit
        logging.getLogger("ferry").debug("could not send the log before the final state", exc_info=True)


def _run(plan: DeploymentPlan, deployment_id: int, ctx: Workspace, logger: Logger,
         runbook: bool = False) -> dict[str, Any]:
    """Run a checked and recorded deployment — or, with ``runbook``, a runbook run: the same slots, heartbeat
    and engine, but no journal, no rollback, no release notes and no lifecycle auto-deploy."""
    limit = environment_limit(plan.project, plan.environment.name)
    target_limits = [target_limit(t.name) for t in plan.targets]
    ensure_limits([limit, *target_limits])
    # The run's tags (project:, environment:) stay on the flow run, for the UI's filters; its task runs get
    # none. A run the CLI starts itself is created inside Prefect's ``tags`` context, and each task run would
    # inherit them and look up a tag concurrency limit per tag: an API call per (step, target), ~4.5 ms each.
    with Heartbeat(ctx, deployment_id, logger), TagsContext(current_tags=set()):
        return _run_alive(plan, deployment_id, ctx, logger, limit, target_limits, runbook)


def _run_alive(plan: DeploymentPlan, deployment_id: int, ctx: Workspace, logger: Logger, limit: str,
               target_limits: list[str], runbook: bool = False) -> dict[str, Any]:
    version = plan.current.release.version
    told = False
    while True:  # a run with a heartbeat is watched here, so one that dies is reclaimed as soon as it falls silent
        _reclaim_dead(ctx, plan, deployment_id, logger)
        with ctx.store.read() as conn:
            others = [d for d in records.list_deployments(conn, plan.project, plan.environment.name)
                      if d.id != deployment_id and d.state in (records.RUNNING, records.PAUSED)]
            beating = [d for d in others if records.silent_for(conn, d.id) is not None]
        if others and not told:
            logger.info(f"waiting for deployment #{others[0].id} ({plan.project} {others[0].version} → "
                        f"{plan.environment.name}, {others[0].state.lower()}) to finish: concurrency limit {limit}")
            told = True
        if not beating:  # nothing, or only records of an older ferry (no heartbeat): the lease decides
            break
        time.sleep(WATCH_EVERY)

    def held(lease_id: str) -> None:
        with ctx.store.begin() as conn:
            records.add_lease(conn, deployment_id, lease_id)

    engine = Engine(plan=plan, deployment_id=deployment_id, store=ctx.store, feed=ctx.feed, vault=ctx.vault,
                    home=ctx.settings.home, created_by=ctx.actor, keep_journal=not runbook)
    # The first targets' sessions open (TCP, key exchange, authentication: ~0.1 s each over SSH) while the
    # slots are taken (Prefect API calls), not after. Only opened: nothing runs on a target before the slot.
    engine.pool.prefetch(plan.targets[:PREFETCH_FIRST])
    try:
        slots = _hold_slots(limit, target_limits, held)
    except BaseException:
        engine.pool.close()
        engine.writer.close()
        raise
    with slots:
        with ctx.store.begin() as conn:
            for other in records.list_deployments(conn, plan.project, plan.environment.name):
                if other.id != deployment_id and other.state in (records.RUNNING, records.PAUSED):
                    # We hold the environment's only slot, so that one's process is gone (killed or crashed).
                    records.set_state(conn, other.id, records.FAILED, error="abandoned: its process stopped")
            mine = records.get(conn, deployment_id)
            if mine.state == records.CANCELLED:  # cancelled while it waited for the slots
                engine.pool.close()
                engine.writer.close()
                raise CancelledBeforeStart(deployment_id, mine.error)
            records.set_state(conn, deployment_id, records.RUNNING)
        events.emit_state(ctx.store, deployment_id, records.RUNNING)
        logger.info(f"deployment #{deployment_id}: {plan.project} {version} → {plan.environment.name} "
                    f"({len(plan.targets)} target(s), variables revision {plan.current.variables_revision})")
        try:
            engine.run()
        except BaseException as exc:
            with ctx.store.begin() as conn:
                records.set_state(conn, deployment_id, records.FAILED,
                                  error=plan.current.masker.mask(f"{type(exc).__name__}: {exc}"))
            events.emit_state(ctx.store, deployment_id, records.FAILED,
                              error=plan.current.masker.mask(f"{type(exc).__name__}: {exc}"))
            raise
        masker = plan.current.masker
        error = "; ".join(engine.errors) if engine.failed else None
        with ctx.store.begin() as conn:
            records.set_state(conn, deployment_id, records.FAILED if engine.failed else records.SUCCESS,
                              error=masker.mask(error) if error else None,
                              no_change=engine.no_change is not None and not engine.failed)
        # the record is final: the artifacts and the event go out side by side, while the slots are released
        reports = _side_by_side([
            lambda: artifacts.summary_table(plan.project, plan.environment.name, engine.summary, masker,
                                            engine.board.log_links()),
            lambda: events.emit_state(ctx.store, deployment_id, records.FAILED if engine.failed else records.SUCCESS,
                                      error=masker.mask(error) if error else None),
            *([] if runbook else [lambda: _notes_artifact(plan, ctx),
                                  lambda: _dashboard_artifact(ctx, plan.project, logger)])], logger)
    reports()
    if engine.failed:
        outcomes = [StepOutcome(r["step"], r["target"], r["state"], masker.mask(r["message"]) if r["message"] else None)
                    for r in engine.summary]
        raise DeploymentFailed(masker.mask(f"deployment #{deployment_id} of {plan.project} {version} to "
                                           f"{plan.environment.name} failed: {error}"),
                               deployment_id=deployment_id, outcomes=outcomes)
    logger.info(f"deployment #{deployment_id}: {plan.project} {version} → {plan.environment.name} succeeded"
                + (" (no change)" if engine.no_change else ""))
    if not runbook:  # a runbook run moves no lifecycle
        _auto_deploy(ctx, plan.project, version, logger)
    return {"deployment_id": deployment_id, "project": plan.project, "release": version,
            "environment": plan.environment.name, "state": records.SUCCESS, "no_change": engine.no_change is not None}


def _side_by_side(jobs: list[Callable[[], None]], logger: Logger) -> Callable[[], None]:
    """Start ``jobs`` (Prefect API calls: artifacts, events), each in a thread with this run's context, and
    return what waits for them. One after another they took ~0.3 s at the end of every deployment, after its
    last step. A failure is a warning: the record already holds the outcome, and the UI's reports are no
    reason to fail a deployment that ran."""
    failures: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        try:
            job()
        except Exception as exc:  # reported by wait(), in the flow's thread
            failures.append(exc)

    threads = [threading.Thread(target=contextvars.copy_context().run, args=(run, job), name="ferry-report",
                                daemon=True) for job in jobs]
    for thread in threads:
        thread.start()

    def wait() -> None:
        for thread in threads:
            thread.join()
        for failure in failures:
            logger.warning(f"could not report this deployment to Prefect: {type(failure).__name__}: {failure}")
    return wait


PREFETCH_FIRST = 4
"""Targets whose sessions open while the deployment takes its concurrency slots."""


def _hold_slots(limit: str, target_limits: list[str], held: Callable[[str], None]) -> ExitStack:
    """The environment's slot and the targets' slots, held until the returned stack closes: taken in one
    all-or-nothing call under one lease (two calls and two leases cost ~0.15 s more at each start and end,
    measured; a run waiting for any of them holds none meanwhile, as before)."""
    stack = ExitStack()
    try:
        stack.enter_context(slot(limit, *target_limits, on_lease=held))
    except BaseException:
        stack.close()
        raise
    return stack


HEARTBEAT_EVERY = 2.0
"""Seconds between two stamps of the running deployment's record."""
DEAD_AFTER = 10.0
"""A record silent this long belongs to a process that is gone (killed, crashed, its machine off)."""
WATCH_EVERY = 1.0
"""Seconds between two looks at the deployment this one waits for."""


class Heartbeat:
    """Stamps the deployment record every ``HEARTBEAT_EVERY`` seconds while this process works on it, so a
    later deployment knows within seconds that a Running record is dead (the Prefect lease alone takes 60 s)."""

    def __init__(self, ctx: Workspace, deployment_id: int, logger: Logger) -> None:
        self.ctx, self.deployment_id, self.logger = ctx, deployment_id, logger
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"ferry-heartbeat-{deployment_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._stamp()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _stamp(self) -> None:
        with self.ctx.store.begin() as conn:
            records.heartbeat(conn, self.deployment_id)

    def _beat(self) -> None:
        failing = False
        while not self._stop.wait(HEARTBEAT_EVERY):
            try:
                self._stamp()
                failing = False
            except Exception as exc:  # the store is briefly unreachable: say so once, keep trying
                if not failing:
                    self.logger.warning(f"deployment #{self.deployment_id}: heartbeat failed: {type(exc).__name__}")
                failing = True


def _reclaim_dead(ctx: Workspace, plan: DeploymentPlan, deployment_id: int, logger: Logger) -> None:
    """Records of this project and environment whose process stopped beating: mark them Failed and free the
    concurrency slots they held, so this deployment starts now rather than when their leases run out."""
    dead: list[tuple[int, float, list[str]]] = []
    with ctx.store.begin() as conn:
        for other in records.list_deployments(conn, plan.project, plan.environment.name):
            if other.id == deployment_id or other.state in records.FINISHED:
                continue
            leases = records.leases(conn, other.id)
            if other.state == records.QUEUED and not leases:
                continue  # waiting for its turn (or never started): it holds nothing
            silent = records.silent_for(conn, other.id)
            if silent is None or silent < DEAD_AFTER:
                continue
            records.set_state(conn, other.id, records.FAILED,
                              error=f"abandoned: its process stopped (no heartbeat for {silent:.0f}s)")
            dead.append((other.id, silent, leases))
    for other_id, silent, leases in dead:
        freed = sum(release_lease(lease) for lease in leases)
        logger.info(f"deployment #{other_id} sent no heartbeat for {silent:.0f}s: its process is gone; marked "
                    f"Failed and freed {freed} concurrency lease(s)")


def _bundle_values(ctx: Workspace, ref: str, project: str, flow_run_id: str | None,
                   wait: float = 10.0) -> dict[str, str]:
    """The values ferry's Prefect API proxy stored for this run. The proxy binds the bundle to the flow run
    right after Prefect answers; a run may start a moment before that, so wait for it briefly. A bundle bound
    to another run (these parameters copied into a new run) is refused."""
    deadline = time.monotonic() + wait
    while True:
        with ctx.store.read() as conn:
            state = prompted.bundle_state(conn, ref)
            if state is None:
                again = prompted.reclaim(conn, ctx.vault, ref, flow_run_id)
                if again is not None:  # Prefect's Retry of this same flow run
                    return again
                raise NotFoundError("the prompted values this run refers to are gone (already used by another "
                                    "run, or never stored): start the deployment again")
            owner, bound = state
            if owner != project:
                raise ConflictError(f"the prompted values this run refers to were given for {owner}, not {project}")
            if bound is not None:
                if bound != flow_run_id:
                    raise ConflictError("the prompted values this run refers to belong to another flow run: start "
                                        "the deployment again")
                return prompted.read_bundle(conn, ctx.vault, ref)
        if time.monotonic() > deadline:
            raise ConflictError("the prompted values this run refers to were never bound to it by ferry's Prefect "
                                "API proxy: start the deployment again")
        time.sleep(0.2)


def _refuse_plain_secrets(plan: DeploymentPlan, direct: dict[str, str]) -> None:
    """A sensitive prompted value given as a plain flow parameter (straight to the Prefect API, not through
    ferry's API or its Prefect proxy) already sits in Prefect's database: refuse to use it, so the mistake
    is seen and the secret changed, rather than working silently."""
    if not direct:
        return
    given = {variable_key(n) for n in direct} | {n.strip().casefold() for n in direct}
    for var in plan.current.release.variables.variables:
        prompt = var.get("prompt")
        if not (prompt and var.get("sensitive")):
            continue
        label = (prompt.get("label") or "").casefold()
        if variable_key(var["name"]) in given or (label and label in given):
            raise ConfigError(f"prompted variable {var['name']!r} is sensitive but arrived as a plain Prefect "
                              "parameter (it is now in Prefect's database: change it); give it through `ferry "
                              "deploy`, the ferry API or the Prefect UI pointed at ferry's Prefect proxy")


def _check_record(conn: Connection, deployment_id: int, project: str, environment: str) -> None:
    """The record a CLI created must be this deployment's: a mismatch means the CLI and the process running
    the flow (``ferry serve``, a worker) use different ferry stores — refuse rather than write into a
    stranger's record."""
    try:
        found = records.get(conn, deployment_id)
    except NotFoundError:
        raise FerryError(f"deployment #{deployment_id} is not in this ferry store: the command that started it and "
                         "the process running it use different stores (set the same FERRY_DATABASE_URL)") from None
    if (found.project, found.environment) != (project, environment):
        raise FerryError(f"deployment #{deployment_id} in this ferry store is {found.project} → {found.environment}, "
                         f"not {project} → {environment}: the command that started it and the process running it "
                         "use different stores (set the same FERRY_DATABASE_URL)")
    if found.state == records.CANCELLED:
        raise CancelledBeforeStart(deployment_id, found.error)


def _auto_deploy(ctx: Workspace, project: str, version: str, logger: Logger) -> None:
    """A success may complete a lifecycle phase: start the next auto-deploy environments (never fails the
    deployment that just succeeded)."""
    try:
        auto_deploy(ctx, project, version, logger.info)
    except Exception as exc:
        logger.warning(f"lifecycle auto-deploy after this deployment failed: {type(exc).__name__}: {exc}")


def _dashboard_artifact(ctx: Workspace, project: str, logger: Logger) -> None:
    try:
        artifacts.dashboard_table(ctx, project)
    except Exception as exc:  # the UI's dashboard is no reason to fail a deployment that ran
        logger.warning(f"could not update the dashboard artifact: {type(exc).__name__}: {exc}")


def _notes_artifact(plan: DeploymentPlan, ctx: Workspace) -> None:
    """Release notes of every release after the environment's previous one, up to this one (by version)."""
    current = plan.current.release
    previous = plan.current.previous_for_environment
    with ctx.store.read() as conn:  # only the releases in range are read (not every snapshot the project has)
        wanted = [v for v in releases.newest_first(conn, plan.project)
                  if sort_key(v) <= sort_key(current.version)
                  and (previous is None or sort_key(v) > sort_key(previous))]
        chosen = [r for r in (releases.find(conn, plan.project, v) for v in wanted) if r is not None]
    artifacts.release_notes(plan.project, plan.environment.name,
                            [(r.version, r.snapshot.get("notes", "")) for r in chosen], plan.current.masker)
