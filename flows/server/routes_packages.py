"""``/packages``: push a package over HTTP (streamed to the feed, sha256 checked, the rules of
``ferry package push``) and list the feed."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from flows.server.auth import authorize, current_key, workspace
from snapshots.errors import ConfigError
from snapshots.store.api_keys import ApiKey
from snapshots.store.feed import partial_file
from snapshots.workspace import Workspace

router = APIRouter()

CHUNK = 1 << 20
"""Bytes gathered from the request before one write + hash (in a worker thread, off the event loop)."""

_SHA = re.compile(r"^[0-9a-f]{64}$")


class _Receiver:
    """Writes the received bytes to a temporary file in the feed while hashing them."""

    def __init__(self, directory: Path) -> None:
        fd, self.path = partial_file(directory)  # named for this process: a later push sweeps it if we die
        self.file = os.fdopen(fd, "wb", buffering=0)
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        view = memoryview(data)
        while view:
            view = view[self.file.write(view):]
        self.size += len(data)

    def finish(self) -> None:
        os.fsync(self.file.fileno())
        self.file.close()

    def discard(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.path.unlink(missing_ok=True)


@router.post("/packages", status_code=201)
async def push(request: Request, filename: str = Query(..., description="<Id>.<SemVer>.zip|.tar.gz|.nupkg"),
               x_ferry_sha256: str | None = Header(None), key: ApiKey = Depends(current_key)) -> JSONResponse:
    """The body is the archive's bytes, streamed: never held whole in memory, never left half-written."""
    ctx = workspace(request)
    await run_in_threadpool(authorize, request, key, "push")
    expected = (x_ferry_sha256 or "").strip().lower()
    if not _SHA.match(expected):
        raise ConfigError("X-Ferry-Sha256: the sha256 of the file, 64 hex digits, is required")
    parsed, directory = ctx.feed.incoming(Path(filename).name)
    receiver = await run_in_threadpool(_Receiver, directory)
    try:
        pending: list[bytes] = []
        gathered = 0
        async for chunk in request.stream():
            pending.append(chunk)
            gathered += len(chunk)
            if gathered >= CHUNK:
                await run_in_threadpool(receiver.write, b"".join(pending))
                pending, gathered = [], 0
        if pending:
            await run_in_threadpool(receiver.write, b"".join(pending))
        await run_in_threadpool(receiver.finish)
        actual = receiver.digest.hexdigest()
        if actual != expected:
            raise ConfigError(f"{filename}: sha256 mismatch: received {receiver.size} bytes with sha256 "
                              f"{actual[:16]}…, X-Ferry-Sha256 says {expected[:16]}…; nothing was stored")

        def adopt() -> tuple[Any, bool]:
            with ctx.store.begin() as conn:
                return ctx.feed.adopt(conn, parsed, receiver.path, actual, receiver.size, key.actor)

        package, created = await run_in_threadpool(adopt)
    finally:
        await run_in_threadpool(receiver.discard)
    messages: list[str] = []
    errors: list[str] = []
    if created:
        errors = await run_in_threadpool(_releases_on_push, ctx, key, package, messages)
    body = {"package_id": package.package_id, "version": package.version, "sha256": package.sha256,
            "size": package.size, "created": created, "releases": messages, "errors": errors}
    return JSONResponse(body, status_code=201 if created else 200)


def _releases_on_push(ctx: Workspace, key: ApiKey, package: Any, messages: list[str]) -> list[str]:
    """Projects with a create-release-on-push trigger for this package get a release, as after a local push."""
    from flows.orchestration.triggers import releases_on_push

    return releases_on_push(ctx.acting_as(key.actor), package.package_id, package.version, messages.append)


@router.get("/packages")
def list_packages(request: Request, package_id: str | None = None,
                  key: ApiKey = Depends(current_key)) -> dict[str, Any]:
    ctx = workspace(request)
    with ctx.store.read() as conn:
        found = ctx.feed.list(conn, package_id)
    return {"packages": [{"package_id": p.package_id, "version": p.version, "sha256": p.sha256, "size": p.size,
                          "pushed_at": p.pushed_at, "pushed_by": p.pushed_by} for p in found]}
