"""Who is asking: the API key in ``Authorization: Bearer ferry_<id>_<secret>``, checked against the store;
what it may do: its scopes. A refusal for scope (403) is written to the audit log as ``refused`` with the
key's name — the attempt is on record even though nothing else changed."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from snapshots.errors import AccessDenied
from snapshots.store import api_keys, audit
from snapshots.store.api_keys import ApiKey


def workspace(request: Request) -> Any:
    """The executor's workspace (store, vault, feed), opened once by ``ferry serve``."""
    return request.app.state.ctx


def current_key(request: Request) -> ApiKey:
    """FastAPI dependency: the authenticated key, or 401 (no key, unknown, wrong secret, expired, revoked)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if header and scheme.lower() != "bearer":
        raise AccessDenied("the Authorization header must be 'Bearer ferry_…'", status=401)
    with workspace(request).store.read() as conn:
        key = api_keys.authenticate(conn, token.strip() or None)
    request.state.key = key
    return key


def authorize(request: Request, key: ApiKey, action: str, project: str | None = None,
              environment: str | None = None) -> None:
    """Raise 403 unless ``key`` may do ``action`` (on the project / in the environment); a refusal is
    recorded before it is raised."""
    try:
        api_keys.require(key, action, project, environment)
    except AccessDenied as exc:
        refused(request, key, action, str(exc), project, environment)
        raise


def authorize_read(request: Request, key: ApiKey, project: str) -> None:
    try:
        api_keys.require_read(key, project)
    except AccessDenied as exc:
        refused(request, key, "read", str(exc), project, None)
        raise


def refused(request: Request, key: ApiKey, action: str, reason: str, project: str | None,
            environment: str | None) -> None:
    subject = f"project/{project}" if project else "server"
    if project and environment:
        subject += f"/environment/{environment}"
    with workspace(request).store.begin() as conn:
        audit.record(conn, key.actor, "refused", subject, wanted=action, reason=reason,
                     request=f"{request.method} {request.url.path}")
