"""Running a deployment plan: process items in order, rolling steps across targets, each (step, target)
a Prefect task named ``"<step> · <target>"`` so the Prefect UI reads like the process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import FlowPauseTimeout

from flows.engine.balancer_guard import guard_for
from flows.engine.early_checks import start_after_smoke_test
from flows.engine.outputs import DeploymentOutputs
from flows.engine.plan import DeploymentPlan, ReleasePlan, release_plan, resolve_rolling
from flows.engine.results import ResultWriter
from flows.engine.rolling import FAILED, SKIPPED, SUCCESS, Outcome, check_min_healthy, roll
from flows.orchestration import events
from flows.orchestration.pauses import FailureAnswer, ManualAnswer, ask_failure, ask_manual
from flows.orchestration.progress_board import ProgressBoard
from snapshots import releases
from snapshots.errors import ConnectionLost, FerryError, TransportError
from snapshots.model import ParentStep, ProcessItem, Target
from snapshots.model.steps import LoadBalancerStep, ManualStep, Rolling, Step
from snapshots.octostache import evaluate_condition, render
from snapshots.store import Store, now, records
from snapshots.store.crypto import Vault
from snapshots.store.feed import Feed
from snapshots.variables.scopes import ScopeContext, VariableSet, system_variables
from steps import journal
from steps.context import StepContext
from steps.kinds import executor
from steps.kinds.haproxy import LoadBalancerError
from steps.kinds.load_balancer import DEFAULT_SERVER, balancer_client
from steps.transports.pool import TransportPool
from steps.transports.protocol import Transport
from steps.transports.service_messages import capture

PAUSE_TIMEOUT = 3600
PROGRESS_EVERY = 1.0


@dataclass
class Unit:
    """A process item as it runs: a parent's children, or one top-level step on its own."""

    item: ProcessItem
    children: list[Step]
    rolling: Rolling | None
    roles: list[str]


def unit_of(item: ProcessItem) -> Unit:
    if isinstance(item, ParentStep):
        return Unit(item, list(item.steps), item.rolling, list(item.roles))
    return Unit(item, [item], None, list(item.roles))


@task(name="step", task_run_name="{label}", cache_policy=NO_CACHE, persist_result=False)
def step_task(label: str, action: Callable[[], None]) -> None:
    """One (step, target): the Prefect UI shows each as its own task run."""
    action()


