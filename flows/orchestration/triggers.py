"""What starts deployments without a person typing ``ferry deploy``: the lifecycle's auto-deploy phases
(after a release is created, and after a deployment completes a phase) and release creation when a
configured package is pushed. Cron triggers are Prefect schedules, set up by ``ferry serve``.

Automatic deployments are started through the project's served ``deploy-release`` deployment, so they run
where ``ferry serve`` (or its workers) run. Without a live one, nothing is started behind the user's back:
the user is told what the lifecycle would deploy and the command to do it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flows.engine.request import DeployRequest, check_and_record
from flows.orchestration.form_refresh import refresh as refresh_form
from flows.orchestration.served_runs import create_run, find_served  # Prefect itself loads only to start a run
from snapshots import releases
from snapshots.channels import channel_for_push
from snapshots.errors import FerryError
from snapshots.lifecycle import next_auto_deploy
from snapshots.model.channels import DEFAULT_CHANNEL
from snapshots.model.project import ReleaseOnPushTrigger
from snapshots.projects import project_names, require_infrastructure, require_project
from snapshots.store import records
from snapshots.workspace import Workspace


def auto_deploy(ctx: Workspace, project: str, version: str, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Start deployments of ``version`` to the lifecycle's next auto-deploy environments. Returns what was
    started: [{environment, deployment_id, flow_run_id}]. An environment that already has a deployment of
    this release (any state) is not started again: auto-deploy happens once per release and environment."""
    with ctx.store.read() as conn:
        release = releases.require(conn, project, version)
        infra = require_infrastructure(conn)
        lifecycle = infra.lifecycle(release.snapshot["lifecycle"])
        if lifecycle is None:
            return []
        reached = records.successful_environments(conn, release.id)
        attempted = {d.environment for d in records.list_deployments(conn, project, limit=10_000)
                     if d.release_id == release.id}
    if not attempted:  # a release no deployment has used yet: just created, so the UI form offers it from now
        refresh_form(ctx, project)
    pending = [env for env in next_auto_deploy(lifecycle, reached) if env not in attempted]
    if not pending:
        return []
    served = find_served(project)
    if served is None or not served.live:
        why = "no `ferry serve` serves it" if served is None else f"its `ferry serve` is not running " \
                                                                   f"({served.describe_liveness()})"
        for env in pending:
            say(f"lifecycle auto-deploy: {project} {version} → {env} not started: {why}; "
                f"run `ferry deploy {project} {version} --to {env}`")
        return []
    started = []
    for env in pending:
        request = DeployRequest(project, version, env)
        try:
            deployment_id, _ = check_and_record(ctx, request)
            run = create_run(served, served_parameters(request, deployment_id), tags=["auto-deploy"])
        except FerryError as exc:
            say(f"lifecycle auto-deploy: {project} {version} → {env} not started: {exc}")
            continue
        say(f"lifecycle auto-deploy: {project} {version} → {env}: deployment #{deployment_id} "
            f"(flow run {run.name})")
        started.append({"environment": env, "deployment_id": deployment_id, "flow_run_id": str(run.id)})
    return started


def served_parameters(request: DeployRequest, deployment_id: int | None) -> dict[str, Any]:
    """The served ``deploy-release/<project>`` flow's parameters for a request (the project is built in)."""
    params = request.flow_parameters(deployment_id)
    params.pop("project", None)
    return params


def releases_on_push(ctx: Workspace, package_id: str, version: str, say: Callable[[str], None]) -> list[str]:
    """Create a release of every project whose ``create-release-on-push`` trigger names this package, pinned
    to the pushed version. Returns error messages (the push itself already succeeded)."""
    with ctx.store.read() as conn:
        wanted = []
        for name in project_names(conn):
            model = require_project(conn, name).model()
            for trigger in model.triggers:
                if isinstance(trigger, ReleaseOnPushTrigger) and trigger.enabled and trigger.package == package_id:
                    wanted.append((name, trigger.name, trigger.channel))
    errors = []
    for project, trigger_name, channel in wanted:
        try:
            with ctx.store.begin() as conn:
                lane = channel_for_push(require_project(conn, project).model(), package_id, version, channel)
                release, created = releases.create(conn, ctx.feed, project, ctx.actor, vault=ctx.vault,
                                                   channel=lane.name, package_pins={package_id: version},
                                                   notes=f"Created by trigger {trigger_name!r}: {package_id} "
                                                         f"{version} pushed")
        except FerryError as exc:
            errors.append(f"trigger {trigger_name!r} of {project}: no release created: {exc}")
            continue
        lane_name = release.snapshot.get("channel")
        where = f" in channel {lane_name!r}" if lane_name not in (None, DEFAULT_CHANNEL) else ""
        say(f"trigger {trigger_name!r}: release {project} {release.version} created{where} ({package_id} {version})")
        if created:
            auto_deploy(ctx, project, release.version, say)
    return errors
