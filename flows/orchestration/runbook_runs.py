"""Run a runbook's flow from the command line without ``ferry serve``: here and now (``--wait``), or in a
detached background process. ``python -m flows.orchestration.runbook_runs`` is the child's entry point: it
reads the flow parameters as JSON on stdin, never from its arguments (anyone can read those in ``ps``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flows.engine.runbooks import RunbookRequest
from flows.orchestration.local_prefect import api_for
from snapshots.settings import Settings, open_private_log
from snapshots.workspace import Workspace

ENTRY = __spec__.name if __spec__ else "flows.orchestration.runbook_runs"


def run_here(request: RunbookRequest, run_id: int) -> bool:
    """Run the flow in this process; True when the run succeeded."""
    from flows.orchestration.runbook_flow import run_runbook

    with api_for(Settings.from_env().home):  # the local Prefect server when none is configured
        state = run_runbook(**request.flow_parameters(run_id), return_state=True)
    return bool(state.is_completed())


def run_detached(ctx: Workspace, request: RunbookRequest, run_id: int) -> Path:
    """Run the flow in a background process that outlives this command; returns its log file."""
    log = ctx.settings.home / "logs" / f"deployment-{run_id}.log"
    with open(open_private_log(log), "ab") as out, api_for(ctx.settings.home):
        child = subprocess.Popen([sys.executable, "-m", ENTRY], stdin=subprocess.PIPE, start_new_session=True,
                                 env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT)
    assert child.stdin is not None
    try:
        child.stdin.write(json.dumps(request.flow_parameters(run_id)).encode("utf-8"))
        child.stdin.close()
    except BrokenPipeError:  # the child died at once: its log says why
        pass
    return log


def _main() -> None:
    from flows.orchestration.runbook_flow import run_runbook

    params = json.loads(sys.stdin.read())
    devnull = os.open(os.devnull, os.O_RDONLY)  # scripts must not read our pipe
    os.dup2(devnull, 0)
    os.close(devnull)
    state = run_runbook(**params, return_state=True)
    sys.exit(0 if state.is_completed() else 1)


if __name__ == "__main__":
    _main()