@dataclass
class Engine:
    plan: DeploymentPlan
    deployment_id: int
    store: Store
    feed: Feed
    vault: Vault
    home: Path
    created_by: str
    pool: TransportPool = field(init=False)
    failed: bool = False
    aborted: bool = False
    errors: list[str] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _journal: dict[str, tuple[bool, dict[str, Any]]] = field(default_factory=dict)
    """target → (already at this release?, its journal entry as this run found it)."""
    _progress: UUID | None = None
    _units_total: int = 0
    _units_done: int = 0
    _causes: dict[str, str] = field(default_factory=dict)
    """target → the last failure's message, so the deployment's error says why, not only where."""
    shared: dict[str, Any] = field(default_factory=dict)
    """Lives for the whole deployment, handed to every step (load-balancer models and clients)."""
    keep_journal: bool = True
    """False for a runbook run: it neither reads nor writes a target's journal (the release a target holds) and
    never rolls a target back to an earlier release."""
    no_change: str | None = None
    """Set when every target already had the release, so nothing ran: the one line that says so."""

    def __post_init__(self) -> None:
        self.pool = TransportPool(self.home)
        self.shared["load_balancers"] = {lb.name: lb for lb in self.plan.infra.load_balancers}
        self.shared["ssh_for"] = self._ssh_for
        self.shared["certificates"] = self.plan.certificates
        self.unavailable: dict[str, str] = {}
        """Targets skipped as unreachable under a machine policy with unavailable_targets: skip → why."""
        self.logger = get_run_logger()
        self.writer = ResultWriter(self.store, self.deployment_id)
        self.outputs = DeploymentOutputs(self.store, self.vault, self.deployment_id, self.plan.current.masker)
        self._progress_at = 0.0
        self.board = ProgressBoard(self.plan.project, self.plan.environment.name, [t.name for t in self.plan.targets])

    # ----------------------------------------------------------------------------------------- driving
    def run(self) -> None:
        plan = self.plan
        units = [unit_of(item) for item in plan.current.process]
        self._last_unit = {t.name: max((i for i, u in enumerate(units) if set(u.roles) & set(t.roles)), default=-1)
                           for t in plan.targets}
        self._units_total = sum(len(self._targets_for(u)) for u in units if not _is_worker_only(u)) or 1
        self.board.last_steps = {t: units[i].children[-1].name for t, i in self._last_unit.items() if i >= 0}
        self.board.flush()
        for warning in plan.warnings:
            self.logger.warning(warning)
        for name, why in plan.excluded.items():
            self._record("Machine policy", name, SKIPPED, 0, why)
            self.logger.warning(f"{name}: {why}")
        try:
            current = self._all_current(units)
            if current:
                self._nothing_to_do(units, current)
                return
            for index, unit in enumerate(units):
                if self.aborted:
                    self._record(unit.item.name, None, SKIPPED, 0, "deployment aborted")
                    continue
                reason = self._skip_reason(unit.item, None)
                if reason:
                    self._record(unit.item.name, None, SKIPPED, 0, reason)
                    self.log(f"skipping {unit.item.name!r}: {reason}")
                    continue
                if not self._condition_holds(unit.item, self.failed, self._variables(plan.current, unit.item, None)):
                    self._record(unit.item.name, None, SKIPPED, 0, f"condition {unit.item.condition!r} not met")
                    continue
                self._run_unit(index, unit, plan.current)
        finally:
            if self.unavailable:
                self.logger.warning(f"{len(self.unavailable)} target(s) skipped as unreachable (machine policy): "
                                    + ", ".join(sorted(self.unavailable)))
            self.pool.close()
            self.writer.close()
            self.board.finish()

    def _all_current(self, units: list[Unit]) -> list[Target]:
        """Does every target of this deployment already have the release, with nothing left to finish? Not when
        forced or for a runbook; not for a target whose journal has an unfinished unit's marker, or whose unit
        would find it out of its load balancer (issue 13: those still get their remaining steps). A target
        that cannot be read (unreachable) is no answer either: the ordinary run reports it. Stops at the first
        target that is not current, so a deployment with work to do reads one journal here (kept for its run).
        Returns the targets (all current), or [] when there is something to do."""
        if not self.keep_journal or self.plan.force:
            return []
        on_targets = [u for u in units if _on_targets(u)]
        touched = [t for t in self.plan.targets if any(set(t.roles) & set(u.roles) for u in on_targets)]
        if not touched or any(not self._targets_for(u) for u in on_targets):
            return []  # a step without targets fails (or is allowed) as in any run: the ordinary run says which
        try:
            for target in touched:
                if not self._already_current(target):
                    return []
                with self._lock:
                    entry = self._journal[target.name][1]
                if entry.get(journal.IN_PROGRESS):
                    return []
                if any(set(target.roles) & set(u.roles) and self._out_of_balancer(u, target, self.plan.current)
                       for u in on_targets):
                    return []
        except FerryError:
            return []
        return touched

    def _nothing_to_do(self, units: list[Unit], current: list[Target]) -> None:
        """Every target is current: say so once, record each (step, target) as skipped, run nothing."""
        version = self.plan.current.release.version
        count = len(current)
        self.no_change = f"all {count} target{'s' if count != 1 else ''} already have {version}; --force redeploys"
        self.log(f"nothing to deploy: {self.no_change}")
        for unit in units:
            targets = self._targets_for(unit) if _on_targets(unit) else []
            if not targets:
                self._record(unit.item.name, None, SKIPPED, 0, f"nothing to deploy: {self.no_change}")
            for target in targets:
                for child in unit.children:
                    self._record(child.name, target.name, SKIPPED, 0,
                                 f"already at {version} (journal); use --force to redeploy")
                self._unit_done()

    def _targets_for(self, unit: Unit) -> list[Target]:
        return [t for t in self.plan.targets if set(t.roles) & set(unit.roles)]

    def _run_unit(self, index: int, unit: Unit, release: ReleasePlan) -> None:
        item = unit.item
        if not isinstance(item, ParentStep) and item.kind == "manual":
            self._run_manual(item, release)
            return
        if not isinstance(item, ParentStep) and _is_worker_only(unit):
            ok = self._leaf(item, None, release)
            if not ok:
                self.failed = True
            return
        targets = self._targets_for(unit)
        if not targets:
            self._no_targets(unit)
            return
        rolling = resolve_rolling(release, item, self.plan.environment.name) \
            if isinstance(item, ParentStep) and item.rolling else None
        role_targets = [t for t in self.plan.environment_targets if set(t.roles) & set(unit.roles)]
        cap = check_min_healthy(len(role_targets), int(rolling.min_healthy), f"step {item.name!r}") if rolling else None
        guidance: Callable[[Target, Outcome], str] | None = self._guidance if self.plan.guided_failure else None
        # min_healthy counts servers UP in the balancer when the step takes targets out of one
        guard = guard_for(unit.children, self.shared, role_targets, targets, int(rolling.min_healthy),
                          lambda step, t: self._server_of(step, t, release), self.log) if rolling else None
        run = lambda target, start: self._chain(index, unit, target, start, release)  # noqa: E731
        if guard:
            targets, run, guidance = guard.order(targets), guard.wrap(run), guard.wrap_guidance(guidance)
        self.board.unit(item.name, rolling.window if rolling else len(targets))
        if rolling:  # later targets' sessions open while the first ones deploy, not when their turn comes
            self.pool.prefetch(targets)
        result = roll(targets, run, window=rolling.window if rolling else len(targets),
                      max_failures=rolling.max_failures if rolling else len(targets),
                      max_out_of_service=cap, in_service_deficit=guard.deficit if guard else None,
                      guidance=guidance)
        for target in result.not_started:
            for child in unit.children:
                self._record(child.name, target.name, "NotStarted", 0, "not started: the rollout stopped")
        if result.aborted:
            self.aborted = True
        if result.failed or result.aborted or result.not_started:
            self.failed = True
            first = next((o.message for o in result.outcomes.values() if o.status == FAILED and o.message), None)
            self.errors.append(f"{item.name}: {result.failed} target(s) failed"
                               + (f", {len(result.not_started)} not started" if result.not_started else "")
                               + (f" ({guard.blocked})" if guard and guard.blocked and result.not_started else "")
                               + (f"; {first}" if first else ""))
            if rolling and rolling.auto_rollback and self.keep_journal:
                updated = [t for i, t in enumerate(targets)
                           if result.outcomes.get(i, Outcome(FAILED)).status == SUCCESS]
                self._rollback(unit, updated)

    def _no_targets(self, unit: Unit) -> None:
        """A step that finds no target fails the deployment (as Octopus does) unless the step or the project
        allows it: a role typo or an over-eager --exclude-target must not pass for a deployment."""
        item, env = unit.item, self.plan.environment.name
        with_role = [t.name for t in self.plan.environment_targets if set(t.roles) & set(unit.roles)]
        if with_role:
            why = (f"every target in {env} with role(s) {', '.join(unit.roles)} was left out of this deployment "
                   f"(--target/--exclude-target): {', '.join(with_role)}")
        else:
            why = f"no target in {env} has role(s) {', '.join(unit.roles)}"
        if item.allow_no_targets or self.plan.current.release.snapshot.get("allow_no_targets", False):
            self.log(f"step {item.name!r}: {why}; nothing to do (allow_no_targets)")
            self._record(item.name, None, SKIPPED, 0, f"{why} (allow_no_targets)")
            return
        self.logger.error(f"step {item.name!r}: {why}")
        self._record(item.name, None, FAILED, 0, f"{why}; set allow_no_targets: true to allow it")
        self.failed = True
        self.errors.append(f"{item.name}: {why} (allow_no_targets: true on the step or project allows it)")

    def _chain(self, index: int, unit: Unit, target: Target, start: int, release: ReleasePlan,
               rolling_back: bool = False) -> Outcome:
        """The unit's steps in order on one target (holding that target's concurrency slot)."""
        if target.name in self.unavailable:  # found unreachable by an earlier unit: skipped again
            return self._skipped(unit, start, target, self.unavailable[target.name])
        try:
            resume = self.keep_journal and not rolling_back and not self.plan.force
            current = resume and self._already_current(target)
            done, why = self._unfinished(index, unit, target, release, current) if resume else ({}, None)
            if self.keep_journal and (not current or why is not None):
                self._mark(target, release, index, unit, done)
        except FerryError as exc:  # e.g. the target is unreachable: say so, as a failure of its first step
            why = self._unavailable(target, exc)
            if why is not None:
                return self._skipped(unit, start, target, why)
            message = self.plan.current.masker.mask(f"{type(exc).__name__}: {exc}")
            self.logger.error(message)
            self._record(unit.children[start].name, target.name, FAILED, 1, message)
            self._unit_done()
            return Outcome(FAILED, start, f"{unit.children[start].name} failed on {target.name}: {message}")
        if current and why is None:
            for child in unit.children[start:]:
                self._record(child.name, target.name, SKIPPED, 0,
                             f"already at {release.release.version} (journal); use --force to redeploy")
            self._unit_done()
            return Outcome(SUCCESS, None, "already current")
        failed_at: int | None = None
        for i in range(start, len(unit.children)):
            child = unit.children[i]
            if i in done:
                self._record(child.name, target.name, SKIPPED, 0, done[i])
                continue
            reason = self._skip_reason(child, target)
            if reason:
                self._record(child.name, target.name, SKIPPED, 0, reason)
                continue
            variables = self._variables(release, child, target)
            # a top-level step is its own unit: its condition looks at the whole deployment's outcome
            failed = failed_at is not None or (not isinstance(unit.item, ParentStep) and self.failed)
            if not self._condition_holds(child, failed, variables):
                self._record(child.name, target.name, SKIPPED, 0, f"condition {child.condition!r} not met")
                continue
            if not self._leaf(child, target, release, variables):
                failed_at = i if failed_at is None else failed_at
                continue
            if failed_at is None:  # a smoke test that passed right before `add` starts HAProxy's checks now
                start_after_smoke_test(unit.children, i, target, shared=self.shared, log=self.log,
                                       skip_reason=lambda step: self._skip_reason(step, target),
                                       server_of=lambda step, t: self._server_of(step, t, release))
            if failed_at is None and self.keep_journal:
                done[i] = f"done in deployment #{self.deployment_id}, which stopped before the unit ended"
                try:
                    self._mark(target, release, index, unit, done)
                except FerryError as exc:  # e.g. the connection dropped: the next step says so itself
                    self.logger.warning(self.plan.current.masker.mask(f"{target.name}: journal not updated: {exc}"))
        if failed_at is None and self.keep_journal:
            try:
                if self._last_unit.get(target.name) == index:
                    self._write_journal(target, release)
                else:
                    journal.clear(self._journal_of(target), self.plan.project, self.plan.environment.name)
            except FerryError as exc:  # the unit ran, but the next run could not know it: it is not finished
                failed_at = len(unit.children) - 1
                self._causes[target.name] = self.plan.current.masker.mask(f"the journal could not be written: {exc}")
                self.logger.error(self._causes[target.name])
                self.failed = True
        self._unit_done()
        if failed_at is not None:
            cause = self._causes.get(target.name)
            return Outcome(FAILED, failed_at, f"{unit.children[failed_at].name} failed on {target.name}"
                           + (f": {cause}" if cause else ""))
        return Outcome(SUCCESS)

    def _unavailable(self, target: Target, exc: FerryError) -> str | None:
        """Why ``target`` is skipped when connecting to it failed and its machine policy says
        ``unavailable_targets: skip`` (Octopus: skip deployment targets if they are or become unavailable);
        None: the failure fails the deployment, as by default."""
        if not isinstance(exc, TransportError) or exc.operation != "connect":
            return None
        policy = self.plan.infra.policy_of(target)
        if policy.unavailable_targets != "skip":
            return None
        detail = str(exc).removeprefix(f"{target.name}: ")
        why = self.plan.current.masker.mask(f"skipped: unreachable ({detail}); machine policy {policy.name!r}")
        with self._lock:
            self.unavailable[target.name] = why
        self.logger.warning(f"{target.name}: {why}")
        return why

    def _skipped(self, unit: Unit, start: int, target: Target, why: str) -> Outcome:
        for child in unit.children[start:]:
            self._record(child.name, target.name, SKIPPED, 0, why)
        self._unit_done()
        return Outcome(SKIPPED, None, why)

    # ----------------------------------------------------------------------------------------- one step
    def _leaf(self, step: Step, target: Target | None, release: ReleasePlan,
              variables: VariableSet | None = None) -> bool:
        """Run one (step, target) as a Prefect task; ``variables``: those its condition was just checked with
        (resolved once, not again for the step)."""
        label = f"{step.name} · {target.name if target else 'worker'}"
        state = step_task(label, lambda: self._execute(step, target, release, variables), return_state=True)
        return bool(state.is_completed())

    def _execute(self, step: Step, target: Target | None, release: ReleasePlan,
                 resolved: VariableSet | None = None) -> None:
        logger = get_run_logger()
        masker = release.masker
        started = now()
        if target is not None:
            self.board.started(target.name, step.name)
        variables = resolved if resolved is not None else self._variables(release, step, target)
        transport = self.pool.get(target) if step.run_on == "target" and target is not None else self.pool.worker()
        # values the script sets (set_octopusvariable) leave its output here, before anything logs a line
        transport = capture(transport, self.outputs.receiver(step.name, target.name if target else None,
                                                             lambda line: logger.info(masker.mask(line))),
                            lambda line: logger.warning(masker.mask(line)))
        ctx = StepContext(
            deployment_id=self.deployment_id, project=self.plan.project, release=release.release.version,
            environment=self.plan.environment.name, step=step, target=target, transport=transport,
            variables=variables,
            render=lambda text, where: render(text, variables, where=where,
                                              strict=release.release.snapshot.get("strict_variables", True)),
            log=lambda line: logger.info(masker.mask(line)), packages=release.packages, shared=self.shared)
        attempts = step.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                executor(step.kind)(ctx)
            except Exception as exc:
                lost = exc if isinstance(exc, ConnectionLost) else exc.__cause__
                if isinstance(lost, ConnectionLost):
                    message = masker.mask(f"connection to {lost.target} lost during {step.name}"
                                          + (f" ({lost.detail})" if lost.detail else ""))
                else:
                    message = masker.mask(str(exc) if isinstance(exc, FerryError)
                                          else f"{type(exc).__name__}: {exc}")
                tail = getattr(exc, "output_tail", [])
                if tail:
                    message += " | last output: " + masker.mask(" / ".join(tail[-5:]))
                if attempt < attempts:
                    logger.warning(f"attempt {attempt}/{attempts} failed: {message}; retrying in {step.retry_delay:g}s")
                    time.sleep(step.retry_delay)
                    continue
                logger.error(message)
                self._record(step.name, target.name if target else None, FAILED, attempt, message, started)
                self._causes[target.name if target else "worker"] = message
                raise StepError(message) from None
            self._record(step.name, target.name if target else None, SUCCESS, attempt, None, started)
            return

    def _server_of(self, step: LoadBalancerStep, target: Target, release: ReleasePlan) -> str:
        """The target's server name in a load-balancer step's backend (as the step itself renders it)."""
        if step.server == DEFAULT_SERVER and target.balancer_server:
            return target.balancer_server
        return render(step.server, self._variables(release, step, target), where=f"step {step.name!r} server").strip()

    def _ssh_for(self, netloc: str) -> Transport:
        """The SSH session to an ``ssh://user@host[:port]/socket`` balancer node: a target with that login."""
        user, _, hostport = netloc.rpartition("@")
        host, _, port = hostport.partition(":")
        for target in self.plan.infra.targets:
            spec = target.transport
            if (spec.kind == "ssh" and spec.host == host and (not user or spec.user == user)
                    and (not port or spec.port == int(port))):
                return self.pool.get(target)
        raise FerryError(f"no ssh target in the infrastructure logs in as {netloc} (needed for its HAProxy socket)")

    # ----------------------------------------------------------------------------------------- people
    def _guidance(self, target: Target, outcome: Outcome) -> str:
        step = outcome.message
        description = (f"**Guided failure** — deployment #{self.deployment_id} of {self.plan.project} "
                       f"{self.plan.current.release.version} to {self.plan.environment.name}\n\n"
                       f"{self.plan.current.masker.mask(step)}.\n\n"
                       "Choose **retry** (run the failed step again), **skip** (leave this target out), "
                       "**ignore** (carry on as if it succeeded) or **abort**. "
                       f"Or from a shell: `ferry deployment answer {self.deployment_id} retry`")
        self.log(f"guided failure: {step}; waiting for an answer (ferry deployment answer {self.deployment_id} ...)")
        action, notes = self._pause(ask_failure, description, PAUSE_TIMEOUT)
        self._record("Guided failure", target.name, action, 0, notes or None)
        self.log(f"guided failure on {target.name}: {action}" + (f" ({notes})" if notes else ""))
        return action

    def _pause(self, ask: Callable[[str, int], FailureAnswer | ManualAnswer], description: str,
               timeout: int) -> tuple[str, str]:
        """Pause the flow run until a person answers; no answer in time is an abort (the deployment fails)."""
        self._set_state(records.PAUSED)
        events.emit_state(self.store, self.deployment_id, records.PAUSED)
        try:
            answer = ask(description, timeout)
            return answer.action, answer.notes
        except FlowPauseTimeout:
            return "abort", f"no answer within {timeout}s"
        finally:
            self._set_state(records.RUNNING)

    def _run_manual(self, step: ManualStep, release: ReleasePlan) -> None:
        variables = self._variables(release, step, None)
        instructions = render(step.instructions, variables, where=f"step {step.name!r} instructions", strict=False)
        description = (f"**Manual intervention: {step.name}** — deployment #{self.deployment_id} of "
                       f"{self.plan.project} {release.release.version} to {self.plan.environment.name}\n\n"
                       f"{release.masker.mask(instructions)}\n\n"
                       f"Answer **proceed** or **abort** (or `ferry deployment answer {self.deployment_id} proceed`).")
        who = f"{step.responsible} (or anyone whose key may answer in {self.plan.environment.name})" \
            if step.responsible else f"anyone whose key may answer in {self.plan.environment.name}"
        self.log(f"manual intervention {step.name!r}: waiting for proceed/abort — "
                 f"{' '.join(release.masker.mask(instructions).split())} — who may answer: {who}; "
                 f"`ferry deployment answer {self.deployment_id} proceed|abort [--notes TEXT]`")
        started = now()
        action, notes = self._pause(ask_manual, description, int(step.timeout) if step.timeout else PAUSE_TIMEOUT)
        state = SUCCESS if action == "proceed" else FAILED
        self._record(step.name, None, state, 1, f"{action}" + (f": {notes}" if notes else ""), started)
        self.log(f"manual intervention {step.name!r}: {action}" + (f" ({notes})" if notes else ""))
        if action != "proceed":
            self.failed = self.aborted = True
            self.errors.append(f"{step.name}: aborted by a person" + (f" ({notes})" if notes else ""))

    # ----------------------------------------------------------------------------------------- rollback
    def _rollback(self, unit: Unit, updated: list[Target]) -> None:
        if not updated:
            self.log("auto-rollback: no target was updated; nothing to roll back")
            return
        with self.store.read() as conn:
            previous = records.last_successful(conn, self.plan.project, self.plan.environment.name,
                                               other_than_release=self.plan.current.release.id)
            if previous is None:
                self.log("auto-rollback: no earlier successful release in this environment; nothing to roll back to")
                return
            earlier = releases.require(conn, self.plan.project, previous.version)
            # the earlier release's secrets join the same masker: both releases' values stay hidden
            prev_plan = release_plan(conn, self.feed, self.vault, earlier, self.plan.environment.name, {},
                                     masker=self.plan.current.masker)
        match = next((u for u in map(unit_of, prev_plan.process) if u.item.name == unit.item.name), None)
        if match is None:
            self.log(f"auto-rollback: release {earlier.version} has no step {unit.item.name!r}; cannot roll back")
            return
        self.log(f"auto-rollback: redeploying {earlier.version} to {', '.join(t.name for t in updated)}")
        index = prev_plan.process.index(match.item)
        for target in updated:
            self._last_unit[target.name] = index
        result = roll(updated, lambda t, start: self._chain(index, match, t, start, prev_plan, rolling_back=True),
                      window=resolve_rolling(prev_plan, match.item, self.plan.environment.name).window
                      if isinstance(match.item, ParentStep) and match.item.rolling else len(updated),
                      max_failures=len(updated))
        state = "rolled back" if not result.failed else f"rollback failed on {result.failed} target(s)"
        self.errors.append(f"auto-rollback to {earlier.version}: {state}")

    # ----------------------------------------------------------------------------------------- helpers
    def _variables(self, release: ReleasePlan, step: Step | ParentStep, target: Target | None) -> VariableSet:
        plan = self.plan
        context = ScopeContext(environment=plan.environment.name, target=target.name if target else None,
                               roles=tuple(target.roles) if target else (), step=step.name, channel=release.channel)
        system = system_variables(
            project=plan.project, release_number=release.release.version,
            release_notes=release.release.snapshot.get("notes", ""), release_created=release.release.created_at,
            previous_for_environment=release.previous_for_environment, environment=plan.environment.name,
            machine_name=target.name if target else None,
            machine_hostname=target.machine_hostname if target else None,
            machine_roles=target.roles if target else None, deployment_id=self.deployment_id,
            deployment_created_by=self.created_by, step_name=step.name, packages=release.release.packages)
        system["Deployment.Error"] = system["Octopus.Deployment.Error"] = "; ".join(self.errors) if self.failed else ""
        outputs, sensitive = self.outputs.variables(target.name if target else None)
        return release.index.resolve(context).overlay(system).overlay(outputs, sensitive=sensitive)

    def _skip_reason(self, step: Step | ParentStep, target: Target | None) -> str | None:
        if not step.enabled:
            return "disabled"
        if step.environments and self.plan.environment.name not in step.environments:
            return f"runs only in {', '.join(step.environments)}"
        if step.name in self.plan.skip_steps:
            return "skipped on request (--skip)"
        return None

    @staticmethod
    def _condition_holds(step: Step | ParentStep, failed: bool, variables: VariableSet) -> bool:
        condition = step.condition
        if condition == "success":
            return not failed
        if condition == "failure":
            return failed
        if condition == "always":
            return True
        return evaluate_condition(condition, variables, where=f"step {step.name!r} condition")

    def _already_current(self, target: Target) -> bool:
        if self.plan.force:
            return False
        with self._lock:
            if target.name in self._journal:
                return self._journal[target.name][0]
        entry = journal.read(self._journal_of(target), self.plan.project, self.plan.environment.name) or {}
        current = bool(entry.get("digest") == self.plan.current.release.digest
                       and entry.get("variables_revision") == self.plan.current.variables_revision)
        with self._lock:  # the entry as this run found it: an unfinished unit's marker is read from here
            self._journal[target.name] = (current, entry)
        return current

    def _unfinished(self, index: int, unit: Unit, target: Target, release: ReleasePlan, current: bool
                    ) -> tuple[dict[int, str], str | None]:
        """The unit's steps already done on this target and why the rest must run: an earlier run of this
        release stopped inside the unit (its ``in_progress`` marker), or — for a target whose journal is
        current — the target is out of its load balancer. ``({}, None)``: no such thing (a current target is
        skipped, another runs the whole unit)."""
        with self._lock:
            entry = self._journal.get(target.name, (False, {}))[1]
        marker = entry.get(journal.IN_PROGRESS)
        marker = marker if isinstance(marker, dict) else {}
        steps_done = marker.get("done")
        if not (isinstance(steps_done, list) and all(isinstance(i, int) for i in steps_done)):
            steps_done = []  # a damaged marker: the whole unit runs again, as for a damaged journal
        if (marker.get("unit") == index and marker.get("digest") == release.release.digest
                and marker.get("variables_revision") == release.variables_revision):
            done = {i: f"done in deployment #{marker.get('deployment_id')}, which stopped before the unit ended"
                    for i in steps_done if 0 <= i < len(unit.children)}
            left = [c.name for i, c in enumerate(unit.children) if i not in done]
            why = (f"{target.name}: deployment #{marker.get('deployment_id')} stopped inside {unit.item.name!r} "
                   f"on this target; running its remaining steps: {', '.join(left)}")
            self.log(why)
            return done, why
        if not current:
            return {}, None
        out = self._out_of_balancer(unit, target, release)
        if out is None:
            self.log(f"{target.name}: already at {release.release.version} (deployment #{entry.get('deployment_id')})"
                     "; skipping it")
            return {}, None
        first_add = next(i for i, c in enumerate(unit.children)
                         if isinstance(c, LoadBalancerStep) and c.enabled and c.action == "add")
        done = {i: f"already at {release.release.version} (journal)" for i in range(first_add)}
        left = [c.name for c in unit.children[first_add:]]
        why = (f"{target.name}: already at {release.release.version} but {out}; running {', '.join(left)} "
               "to put it back")
        self.log(why)
        return done, why

    def _out_of_balancer(self, unit: Unit, target: Target, release: ReleasePlan) -> str | None:
        """How the target is out of the balancer its unit takes it out of (MAINT or DRAIN on a node), or None.
        Only a unit that both removes and adds back asks."""
        steps = [c for c in unit.children if isinstance(c, LoadBalancerStep) and c.enabled]
        remove = next((c for c in steps if c.action == "remove"), None)
        if remove is None or not any(c.action == "add" for c in steps):
            return None
        model, haproxy = balancer_client(self.shared, remove.balancer, step=remove.name, target=target.name)
        server = self._server_of(remove, target, release)
        try:
            rows = haproxy.server_rows(model.backend, server)
        except LoadBalancerError as exc:
            raise FerryError(f"cannot check whether {target.name} is in service in {model.name}: {exc}") from exc
        out = {url: row.get("status", "") for url, row in rows.items()
               if row.get("status", "").startswith(("MAINT", "DRAIN", "NOLB"))}
        if not out:
            return None
        return f"{model.backend}/{server} is {', '.join(sorted(set(out.values())))} in {model.name}"

    def _journal_of(self, target: Target) -> Transport:
        """The target's connection, its journal kept in memory after the first read: this run holds the
        target's slot, so each marker after that is one write."""
        transport = self.pool.get(target)
        journal.hold(transport)
        return transport

    def _mark(self, target: Target, release: ReleasePlan, index: int, unit: Unit, done: dict[int, str]) -> None:
        """The target's journal says this unit is running (and which of its steps are done), so a run that
        is killed before the unit ends leaves that behind for the next one."""
        journal.mark(self._journal_of(target), self.plan.project, self.plan.environment.name, {
            "deployment_id": self.deployment_id, "release": release.release.version,
            "digest": release.release.digest, "variables_revision": release.variables_revision,
            "unit": index, "unit_name": unit.item.name, "done": sorted(done), "since": now()})

    def _write_journal(self, target: Target, release: ReleasePlan) -> None:
        journal.write(self._journal_of(target), self.plan.project, self.plan.environment.name, {
            "project": self.plan.project, "environment": self.plan.environment.name,
            "release": release.release.version, "digest": release.release.digest,
            "variables_revision": release.variables_revision, "deployment_id": self.deployment_id,
            "installed_at": now(), "packages": {p.id: p.version for p in release.packages.values()}})

    def _record(self, step: str, target: str | None, state: str, attempts: int, message: str | None,
                started: str | None = None) -> None:
        result = records.StepResult(step, target, state, attempts, message, started, now())
        with self._lock:
            self.summary.append(result.as_dict())
        self.writer.add(result)
        self.board.recorded(target, step, state)

    def _set_state(self, state: str) -> None:
        with self.store.begin() as conn:
            records.set_state(conn, self.deployment_id, state)

    def _unit_done(self) -> None:
        with self._lock:
            self._units_done += 1
            due = time.monotonic() - self._progress_at >= PROGRESS_EVERY
            if due:
                self._progress_at = time.monotonic()
        if due:  # one API call per second at most, however many targets finish
            self.board.flush()

    def log(self, message: str) -> None:
        self.logger.info(self.plan.current.masker.mask(message))


class StepError(Exception):
    """A step failed (already logged and recorded)."""


def _on_targets(unit: Unit) -> bool:
    """Does the unit run on targets (not a worker-only step, not a manual intervention)?"""
    return not _is_worker_only(unit) and (isinstance(unit.item, ParentStep) or unit.item.kind != "manual")


def _is_worker_only(unit: Unit) -> bool:
    item = unit.item
    return not isinstance(item, ParentStep) and item.run_on == "worker"


__all__ = ["Engine", "StepError", "step_task"]
