"""Tags that make the Prefect UI a deployment tool: every flow run of a deployment carries ``project:NAME``
and ``environment:NAME``, so the flow-runs page filters by project and environment."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any


def run_tags(parameters: Mapping[str, Any]) -> list[str]:
    """``project:NAME``, ``environment:NAME`` of a flow run's parameters (those it has)."""
    return [f"{key}:{parameters[key]}" for key in ("project", "environment") if parameters.get(key)]


def tagged(parameters: Mapping[str, Any]) -> AbstractContextManager[object]:
    """Prefect's ``tags`` context for a flow this process runs itself: the run it creates carries them."""
    found = run_tags(parameters)
    if not found:
        return nullcontext()
    from prefect import tags

    return tags(*found)


def tag_current_run(parameters: Mapping[str, Any]) -> None:
    """Inside a flow run: add the tags it lacks (a run the Prefect UI's form or a schedule created, which no
    ferry code tagged). No API call when ferry created the run with them."""
    from prefect.runtime import flow_run

    have = set(flow_run.tags or [])
    missing = [t for t in run_tags(parameters) if t not in have]
    if not missing or not flow_run.id:
        return
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.id, tags=[*have, *missing])
    except Exception:  # the tags help people filter; no reason to fail a deployment
        import logging

        logging.getLogger("ferry").warning("could not tag the flow run", exc_info=True)
__all__ = ["run_tags", "tag_current_run", "tagged"]
