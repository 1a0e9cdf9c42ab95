"""``ferry deploy … --plan``: what a deployment would do, from the plan ``prepare`` computed, touching nothing.

The document lists the lifecycle check, the targets in scope, each process item in order — its windows and the
``min_healthy`` arithmetic for a rolling step — and per target which steps run, are skipped and why, or wait
for a person; then the variables each target would get, sensitive ones masked. Whether a target is already at
the release is in its journal, on the target: without ``check_targets`` that is "unknown (not connected)";
with it each target is opened and only its journal is read. Nothing is written to the store or to a target.
No Prefect here: the CLI (``flows.cli.plan_output``) prints this document as text or ``--json``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from flows.engine.plan import DeploymentPlan, resolve_rolling
from flows.engine.rolling import check_min_healthy, waves
from snapshots.errors import FerryError
from snapshots.model import ParentStep, ProcessItem, Target
from snapshots.model.steps import Step
from snapshots.octostache import evaluate_condition, render
from snapshots.store import records
from snapshots.variables.masking import MASK
from snapshots.variables.scopes import ScopeContext, VariableSet, system_variables
from steps import journal
from steps.transports.pool import open_transport

NOT_CONNECTED = "unknown (not connected)"
RUN, SKIP, PERSON, RUNTIME, FAIL = "run", "skip", "needs a person", "decided at run time", "fails"


# ------------------------------------------------------------------------------------------------ journals

def read_journals(plan: DeploymentPlan, home: Path) -> dict[str, dict[str, Any]]:
    """Each target's journal entry for this project and environment, read over its own transport (the only
    operation done on it), as ``{"state": current|not current|unreachable, "detail": …}``."""
    found: dict[str, dict[str, Any]] = {}
    release = plan.current
    for target in plan.targets:
        try:
            transport = open_transport(target, home=home)
            try:
                entry = journal.read(transport, plan.project, plan.environment.name)
            finally:
                transport.close()
        except FerryError as exc:
            found[target.name] = {"state": "unreachable", "detail": plan.current.masker.mask(str(exc))}
            continue
        if entry is None:
            found[target.name] = {"state": "not current", "detail": "no deployment of this project here yet"}
        elif entry.get("digest") == release.release.digest \
                and entry.get("variables_revision") == release.variables_revision:
            unfinished = entry.get(journal.IN_PROGRESS)
            found[target.name] = {
                "state": "current" if not unfinished else "not current",
                "detail": f"at {entry.get('release')} (deployment #{entry.get('deployment_id')})"
                          + (f"; deployment #{unfinished.get('deployment_id')} stopped inside "
                             f"{unfinished.get('unit_name')!r}" if unfinished else "")}
        else:
            found[target.name] = {"state": "not current",
                                  "detail": f"at {entry.get('release')} (deployment #{entry.get('deployment_id')})"}
    return found


# ------------------------------------------------------------------------------------------------ the document

def describe(conn: Connection, plan: DeploymentPlan, *, journals: dict[str, dict[str, Any]] | None = None
             ) -> dict[str, Any]:
    """The plan as a JSON-ready document (see the module doc)."""
    release = plan.current
    env = plan.environment.name
    masker = release.masker
    chosen = {t.name for t in plan.targets}
    targets = [{"name": t.name, "roles": list(t.roles),
                "journal": (journals or {}).get(t.name) or {"state": NOT_CONNECTED}} for t in plan.targets]
    view = _View(plan, journals)
    doc: dict[str, Any] = {
        "project": plan.project, "release": release.release.version, "environment": env,
        "variables_revision": release.variables_revision,
        "lifecycle": _lifecycle(conn, plan),
        "channel": release.channel,
        "freeze": _freeze(plan),
        "guided_failure": plan.guided_failure, "force": plan.force,
        "skip_steps": sorted(plan.skip_steps),
        "targets": targets,
        "left_out": [t.name for t in plan.environment_targets if t.name not in chosen],
        "units": [view.unit(i, item) for i, item in enumerate(release.process)],
        "variables": {t.name: view.variables(t) for t in plan.targets},
        "touches_nothing": True,
    }
    return masker.mask_obj(doc)


def _freeze(plan: DeploymentPlan) -> dict[str, Any]:
    """The deployment-freeze check: none in force, in force and overridden, or in force (would be refused)."""
    if plan.freeze is None:
        return {"frozen": False, "allowed": True,
                "reason": f"no deployment freeze is in force for {plan.environment.name}"}
    window = plan.freeze.as_dict()
    if plan.override_freeze:
        return {"frozen": True, "allowed": True, **window,
                "reason": f"freeze {window['freeze']!r} is in force until {window['end']}; --override-freeze lets it "
                          "through (recorded)"}
    return {"frozen": True, "allowed": False, **window,
            "reason": f"freeze {window['freeze']!r} is in force until {window['end']}: {window['reason']} — "
                      "the deployment would be refused (--override-freeze to deploy anyway)"}


def _lifecycle(conn: Connection, plan: DeploymentPlan) -> dict[str, Any]:
    """Why ``prepare`` let the release into this environment (it refuses with one line otherwise)."""
    release = plan.current.release
    lifecycle = plan.infra.lifecycle(release.snapshot["lifecycle"])
    reached = records.successful_environments(conn, release.id)
    env = plan.environment.name
    if lifecycle is None:  # prepare refuses this; kept total for safety
        return {"name": release.snapshot["lifecycle"], "allowed": False, "reason": "lifecycle not found"}
    index = next(i for i, p in enumerate(lifecycle.phases) if env in p.environments)
    phase = lifecycle.phases[index]
    if env in reached:
        reason = f"{release.version} already succeeded in {env}: a redeployment is always allowed"
    elif index == 0:
        reason = f"{env} is in the first phase ({phase.name!r}), which is always open"
    else:
        earlier = []
        for p in lifecycle.phases[:index]:
            done = sorted(set(p.environments) & reached)
            need = p.required_count
            earlier.append(f"{p.name!r} " + ("optional" if need == 0 else f"{len(done)} of {need} needed"
                                               + (f" ({', '.join(done)})" if done else "")))
        reason = f"earlier phases satisfied: {'; '.join(earlier)}"
    return {"name": lifecycle.name, "phase": phase.name, "phase_number": index + 1, "phases": len(lifecycle.phases),
            "deployed_to": sorted(reached), "allowed": True, "reason": reason}


class _View:
    def __init__(self, plan: DeploymentPlan, journals: dict[str, dict[str, Any]] | None) -> None:
        self.plan, self.journals = plan, journals
        self.strict = plan.current.release.snapshot.get("strict_variables", True)

    def resolved(self, step: Step | ParentStep | None, target: Target | None) -> VariableSet:
        plan, release = self.plan, self.plan.current
        context = ScopeContext(environment=plan.environment.name, target=target.name if target else None,
                               roles=tuple(target.roles) if target else (), step=step.name if step else None,
                               channel=release.channel)
        system = system_variables(
            project=plan.project, release_number=release.release.version,
            release_notes=release.release.snapshot.get("notes", ""), release_created=release.release.created_at,
            previous_for_environment=release.previous_for_environment, environment=plan.environment.name,
            machine_name=target.name if target else None,
            machine_hostname=target.machine_hostname if target else None,
            machine_roles=target.roles if target else None, step_name=step.name if step else None,
            packages=release.release.packages)
        system["Deployment.Error"] = system["Octopus.Deployment.Error"] = ""
        return release.index.resolve(context).overlay(system)

    # -- one process item
    def unit(self, index: int, item: ProcessItem) -> dict[str, Any]:
        plan = self.plan
        children: list[Step] = list(item.steps) if isinstance(item, ParentStep) else [item]
        out: dict[str, Any] = {"number": index + 1, "name": item.name, "roles": list(item.roles),
                               "condition": item.condition}
        targets = [t for t in plan.targets if set(t.roles) & set(item.roles)]
        manual = not isinstance(item, ParentStep) and item.kind == "manual"
        worker_only = not isinstance(item, ParentStep) and item.run_on == "worker"
        out["runs"] = ("manual intervention on the worker" if manual else "once on the worker" if worker_only
                       else "rolling, per target" if isinstance(item, ParentStep) and item.rolling
                       else "on every target at once")
        action, reason = self.verdict(item, None)
        out["action"], out["reason"] = action, reason
        if action == SKIP:
            return out
        if manual:
            out["action"], out["reason"] = PERSON, "waits for proceed or abort"
            return out
        if worker_only:
            out["steps"] = [{"step": item.name, "action": action, "reason": reason, "where": "worker"}]
            return out
        if not targets:
            with_role = [t.name for t in plan.environment_targets if set(t.roles) & set(item.roles)]
            why = (f"every target with role(s) {', '.join(item.roles)} is left out (--target/--exclude-target)"
                   if with_role else f"no target in {plan.environment.name} has role(s) {', '.join(item.roles)}")
            allowed = item.allow_no_targets or plan.current.release.snapshot.get("allow_no_targets", False)
            out["action"], out["reason"] = (SKIP, f"{why} (allow_no_targets)") if allowed else (FAIL, why)
            return out
        if isinstance(item, ParentStep) and item.rolling:
            out["rolling"] = self.rolling(item, targets)
        else:
            out["windows"] = [[t.name for t in targets]]
        out["targets"] = [{"target": t.name, "steps": self.chain(children, t)}
                          for t in targets]
        if self.journals is None and not plan.force:
            out["journal"] = (f"{NOT_CONNECTED}: a target already at this release skips these steps at run time "
                              "(--check-targets reads the journals)")
        if plan.guided_failure:
            out["on_failure"] = "pauses for a person: retry / skip / ignore / abort (guided failure)"
        return out

    def chain(self, children: list[Step], target: Target) -> list[dict[str, Any]]:
        state = (self.journals or {}).get(target.name)
        rows = []
        for child in children:
            where = {"target": target.name, "worker": "worker",
                     "worker-for-each-target": f"worker, for {target.name}"}.get(child.run_on, child.run_on)
            action, reason = self.verdict(child, target)
            if action in (RUN, RUNTIME) and not self.plan.force and state is not None and state["state"] == "current":
                action, reason = SKIP, f"already at this release (journal: {state['detail']}); --force redeploys"
            elif action in (RUN, RUNTIME) and state is not None and state["state"] == "current":
                reason = (reason + "; " if reason else "") + "redeployed (--force)"
            if state is not None and state["state"] == "unreachable" and action in (RUN, RUNTIME):
                action, reason = FAIL, f"target unreachable: {state['detail']}"
            if child.kind == "manual" and action == RUN:
                action = PERSON
            rows.append({"step": child.name, "kind": child.kind, "where": where, "action": action,
                         "reason": reason or None})
        return rows

    def verdict(self, step: Step | ParentStep, target: Target | None) -> tuple[str, str]:
        """run / skip / decided at run time, with the reason (the engine's skip rules, read ahead)."""
        plan = self.plan
        if not step.enabled:
            return SKIP, "disabled"
        if step.environments and plan.environment.name not in step.environments:
            return SKIP, f"runs only in {', '.join(step.environments)}"
        if step.name in plan.skip_steps:
            return SKIP, "skipped on request (--skip)"
        condition = step.condition
        if condition == "success":
            return RUN, ""
        if condition == "always":
            return RUN, "condition 'always'"
        if condition == "failure":
            return SKIP, "condition 'failure': runs only if an earlier step fails"
        if "].output" in condition.casefold():
            return RUNTIME, f"condition {condition!r} reads output variables set during the deployment"
        if "deployment.error" in condition.casefold():
            return RUNTIME, f"condition {condition!r} depends on whether earlier steps fail"
        try:
            holds = evaluate_condition(condition, self.resolved(step, target), where=f"step {step.name!r} condition")
        except FerryError as exc:
            return RUNTIME, f"condition {condition!r}: {exc}"
        return (RUN, f"condition {condition!r} holds") if holds else (SKIP, f"condition {condition!r} not met")

    def rolling(self, item: ParentStep, targets: list[Target]) -> dict[str, Any]:
        plan = self.plan
        rolling = resolve_rolling(plan.current, item, plan.environment.name)
        role_targets = [t for t in plan.environment_targets if set(t.roles) & set(item.roles)]
        min_healthy = int(rolling.min_healthy)
        cap = check_min_healthy(len(role_targets), min_healthy, f"step {item.name!r}")
        sizes = waves(rolling.window, len(targets))
        windows: list[list[str]] = []  # each wave but the last as one group; the last slides, shown in chunks
        at = 0
        for number, size in enumerate(sizes):
            if number < len(sizes) - 1:
                windows.append([t.name for t in targets[at:at + size]])
                at += size
                continue
            while at < len(targets):
                windows.append([t.name for t in targets[at:at + min(size, cap)]])
                at += min(size, cap)
        windows = [w for w in windows if w]
        if min_healthy:
            arithmetic = (f"min_healthy {min_healthy}: {len(role_targets)} target(s) with role(s) "
                          f"{', '.join(item.roles)} in {plan.environment.name}, so at most {len(role_targets)} - "
                          f"{min_healthy} = {cap} out of service at once")
        else:
            arithmetic = "min_healthy 0: no floor; the window alone limits how many run at once"
        return {"window": rolling.window, "wave_sizes": sizes, "at_once": [min(s, cap) for s in sizes],
                "min_healthy": min_healthy, "in_service_targets": len(role_targets), "max_out_of_service": cap,
                "arithmetic": arithmetic, "max_failures": rolling.max_failures, "auto_rollback": rolling.auto_rollback,
                "windows": windows,
                "note": "windows slide: the next target starts as soon as one finishes (order may change at run "
                        "time when a load balancer reports servers already out of service)"}

    def variables(self, target: Target) -> dict[str, str]:
        """The project's variables as this target gets them (no step scope), evaluated where possible,
        sensitive ones masked."""
        values = self.plan.current.index.resolve(ScopeContext(
            environment=self.plan.environment.name, target=target.name, roles=tuple(target.roles),
            channel=self.plan.current.channel))
        everything = self.resolved(None, target)
        shown: dict[str, str] = {}
        for name, value in values.items():
            if values.is_sensitive(name):
                shown[name] = MASK
                continue
            if "#{" in value:
                with contextlib.suppress(FerryError):  # else shown as written: the step using it reports it
                    value = render(value, everything, where=f"variable {name}", strict=self.strict)
            shown[name] = value
        return shown
