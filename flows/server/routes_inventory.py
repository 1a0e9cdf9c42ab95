"""``/projects`` and ``/environments``: what ``ferry project list`` and ``ferry environment list`` show, for any
valid key (a key sees the projects it may read; environments and their targets are not secret to a requester
who may deploy to them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from flows.server.auth import current_key, workspace
from snapshots.store.api_keys import ApiKey

router = APIRouter()


@router.get("/projects")
def list_projects(request: Request, key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    from flows.engine.inventory import projects

    with workspace(request).store.read() as conn:
        return {"projects": [p for p in projects(conn) if key.may_read(p["name"])]}


@router.get("/environments")
def list_environments(request: Request, key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    from flows.engine.inventory import environments

    with workspace(request).store.read() as conn:
        return {"environments": environments(conn)}
