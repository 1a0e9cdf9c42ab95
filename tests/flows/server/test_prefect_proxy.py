"""ferry's Prefect API proxy passes everything that is not a prompted value through unchanged: plain requests,
CORS preflights (the UI calls it from another origin), and WebSockets (Prefect's event stream). Against the
session's real Prefect server; the proxy served by uvicorn as ``ferry serve`` does."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.routing import Mount

from flows.server.prefect_proxy import create_proxy

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def proxy(prefect_server: Any) -> Iterator[str]:
    """The proxy (no ferry store: nothing here carries prompted values) mounted under /prefect."""
    app = Starlette(routes=[Mount("/prefect", app=create_proxy(None, prefect_server.api_url))])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}/prefect/api"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_requests_and_cors_preflight_pass_through(proxy: str) -> None:
    assert httpx.get(f"http://{proxy}/health").json() is True
    flows = httpx.post(f"http://{proxy}/flows/filter", json={"limit": 1})
    assert flows.status_code == 200 and isinstance(flows.json(), list)
    preflight = httpx.options(f"http://{proxy}/flows/filter", headers={
        "Origin": "http://ui.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] in ("*", "http://ui.example")
    missing = httpx.get(f"http://{proxy}/flow_runs/{uuid.uuid4()}")
    assert missing.status_code == 404


def test_event_stream_websocket_passes_through(proxy: str) -> None:
    """Prefect's ``/api/events/out`` through the proxy: the auth handshake, then an event emitted (through the
    proxy too) arrives on the socket."""
    name = f"ferry.proxy-test.{uuid.uuid4().hex[:8]}"

    async def run() -> bool:
        async with websockets.connect(f"ws://{proxy}/events/out", subprotocols=["prefect"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "auth", "token": None}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "auth_success"}
            # (the default time window ends when the filter arrives: open it, so a later event matches)
            await ws.send(json.dumps({"type": "filter", "filter": {
                "occurred": {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"},
                "event": {"name": [name]}}}))
            await asyncio.sleep(0.5)
            event = {"id": str(uuid.uuid4()), "occurred": datetime.now(UTC).isoformat(), "event": name,
                     "resource": {"prefect.resource.id": "ferry.proxy-test"}}
            async with httpx.AsyncClient() as client:
                assert (await client.post(f"http://{proxy}/events", json=[event])).status_code == 204
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
                if message.get("type") == "event" and message["event"]["event"] == name:
                    return True
            return False

    assert asyncio.run(run())
