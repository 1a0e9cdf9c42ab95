"""The served health check (issue 15 item 1): one Prefect deployment per machine policy in use, on an interval
schedule of the policy's ``health_check.interval``. Each run connects to the policy's targets (as ``ferry target
check`` does), records the results in the store — where ``ferry target list`` and deployments under a ``skip``
policy read them — and publishes a table artifact. ``ferry serve`` registers them and re-registers them when the
infrastructure changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import get_client
from prefect.deployments.runner import EntrypointType
from prefect.runner import Runner

from flows.engine.target_health import check_targets, record_all
from snapshots.projects import latest_infrastructure
from snapshots.workspace import Workspace

FLOW_NAME = "target-health-check"


def deployment_name(policy: str) -> str:
    return "policy-" + (re.sub(r"[^a-z0-9]+", "-", policy.lower()).strip("-") or "default")


@flow(name=FLOW_NAME, log_prints=False, persist_result=False)
def target_health_check(policy: str) -> dict[str, Any]:
    """Check every target of one machine policy: reachable, latency, free disk, clock skew, PowerShell version.

    Args:
        policy: The machine policy whose targets are checked.
    """
    logger = get_run_logger()
    ctx = Workspace()
    with ctx.store.read() as conn:
        found = latest_infrastructure(conn)
    infra = found[1] if found else None
    targets = [t for t in (infra.targets if infra else []) if t.machine_policy == policy]
    results = check_targets(targets, home=ctx.settings.home, actor="prefect-schedule")
    with ctx.store.begin() as conn:
        record_all(conn, results)
    rows = [{"target": r.target, "reachable": "yes" if r.reachable else "NO",
             "latency_ms": r.latency_ms, "free_bytes": r.free_bytes, "clock_skew_s": r.clock_skew_s,
             "powershell": r.powershell or "", "reason": r.reason or ""} for r in results]
    create_table_artifact(rows, key=f"ferry-health-{deployment_name(policy)}",
                          description=f"Health of the targets of machine policy {policy}")
    down = [r for r in results if not r.reachable]
    for r in down:
        logger.warning(f"{r.target}: unreachable: {r.reason}")
    logger.info(f"machine policy {policy}: {len(results) - len(down)} of {len(results)} target(s) healthy")
    return {"policy": policy, "checked": len(results), "unreachable": [r.target for r in down]}


async def sync_health_checks(ctx: Workspace, runner: Runner | None, work_pool: str | None,
                             registered: dict[str, tuple[float, UUID]] | None,
                             say: Callable[[str], None]) -> dict[str, tuple[float, UUID]]:
    """Register one deployment per machine policy that has targets, with the policy's interval; a policy that
    lost its targets (or its interval changed) is replaced. Returns policy → (interval, deployment id)."""
    import asyncio

    def load() -> dict[str, float]:
        with ctx.store.read() as conn:
            found = latest_infrastructure(conn)
        if found is None:
            return {}
        infra = found[1]
        return {name: infra.policy_of(next(t for t in infra.targets if t.machine_policy == name))
                .health_check.interval for name in sorted({t.machine_policy for t in infra.targets})}

    wanted = await asyncio.to_thread(load)
    have = dict(registered or {})
    for policy, (_interval, deployment_id) in list(have.items()):
        if wanted.get(policy) != have[policy][0]:
            async with get_client() as client:
                await client.delete_deployment(deployment_id)
            del have[policy]
    for policy, interval in wanted.items():
        if policy in have:
            continue
        deployment = await target_health_check.ato_deployment(
            name=deployment_name(policy), description=f"Health check of machine policy {policy}'s targets",
            tags=["ferry", "health"], parameters={"policy": policy}, interval=timedelta(seconds=interval),
            work_pool_name=work_pool, entrypoint_type=EntrypointType.MODULE_PATH)
        deployment.entrypoint = f"{target_health_check.fn.__module__}.{target_health_check.fn.__name__}"
        if runner is not None:
            deployment_id = await runner.aadd_deployment(deployment)
            runner._deployment_registry.register_flow(deployment_id, target_health_check)
        else:
            deployment_id = await deployment.aapply(work_pool_name=work_pool)
        have[policy] = (interval, deployment_id)
        say(f"machine policy {policy}: health check every {interval:g}s registered "
            f"({FLOW_NAME}/{deployment_name(policy)})")
    return have
