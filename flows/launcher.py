"""Start a deployment from the command line: check it, record it, then run its flow — here and now
(``--wait``, log lines streamed, exit code = result) or in a detached background process.

Checking first means a mistake (unknown environment, lifecycle, missing prompted variable, tampered
release) is one line on the terminal, not a failed flow run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flows.plan import prepare
from snapshots import deployments as records


@dataclass
class DeployRequest:
    project: str
    release: str
    environment: str
    targets: list[str] = field(default_factory=list)
    exclude_targets: list[str] = field(default_factory=list)
    skip_steps: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    guided_failure: bool | None = None
    force: bool = False

    def flow_parameters(self, deployment_id: int | None = None) -> dict[str, Any]:
        params = {k: v for k, v in asdict(self).items() if v not in (None, [], {})}
        if deployment_id is not None:
            params["deployment_id"] = deployment_id
        return params


def check_and_record(ctx: Any, request: DeployRequest) -> tuple[int, str]:
    """Validate the request as the flow will, and create the deployment record. Returns (id, version)."""
    with ctx.store.begin() as conn:
        plan = prepare(conn, ctx.feed, ctx.vault, project=request.project, release=request.release,
                       environment=request.environment, targets=request.targets,
                       exclude_targets=request.exclude_targets, skip_steps=request.skip_steps,
                       variables=request.variables, guided_failure=request.guided_failure, force=request.force)
        version = plan.current.release.version
        deployment_id = records.create(
            conn, project=request.project, release_id=plan.current.release.id, environment=request.environment,
            variable_snapshot_id=plan.current.variable_snapshot_id, actor=ctx.actor,
            parameters={"targets": request.targets, "exclude_targets": request.exclude_targets,
                        "skip_steps": request.skip_steps, "prompted": sorted(request.variables),
                        "force": request.force})
    return deployment_id, version


def run_here(request: DeployRequest, deployment_id: int) -> bool:
    """Run the flow in this process; True when the deployment succeeded."""
    from flows.deploy_flow import deploy_release

    state = deploy_release(**request.flow_parameters(deployment_id), return_state=True)
    return bool(state.is_completed())


def run_with_timeout(ctx: Any, request: DeployRequest, deployment_id: int, timeout: float,
                     cancel_on_timeout: bool) -> bool:
    """Run the flow in a child process whose output is this command's, waiting at most ``timeout`` seconds.
    On timeout: stop it (``cancel_on_timeout``: the record says Cancelled) or leave it running, then exit
    with code 124 as ``timeout(1)`` does."""
    import signal

    from flows.cli.output import err_console

    params = json.dumps(request.flow_parameters(deployment_id))
    child = subprocess.Popen([sys.executable, "-m", "flows.launcher", params], stdin=subprocess.DEVNULL,
                             start_new_session=True, env=os.environ.copy())
    try:
        return child.wait(timeout=timeout) == 0
    except subprocess.TimeoutExpired:
        pass
    if not cancel_on_timeout:
        err_console.print(f"error: deployment #{deployment_id} did not finish within {timeout:g}s; it goes on "
                          f"(process {child.pid})", markup=False)
        sys.exit(124)
    os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    with ctx.store.begin() as conn:
        if records.get(conn, deployment_id).state != records.SUCCESS:
            records.set_state(conn, deployment_id, records.CANCELLED,
                              error=f"timed out after {timeout:g}s (--cancel-on-timeout)")
    err_console.print(f"error: deployment #{deployment_id} timed out after {timeout:g}s and was cancelled",
                      markup=False)
    sys.exit(124)


def run_detached(ctx: Any, request: DeployRequest, deployment_id: int) -> Path:
    """Run the flow in a background process that outlives this command; returns its log file."""
    logs = ctx.settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"deployment-{deployment_id}.log"
    with open(log, "ab") as out:
        subprocess.Popen([sys.executable, "-m", "flows.launcher", json.dumps(request.flow_parameters(deployment_id))],
                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                         env=os.environ.copy())
    return log


def _main() -> None:
    """Background entry point: ``python -m flows.launcher '<flow parameters as JSON>'``."""
    params = json.loads(sys.argv[1])
    from flows.deploy_flow import deploy_release

    state = deploy_release(**params, return_state=True)
    sys.exit(0 if state.is_completed() else 1)


if __name__ == "__main__":
    _main()
