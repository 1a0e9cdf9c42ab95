"""Run a deployment's flow from the command line without ``ferry serve``: here and now (``--wait``, log
lines streamed, exit code = result), in a child process bounded by a timeout, or in a detached background
process. ``python -m flows.orchestration.local_runs`` is the child's entry point: it reads the flow parameters
as JSON on stdin, never from its arguments (anyone can read a process's arguments in ``ps``). The parameters
hold no prompted value anyway: those stay encrypted in the store under the deployment id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

from flows.engine.request import DeployRequest
from flows.orchestration.local_prefect import api_for
from flows.orchestration.quiet_console import CHILD_TRACEBACKS, quiet_prefect_console
from flows.orchestration.ui_tags import tagged
from snapshots.settings import Settings, open_private_log
from snapshots.store import records
from snapshots.workspace import Workspace

ENTRY = __spec__.name if __spec__ else "flows.orchestration.local_runs"
"""The module a child process runs (``python -m``): this one."""


def run_here(request: DeployRequest, deployment_id: int) -> bool:
    """Run the flow in this process; True when the deployment succeeded."""
    from flows.orchestration.deploy_flow import deploy_release  # Prefect: only on the paths that run the flow here

    params = request.flow_parameters(deployment_id)
    with api_for(Settings.from_env().home), without_flow_heartbeat(), tagged(params):
        state = deploy_release(**params, return_state=True)
    return bool(state.is_completed())


def without_flow_heartbeat() -> AbstractContextManager[object]:
    """Prefect's flow-run heartbeat off for a flow this process runs itself: its thread sleeps in 1 s steps
    and is joined when the flow function returns, which held the CLI 0.1–1.0 s (median 0.58 s) after the
    deployment had ended. Setting ``flows.heartbeat_frequency`` to None is Prefect's own "no heartbeat"
    (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` cannot say None from the environment, and must be ≥ 30).
    Nothing is lost: the heartbeat feeds Prefect's zombie detection, which needs an automation nobody set
    up here, and the ferry record has its own heartbeat (``deploy_flow.Heartbeat``) that reclaims a dead run."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def run_with_timeout(ctx: Workspace, request: DeployRequest, deployment_id: int, timeout: float,
                     cancel_on_timeout: bool, *, tracebacks: bool = False, to_stderr: bool = False) -> bool:
    """Run the flow in a child process whose output is this command's, waiting at most ``timeout`` seconds.
    On timeout: stop it (``cancel_on_timeout``: the record says Cancelled) or leave it running, then exit
    with code 124 as ``timeout(1)`` does. ``tracebacks`` (``--debug``): the child's console keeps Prefect's
    Python tracebacks; ``to_stderr`` (``--json``): all its output goes to stderr, stdout is the document's."""
    with api_for(ctx.settings.home):  # the child talks to the local Prefect server when none is configured
        child = _spawn(request.flow_parameters(deployment_id), stdout=2 if to_stderr else None,
                       env={CHILD_TRACEBACKS: "1" if tracebacks else ""})
    try:
        return child.wait(timeout=timeout) == 0
    except subprocess.TimeoutExpired:
        pass
    if not cancel_on_timeout:
        print(f"error: deployment #{deployment_id} did not finish within {timeout:g}s; it goes on "
              f"(process {child.pid})", file=sys.stderr)
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
    print(f"error: deployment #{deployment_id} timed out after {timeout:g}s and was cancelled", file=sys.stderr)
    sys.exit(124)


def run_detached(ctx: Workspace, request: DeployRequest, deployment_id: int) -> Path:
    """Run the flow in a background process that outlives this command; returns its log file."""
    log = ctx.settings.home / "logs" / f"deployment-{deployment_id}.log"
    with open(open_private_log(log), "ab") as out, api_for(ctx.settings.home):  # 0600 in a 0700 folder
        _spawn(request.flow_parameters(deployment_id), stdout=out, stderr=subprocess.STDOUT)
    return log


def _spawn(params: dict[str, object], *, stdout: IO[bytes] | int | None = None,
           stderr: IO[bytes] | int | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start the child in a session of its own and hand it the flow parameters on stdin."""
    child = subprocess.Popen([sys.executable, "-m", ENTRY], stdin=subprocess.PIPE, start_new_session=True,
                             env={**os.environ, **(env or {})}, stdout=stdout, stderr=stderr)
    assert child.stdin is not None
    try:
        child.stdin.write(json.dumps(params).encode("utf-8"))
        child.stdin.close()
    except BrokenPipeError:  # the child died at once: its exit code says so
        pass
    return child


def _main() -> None:
    """Background entry point: ``python -m flows.orchestration.local_runs`` with the flow parameters as JSON
    on stdin."""
    from flows.orchestration.deploy_flow import deploy_release

    params = json.loads(sys.stdin.read())
    if os.environ.get(CHILD_TRACEBACKS) == "":  # started by --timeout without --debug: ferry reports failures
        quiet_prefect_console()
    devnull = os.open(os.devnull, os.O_RDONLY)  # what the child had before: scripts must not read our pipe
    os.dup2(devnull, 0)
    os.close(devnull)
    with without_flow_heartbeat(), tagged(params):
        state = deploy_release(**params, return_state=True)
    sys.exit(0 if state.is_completed() else 1)


if __name__ == "__main__":
    _main()
