"""A release just created is offered by the project's UI form (and accepted by the Prefect API) at once, not
only after ``ferry serve``'s next sync: whoever created it updates the registered forms in place.

Without this, a CI job that creates a release and then starts ``deploy-release/<project>`` through the Prefect
API would be refused (HTTP 409: not one of the form's releases) for up to ``--sync-seconds``. ``ferry serve``'s
sync stays the owner of the registrations (it re-registers with the same choices); this is a best-effort
shortcut, and a failure of it changes nothing but how soon the form shows the release.
"""

from __future__ import annotations

import logging
from typing import Any

from flows.orchestration.deploy_form import load_all, shape
from flows.orchestration.served_runs import deployment_name, thin_api
from snapshots.workspace import Workspace

logger = logging.getLogger("ferry.form")

FLOWS = ("deploy-release", "plan-release")
"""The served deployments whose form offers releases."""


def refresh(ctx: Workspace, project: str) -> list[str]:
    """Update the release (and target, step, channel) choices of the project's registered forms; returns the
    deployments it changed. Nothing happens without a Prefect API or a registered deployment."""
    api = thin_api()
    if api is None:
        return []
    changed = []
    try:
        found = [(flow, api.deployment(flow, deployment_name(project))) for flow in FLOWS]
        registered = [(flow, d) for flow, d in found if d is not None and d.get("parameter_openapi_schema")]
        if not registered:
            return []
        schema: dict[str, Any] = registered[0][1]["parameter_openapi_schema"]
        environments = tuple(schema.get("properties", {}).get("environment", {}).get("enum") or ())
        choices = load_all(ctx, [(project, environments)]).get(project)
        if choices is None:
            return []
        for flow, deployment in registered:
            schema = deployment["parameter_openapi_schema"]
            before = repr(schema)
            shape(schema.setdefault("properties", {}), schema.get("required"), choices)
            if repr(schema) != before:
                api.update_parameter_schema(str(deployment["id"]), schema)
                changed.append(f"{flow}/{deployment['name']}")
    except Exception as exc:  # best effort: ferry serve's next sync does the same
        logger.debug(f"the UI form of {project} waits for ferry serve's next sync: {type(exc).__name__}: {exc}")
    return changed
