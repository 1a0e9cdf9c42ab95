"""``ferry deployment answer``: resume a paused deployment's flow run with a person's decision — the same
input the Prefect UI's resume form sends."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from snapshots import deployments as records
from snapshots.errors import ConflictError, FerryError


def answer_pause(ctx: Any, deployment_id: int, action: str, notes: str) -> str:
    from prefect.client.orchestration import get_client

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


def _allowed_actions(client: Any, flow_run_id: UUID, keyset: dict[str, str]) -> list[str]:
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
