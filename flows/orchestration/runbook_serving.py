"""Runbooks on the Prefect server: ``ferry serve`` registers one deployment of the ``run-runbook`` flow per
runbook (``run-runbook/<project>: <runbook>``, project and runbook preset, so the Prefect UI's form asks only
for the environment, targets and guided failure, and Prefect schedules can run it), and ``ferry runbook run``
and the ferry API start flow runs on it for a run they recorded first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flows.engine.runbooks import RunbookRequest
from flows.orchestration.deploy_form import hide_internal
from flows.orchestration.served_runs import Served, create_run, deployment_name, find_served
from snapshots.store import records
from snapshots.workspace import Workspace

if TYPE_CHECKING:
    from prefect.runner import Runner

FLOW = "run-runbook"


def served_name(project: str, runbook: str) -> str:
    return deployment_name(f"{project}: {runbook}")


def find_served_runbook(project: str, runbook: str, client: Any = None) -> Served | None:
    return find_served(served_name(project, runbook), flow=FLOW, client=client)


def start_served_run(ctx: Workspace, served: Served, request: RunbookRequest, run_id: int, *,
                     tags: list[str] | None = None, client: Any = None) -> Any:
    """A flow run of the runbook's served deployment for a recorded run (``.id``, ``.name``); if Prefect refuses
    it, the record says so (Failed, not started)."""
    try:
        run = create_run(served, request.flow_parameters(run_id), tags=["runbook", *(tags or [])], client=client)
    except Exception as exc:
        with ctx.store.begin() as conn:
            records.set_state(conn, run_id, records.FAILED, error=f"not started: {exc}")
        raise
    with ctx.store.begin() as conn:
        records.set_state(conn, run_id, records.QUEUED, flow_run_id=str(run.id))
    return run


async def register_runbooks(ctx: Workspace, project: str, runner: Runner | None, work_pool: str | None) -> list[str]:
    """Register (or update) a served deployment per runbook of the project's current revision; returns their
    names. Runs of it go through the ``run-runbook`` flow like ``ferry runbook run``'s."""
    import asyncio

    from prefect.deployments.runner import EntrypointType

    from flows.orchestration.runbook_flow import run_runbook
    from snapshots.projects import require_project

    def runbooks() -> list[tuple[str, str]]:
        with ctx.store.read() as conn:
            return [(r.name, r.description) for r in require_project(conn, project).model().runbooks]

    names = []
    for name, description in await asyncio.to_thread(runbooks):
        deployment = await run_runbook.ato_deployment(
            name=served_name(project, name), description=description or f"Runbook {name!r} of {project} (ferry).",
            tags=["ferry", "runbook"], parameters={"project": project, "runbook": name},
            work_pool_name=work_pool, entrypoint_type=EntrypointType.MODULE_PATH, enforce_parameter_schema=True)
        hide_internal(deployment)  # deployment_id: ferry's own bookkeeping, not a field of the UI form
        deployment.entrypoint = f"{run_runbook.fn.__module__}.{run_runbook.fn.__name__}"
        if runner is not None:
            deployment_id = await runner.aadd_deployment(deployment)
            runner._deployment_registry.register_flow(deployment_id, run_runbook)
        else:
            await deployment.aapply(work_pool_name=work_pool)
        names.append(f"{FLOW}/{deployment.name}")
    return names
