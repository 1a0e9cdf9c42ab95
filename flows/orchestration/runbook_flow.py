"""The ``run-runbook`` Prefect flow: one flow run per runbook run — a published runbook snapshot against one
environment, through the same engine, concurrency slots, heartbeat, masking and guided failure as a
deployment; recorded beside deployments (kind ``runbook``), with no journal and no lifecycle movement."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run as current_flow_run
from prefect.states import State

from flows.engine.runbooks import RunbookRequest, prepare_runbook, record_run
from flows.orchestration.deploy_flow import CancelledBeforeStart, _check_record, _run
from flows.orchestration.served_flows import prefect_actor
from snapshots.errors import FerryError
from snapshots.store import prompted, records
from snapshots.variables.masking import install_masking_filter
from snapshots.workspace import Workspace


def _run_name() -> str:
    params = current_flow_run.parameters
    return f"{params.get('project')} runbook {params.get('runbook')} → {params.get('environment')}"


@flow(name="run-runbook", flow_run_name=_run_name, persist_result=False, log_prints=False)
def run_runbook(project: str, runbook: str, environment: str, snapshot: int | None = None,
                targets: list[str] | None = None, exclude_targets: list[str] | None = None,
                guided_failure: bool | None = None, deployment_id: int | None = None,
                actor: str | None = None) -> dict[str, Any] | State:
    """Run a project's runbook (its newest published snapshot, or ``snapshot``) against an environment.

    Args:
        project: The project whose runbook runs.
        runbook: The runbook's name.
        environment: The environment to run it in (one the runbook allows).
        snapshot: A published snapshot number (default: the newest).
        targets: Only these targets (default: every target of the environment in the runbook's scope).
        exclude_targets: Leave these targets out.
        guided_failure: Pause on a failed step and ask a person (default: the environment's setting).
        deployment_id: Internal: the record a CLI or API call created (its prompted values are in the store).
        actor: Internal: who asked, for a record this run creates (``prefect-ui``, ``prefect-schedule``).
    """
    logger = get_run_logger()
    if deployment_id is None and actor is None and current_flow_run.deployment_id:
        actor = prefect_actor()  # straight from the Prefect UI, REST or a schedule: no ferry requester recorded it
    ctx = Workspace() if actor is None else Workspace().acting_as(actor)
    flow_run_id = str(current_flow_run.id) if current_flow_run.id else None
    try:
        with ctx.store.begin() as conn:
            stored: dict[str, str] = {}
            if deployment_id is not None:
                _check_record(conn, deployment_id, project, environment)
                stored = prompted.read(conn, ctx.vault, deployment_id)
            request = RunbookRequest(project, runbook, environment, snapshot, list(targets or []),
                                     list(exclude_targets or []), stored, guided_failure)
            plan = prepare_runbook(conn, ctx.feed, ctx.vault, request)
            if deployment_id is None:
                deployment_id = record_run(conn, ctx, plan, request)
            records.set_state(conn, deployment_id, records.QUEUED, flow_run_id=flow_run_id)
    except CancelledBeforeStart as stop:
        return stop.state(ctx, logger)
    except FerryError as exc:
        if deployment_id is not None:
            with ctx.store.begin() as conn:
                records.set_state(conn, deployment_id, records.FAILED, error=str(exc), flow_run_id=flow_run_id)
        logger.error(str(exc))
        raise
    remove_filter = install_masking_filter(plan.current.masker)
    try:
        result = _run(plan, deployment_id, ctx, logger, runbook=True)
    except CancelledBeforeStart as stop:
        return stop.state(ctx, logger)
    finally:
        remove_filter()
    return {**result, "runbook": plan.current.release.snapshot["runbook"],
            "snapshot": plan.current.release.snapshot["snapshot"]}
