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


__all__ = ["run_tags", "tagged"]
