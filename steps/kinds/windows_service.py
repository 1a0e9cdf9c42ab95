"""The ``windows-service`` step: install or update a Windows Service from a package over WinRM, as Octopus's
"Deploy a Windows Service".

The worker side is the ``iis-website`` step's (``send_package``: the sha256 pin checked, config files substituted
and transformed on the worker, the package pushed or pulled; ``invoke_script``: values as data, the script's
``ERROR:`` line as the failure). On the target, ``windows-service.ps1`` (with ``deploy-common.ps1``, the same
versioned folders, journal and retention as iis-deploy.ps1) stops the service with a timeout, switches its binary
path to the new folder, starts it and waits for Running — or puts the old binary path back and restarts it.

``service_parameters`` computes the script's parameters without touching a target, so tests pin them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from snapshots.errors import StepFailed
from snapshots.model.steps import WindowsServiceStep
from steps.context import PackageRef, StepContext
from steps.kinds.iis_website import config_digest, invoke_script, package_layout, send_package

SCRIPT = "windows-service.ps1"
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9_.@:+-]{1,200}$")


@dataclass
class ServicePlan:
    parameters: dict[str, Any]
    package: PackageRef
    package_file: str


def _fail(ctx: StepContext, message: str) -> StepFailed:
    return StepFailed(message, step=ctx.step.name, target=ctx.target_name)


def service_parameters(ctx: StepContext) -> ServicePlan:
    """Everything ``windows-service.ps1`` receives except the substituted files (``Overrides``/``ConfigDigest``)."""
    step: WindowsServiceStep = ctx.step

    def render(value: str | None, field: str) -> str:
        return ctx.render(value, f"{ctx.where} {field}") if value else ""

    layout = package_layout(ctx, step.package, step.root)
    name = render(step.service_name, "service_name")
    if not _SERVICE_NAME.match(name):
        raise _fail(ctx, f"service_name renders to {name!r}: letters, digits and _ . @ : + - only")
    recovery = step.recovery
    return ServicePlan({
        "Project": ctx.project, "Environment": ctx.environment,
        "Package": layout.package_parameter(), "Folder": layout.folder, "Journal": layout.journal,
        "Overrides": [], "ConfigDigest": "",
        "ServiceName": name, "DisplayName": render(step.display_name, "display_name"),
        "Description": render(step.description, "description"),
        "Executable": step.executable.replace("/", "\\"), "Arguments": render(step.arguments, "arguments"),
        "StartMode": step.start_mode, "Account": step.account,
        "UserName": render(step.username, "username"), "Password": render(step.password, "password"),
        "Dependencies": [render(d, f"dependencies[{i}]") for i, d in enumerate(step.dependencies)],
        "Recovery": {"Actions": list(recovery.actions), "RestartDelayMilliseconds": recovery.restart_delay_ms,
                     "ResetPeriodSeconds": recovery.reset_period},
        "Keep": step.keep, "StopTimeoutSeconds": int(step.stop_timeout),
        "StartTimeoutSeconds": int(step.start_timeout),
    }, layout.package, layout.package_file)


def run(ctx: StepContext) -> None:
    if getattr(ctx.transport, "invoke", None) is None:
        raise _fail(ctx, "windows-service runs on Windows targets: give the target a winrm transport")
    plan = service_parameters(ctx)
    overrides = send_package(ctx, plan.package, plan.package_file)
    plan.parameters["Overrides"] = overrides
    plan.parameters["ConfigDigest"] = config_digest(overrides) if overrides else ""
    done = invoke_script(ctx, SCRIPT, plan.parameters, "Windows Service deployment")
    name = plan.parameters["ServiceName"]
    if done.get("created"):
        what = f"created, {done.get('status')}"
    else:
        what = f"{done.get('status')} on {done['folder']}" + (f" (was {done['previousPath']})"
                                                              if done.get("previousPath") else "")
    ctx.log(f"service {name}: {what}" + (f"; removed {', '.join(done['removed'])}" if done.get("removed") else ""))
