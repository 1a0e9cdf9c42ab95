"""The ``systemd-service`` step (Linux, over SSH): run a package as a service whose unit points at ``current``.

The package goes where the ``package`` step puts it (the same code: upload verified by sha256, a new release
folder, substitution on the worker, the atomic ``current`` switch, retention), with no package scripts. Then:
the unit file is rendered (ferry's own, or the step's ``unit_template`` through Octostache with ``Service.*``
values), installed, the manager re-reads it, the service restarts, and the step waits until it is active and
stays so. If it does not, the step logs the service's recent log (``journalctl -u NAME -n 50``), switches
``current`` back, reinstalls the unit file that was there, restarts the previous release, and fails.

The service manager is an interface (``service_managers``): systemd, or supervisord where that runs.
"""

from __future__ import annotations

import posixpath
import time
from typing import Any

from snapshots.errors import FerryError, StepFailed
from snapshots.model.steps import SystemdServiceStep
from snapshots.octostache import render
from steps.context import StepContext
from steps.kinds import package as package_step
from steps.kinds.service_managers import (
    ARGV_SCRIPT,
    UNIT_MODE,
    Argv,
    ServiceManager,
    UnitSpec,
    argv_env,
    display,
    manager_for,
)

STABLE_SECONDS = 1.0
"""Active at two checks this far apart: a process that dies right after starting is not 'started'."""
POLL_SECONDS = 0.25


class ServiceNotStarted(FerryError):
    """The service did not become active (handled inside the step: it reverts, then fails the step)."""


def manager(step: SystemdServiceStep) -> ServiceManager:
    return manager_for(step.manager, unit_dir=step.unit_dir, supervisor_config=step.supervisor_config,
                       sudo=step.sudo)


def unit_spec(ctx: StepContext, base: str) -> UnitSpec:
    """The unit's values for this target (ExecStart under ``<base>/current``)."""
    step: SystemdServiceStep = ctx.step
    current = f"{base}/current"

    def text(value: str, where: str) -> str:
        return ctx.render(value, f"{ctx.where} {where}") if "#{" in value else value

    executable = posixpath.join(current, step.executable.replace("\\", "/"))
    arguments = [text(a, f"arguments[{i}]") for i, a in enumerate(step.arguments)]
    description = text(step.description or f"{ctx.project}: {step.service_name} (deployed by ferry)",
                       "description")
    return UnitSpec(name=step.service_name, description=description, exec_start=[executable, *arguments],
                    working_directory=current, current=current,
                    user=text(step.user, "user") if step.user else None,
                    environment={k: text(v, f"environment.{k}") for k, v in step.environment.items()})


def unit_text(ctx: StepContext, service_manager: ServiceManager, spec: UnitSpec) -> str:
    """The unit file: ferry's own, or the step's template with the project's variables and ``Service.*``."""
    step: SystemdServiceStep = ctx.step
    if not step.unit_template:
        return service_manager.unit(spec)
    values = {**ctx.variables, **service_manager.template_values(spec)}
    rendered = render(step.unit_template, values, where=f"{ctx.where} unit_template")
    return rendered if rendered.endswith("\n") else rendered + "\n"


