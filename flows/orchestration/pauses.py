"""People in the loop: guided failure and manual steps pause the flow run and wait for an answer given
in the Prefect UI (the resume form) or with ``ferry deployment answer``, which resumes the run with the same
input the resume form sends."""

from __future__ import annotations

import json
from typing import Literal
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from snapshots.errors import ConflictError, FerryError
from snapshots.store import records
from snapshots.workspace import Workspace

POLL_SECONDS = 2


class FailureAnswer(RunInput):
    """How to continue after a failed step on a target."""

    action: Literal["retry", "skip", "ignore", "abort"] = Field(
        description="retry: run the failed step again; skip: leave this target out; ignore: carry on with the "
                    "next step as if it had succeeded; abort: stop the deployment")
    notes: str = Field("", description="Recorded on the deployment")


class ManualAnswer(RunInput):
    """A person's decision at a manual intervention step."""

    action: Literal["proceed", "abort"] = Field(description="proceed with the deployment, or abort it")
    notes: str = Field("", description="Recorded on the deployment")


def ask_failure(description: str, timeout: int) -> FailureAnswer:
    """Pause until someone answers (raises Prefect's FlowPauseTimeout after ``timeout`` seconds)."""
    answer = pause_flow_run(wait_for_input=FailureAnswer.with_initial_data(description=description, action="retry"),
                            timeout=timeout, poll_interval=POLL_SECONDS)
    return answer


def ask_manual(description: str, timeout: int) -> ManualAnswer:
    answer = pause_flow_run(wait_for_input=ManualAnswer.with_initial_data(description=description, action="proceed"),
                            timeout=timeout, poll_interval=POLL_SECONDS)
    return answer

def answer_pause(ctx: Workspace, deployment_id: int, action: str, notes: str) -> str:
    with ctx.store.read() as conn:
        deployment = records.get(conn, deployment_id)
    if not deployment.flow_run_id:
        raise ConflictError(f"deployment #{deployment_id} has no flow run yet ({deployment.state})")
    flow_run_id = UUID(deployment.flow_run_id)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        state = run.state
        if state is None or not state.is_paused():
            now = state.name if state else "unknown"
            raise ConflictError(f"deployment #{deployment_id} is not waiting for an answer (its flow run is {now})")
        keyset = (state.state_details.run_input_keyset or {}) if state.state_details else {}
        allowed = _allowed_actions(client, flow_run_id, keyset)
        if allowed and action not in allowed:
            raise ConflictError(f"deployment #{deployment_id} is waiting for one of: {', '.join(allowed)} "
                                f"(not {action!r})")
        result = client.resume_flow_run(flow_run_id, run_input={"action": action, "notes": notes})
    if str(result.status.value).upper() != "ACCEPT":
        details = getattr(result.details, "reason", "") or result.details
        raise FerryError(f"the answer was refused: {details}")
    return f"deployment #{deployment_id}: answered {action}" + (f" ({notes})" if notes else "")


def _allowed_actions(client: SyncPrefectClient, flow_run_id: UUID, keyset: dict[str, str]) -> list[str]:
    key = keyset.get("schema")
    if not key:
        return []
    try:
        schema = json.loads(client.read_flow_run_input(flow_run_id, key))
    except Exception:  # an older pause without a stored schema: let the server validate
        return []
    action = schema.get("properties", {}).get("action", {})
    if "enum" in action:
        return list(action["enum"])
    ref = action.get("$ref") or next((a.get("$ref") for a in action.get("allOf", []) if "$ref" in a), None)
    if ref:
        definition = schema.get("definitions", schema.get("$defs", {})).get(ref.rsplit("/", 1)[-1], {})
        return list(definition.get("enum", []))
    return []