class _Service:
    """Runs the manager's commands on the target, logging each command line."""

    def __init__(self, ctx: StepContext, service_manager: ServiceManager) -> None:
        self.ctx, self.manager = ctx, service_manager
        self.name = ctx.step.service_name

    def call(self, argv: Argv, *, quiet: bool = False, timeout: float = 120) -> tuple[Any, list[str]]:
        lines: list[str] = []
        if not quiet:
            self.ctx.log(f"$ {display(argv)}")
        result = self.ctx.transport.run(ARGV_SCRIPT, env=argv_env(argv), timeout=timeout, on_line=lines.append)
        if not quiet:
            for line in lines:
                self.ctx.log(f"  {line}")
        return result, lines

    def each(self, commands: list[Argv], what: str) -> None:
        for argv in commands:
            result, _ = self.call(argv)
            if not result.ok:
                raise ServiceNotStarted(f"{what} failed: {display(argv)} exited {result.exit_code}")

    def install(self, text: str, staging_dir: str) -> None:
        staged = f"{staging_dir}/.units/{self.name}.unit"
        self.ctx.transport.write_file(staged, text.encode("utf-8"), mode=UNIT_MODE)
        self.each(self.manager.install(staged, self.name), "installing the unit file")
        self.each(self.manager.reload(self.name), "reloading the service manager")

    def start(self, timeout: float) -> float:
        """Restart and wait until active on two checks ``STABLE_SECONDS`` apart; return the seconds it took."""
        started = time.monotonic()
        self.each(self.manager.restart(self.name), f"restarting {self.name}")
        if self.manager.restart_waits:  # its restart succeeds only once the service stayed up (startsecs)
            return time.monotonic() - started
        deadline = started + timeout
        active_since: float | None = None
        while True:
            now = time.monotonic()
            if self.call(self.manager.is_active(self.name), quiet=True, timeout=30)[0].ok:
                active_since = active_since or now
                if now - active_since >= STABLE_SECONDS:
                    return now - started
            else:
                active_since = None
            if now >= deadline:
                raise ServiceNotStarted(f"{self.name} did not become active within {timeout:g}s")
            time.sleep(POLL_SECONDS)

    def show_logs(self) -> None:
        argv = self.manager.logs(self.name)
        self.ctx.log(f"the service's recent log ({display(argv)}):")
        try:
            result, lines = self.call(argv, quiet=True, timeout=30)
        except FerryError as exc:
            self.ctx.log(f"  (could not read it: {exc})")
            return
        for line in lines[-50:]:
            self.ctx.log(f"  | {line}")
        if not result.ok:
            self.ctx.log(f"  (exit code {result.exit_code})")


def run(ctx: StepContext) -> None:
    step: SystemdServiceStep = ctx.step
    if getattr(ctx.transport, "invoke", None) is not None:
        raise StepFailed("systemd-service runs on Linux targets: give the target an ssh (or local) transport",
                         step=step.name, target=ctx.target_name)
    service_manager = manager(step)
    job = package_step.install_release(ctx)
    package_step.substitute(job)
    service = _Service(ctx, service_manager)
    spec = unit_spec(ctx, job.base)
    text = unit_text(ctx, service_manager, spec)
    unit_path = service_manager.unit_path(step.service_name)
    old_unit = ctx.transport.read_file(unit_path)
    try:
        package_step.switch_current(job)
        if old_unit == text.encode("utf-8"):  # it names `current`, not a version: usually unchanged
            ctx.log(f"{unit_path} is unchanged ({service_manager.kind}): no reload needed")
        else:
            service.install(text, job.base)
            ctx.log(f"installed {unit_path} ({service_manager.kind})")
        took = service.start(step.start_timeout)
    except (ServiceNotStarted, StepFailed) as exc:
        service.show_logs()
        reverted = _revert(ctx, service, job, old_unit, text)
        raise StepFailed(f"{exc}; {reverted}", step=step.name, target=ctx.target_name) from None
    ctx.log(f"{step.service_name} is active ({took:.1f}s) on {job.release_dir}")
    package_step.retain(job)


def _revert(ctx: StepContext, service: _Service, job: Any, old_unit: bytes | None, new_unit: str) -> str:
    """Put back the previous release and unit file and start it; say what was done."""
    step: SystemdServiceStep = ctx.step
    if not job.previous or old_unit is None:
        try:
            service.each(service.manager.stop(service.name), f"stopping {service.name}")
        except ServiceNotStarted as exc:
            ctx.log(f"warning: {exc}")
        return "no earlier release to revert to: the service is stopped"
    try:
        package_step.switch_current(job, to=job.previous)
        if old_unit != new_unit.encode("utf-8"):
            service.install(old_unit.decode("utf-8"), job.base)
        service.start(step.start_timeout)
    except (ServiceNotStarted, StepFailed) as exc:
        return f"reverting to {job.previous} failed too: {exc}"
    ctx.log(f"reverted: current -> {job.previous}, the previous unit file reinstalled, {service.name} active")
    return f"reverted to {job.previous}"
