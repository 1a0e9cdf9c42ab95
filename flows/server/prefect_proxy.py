"""A reverse proxy of the Prefect API, for the Prefect UI: what a person types into a ``deploy-release``
form's ``prompted`` fields is taken out of the request and kept encrypted in the ferry store before Prefect
sees it, so a prompted secret never reaches Prefect's database, API or UI.

``ferry serve`` mounts it under ``/prefect`` of the ferry server API; the Prefect server is told to point its
UI there (``PREFECT_UI_API_URL=http://<ferry serve>:4280/prefect/api``). Everything is forwarded as is
(HTTP streamed both ways, WebSockets pumped both ways), except:

- ``POST /api/deployments/{id}/create_flow_run`` of a ferry ``deploy-release`` deployment: the values of
  ``parameters.prompted`` become a bundle in the ferry store, the body carries ``prompted_ref`` instead, and
  the bundle is bound to the flow run Prefect creates (only that run can claim it; a refused run discards it);
- ``POST /api/ui/schemas/validate`` (the form checks its values as they are typed): prompted values are
  replaced by a stand-in of the same type, so they do not travel to Prefect to be validated;
- any other request that would store prompted values at Prefect (deployment default parameters, schedule
  parameters, bulk runs) is refused with 422.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from snapshots.workspace import Workspace

logger = logging.getLogger("ferry.prefect_proxy")

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length"}
FERRY_ENTRYPOINT = "flows.orchestration.served_flows.deploy_release__"
_CREATE_RUN = re.compile(r"^/api/deployments/([0-9a-fA-F-]{36})/create_flow_run$")
_DEPLOYMENT = re.compile(r"^/api/deployments/([0-9a-fA-F-]{36})(/.*)?$")
STAND_IN = "********"


def _has_values(prompted: Any) -> bool:
    return isinstance(prompted, dict) and any(v not in (None, "") for v in prompted.values())


def _carries_prompted(body: Any) -> bool:
    """Somewhere in a JSON body, ``parameters`` holding a ``prompted`` object with values."""
    if isinstance(body, dict):
        params = body.get("parameters")
        if isinstance(params, dict) and _has_values(params.get("prompted")):
            return True
        return any(_carries_prompted(v) for v in body.values())
    if isinstance(body, list):
        return any(_carries_prompted(v) for v in body)
    return False


class PrefectProxy:
    """The ASGI app. ``ctx``: the executor's workspace (its store and vault); ``upstream``: the Prefect
    server's root URL (``PREFECT_API_URL`` without ``/api``)."""

    def __init__(self, ctx: Workspace, upstream: str) -> None:
        self.ctx = ctx
        self.upstream = upstream.rstrip("/")
        self._client: httpx.AsyncClient | None = None
        self._ferry_deployments: dict[str, str | None] = {}  # Prefect deployment id → project, or None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.upstream, timeout=httpx.Timeout(60, connect=10),
                                             follow_redirects=False)
        return self._client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = await self.http(Request(scope, receive))
            await response(scope, receive, send)
        elif scope["type"] == "websocket":
            await self.websocket(WebSocket(scope, receive, send))

    # --- HTTP ------------------------------------------------------------------------------------------------

    async def http(self, request: Request) -> Response:
        path = request.url.path
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        method = request.method.upper()
        if method in ("POST", "PUT", "PATCH") and path.startswith("/api/"):
            body = await request.body()
            if method == "POST" and _CREATE_RUN.match(path):
                return await self._create_flow_run(request, path, body)
            if method == "POST" and path == "/api/ui/schemas/validate":
                return await self._forward(request, path, self._stand_in(body))
            auth = [(k, v) for k, v in request.headers.items() if k.lower() == "authorization"]
            refused = await self._refuse_stored_prompted(path, body, auth)
            if refused is not None:
                return refused
            return await self._forward(request, path, body)
        return await self._forward(request, path, None)

    async def _forward(self, request: Request, path: str, body: bytes | None) -> Response:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        content: Any = body if body is not None else request.stream()
        upstream = self.client.build_request(request.method, path, params=request.url.query or None,
                                             headers=headers, content=content)
        try:
            response = await self.client.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            return JSONResponse({"detail": f"ferry's Prefect proxy cannot reach Prefect at {self.upstream}: "
                                           f"{type(exc).__name__}"}, status_code=502)
        out_headers = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}
        if "content-length" in response.headers and "content-encoding" not in response.headers:
            out_headers["content-length"] = response.headers["content-length"]

        async def stream() -> Any:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()

        return StreamingResponse(stream(), status_code=response.status_code, headers=out_headers)

    async def _project_of(self, deployment_id: str, headers: list[tuple[str, str]]) -> str | None:
        """The ferry project whose ``deploy-release`` this Prefect deployment is, or None (someone else's)."""
        if deployment_id in self._ferry_deployments:
            return self._ferry_deployments[deployment_id]
        response = await self.client.get(f"/api/deployments/{deployment_id}", headers=headers)
        if response.status_code != 200:
            return None
        entrypoint = response.json().get("entrypoint") or ""
        project = None
        if entrypoint.startswith(FERRY_ENTRYPOINT):
            with contextlib.suppress(ValueError):
                project = bytes.fromhex(entrypoint[len(FERRY_ENTRYPOINT):]).decode()
        self._ferry_deployments[deployment_id] = project
        return project

    async def _create_flow_run(self, request: Request, path: str, body: bytes) -> Response:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return await self._forward(request, path, body)
        params = data.get("parameters") if isinstance(data, dict) else None
        if not isinstance(params, dict) or "prompted" not in params:
            return await self._forward(request, path, body)
        match = _CREATE_RUN.match(path)
        assert match is not None
        auth = [(k, v) for k, v in request.headers.items() if k.lower() == "authorization"]
        project = await self._project_of(match.group(1), auth)
        if project is None:
            return await self._forward(request, path, body)
        values = {str(k): str(v) for k, v in (params.pop("prompted") or {}).items() if v not in (None, "")}
        ref = None
        if values:
            try:
                ref = await asyncio.to_thread(self._store, project, values)
            except Exception as exc:  # the store or key failing: nothing is forwarded
                logger.error(f"prompted values for {project} not stored: {type(exc).__name__}: {exc}")
                return JSONResponse({"detail": f"ferry could not keep the prompted values: {exc}"}, status_code=503)
            params["prompted_ref"] = ref
        response = await self._send_json(request, path, data)
        if ref is not None:
            await asyncio.to_thread(self._settle, ref, response)
        return Response(response.content, status_code=response.status_code,
                        headers={k: v for k, v in response.headers.items()
                                 if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"})

    async def _send_json(self, request: Request, path: str, data: Any) -> httpx.Response:
        headers = [(k, v) for k, v in request.headers.items()
                   if k.lower() not in HOP_BY_HOP and k.lower() not in ("content-type", "accept-encoding")]
        return await self.client.post(path, params=request.url.query or None, headers=headers, json=data)

    def _store(self, project: str, values: dict[str, str]) -> str:
        from snapshots.store import prompted

        with self.ctx.store.begin() as conn:
            return prompted.store_bundle(conn, self.ctx.vault, project, values, "prefect-ui")

    def _settle(self, ref: str, response: httpx.Response) -> None:
        """Bind the bundle to the run Prefect created, or discard it when Prefect refused the run."""
        from snapshots.store import prompted

        run_id = None
        if response.status_code in (200, 201):
            with contextlib.suppress(ValueError, AttributeError):
                run_id = response.json().get("id")
        with self.ctx.store.begin() as conn:
            if run_id:
                prompted.bind_bundle(conn, ref, str(run_id))
            else:
                prompted.discard_bundle(conn, ref)

    def _stand_in(self, body: bytes) -> bytes:
        """The form's validation request with prompted values replaced by a stand-in string."""
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return body
        values = data.get("values") if isinstance(data, dict) else None
        prompted = values.get("prompted") if isinstance(values, dict) else None
        if isinstance(values, dict) and isinstance(prompted, dict):
            values["prompted"] = {k: (STAND_IN if isinstance(v, str) and v else v) for k, v in prompted.items()}
            return json.dumps(data).encode()
        return body

    async def _refuse_stored_prompted(self, path: str, body: bytes, auth: list[tuple[str, str]]) -> Response | None:
        """Prompted values in anything Prefect would keep (a deployment's default parameters, a schedule's
        parameters, a bulk of runs) of a ferry deployment: refused, not forwarded."""
        match = _DEPLOYMENT.match(path)
        if match is None or not body:
            return None
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if not _carries_prompted(data):
            return None
        if await self._project_of(match.group(1), auth) is None:
            return None
        return JSONResponse({"detail": "ferry keeps prompted values out of Prefect: give them when you start a "
                                       "run (Run → Custom run), not as saved parameters"}, status_code=422)

    # --- WebSockets ------------------------------------------------------------------------------------------

    async def websocket(self, ws: WebSocket) -> None:
        import websockets
        from websockets.typing import Subprotocol

        path = ws.url.path
        root = ws.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        target = self.upstream.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + path
        if ws.url.query:
            target += "?" + ws.url.query
        protocols = [Subprotocol(p.strip()) for p in ws.headers.get("sec-websocket-protocol", "").split(",")
                     if p.strip()]
        headers = {k: v for k, v in ws.headers.items() if k.lower() in ("authorization", "cookie", "origin")}
        try:
            upstream = await websockets.connect(target, subprotocols=protocols or None,
                                                additional_headers=headers, open_timeout=10, max_size=None)
        except Exception as exc:
            logger.warning(f"websocket {path}: Prefect refused: {type(exc).__name__}: {exc}")
            await ws.close(code=1011)
            return
        await ws.accept(subprotocol=upstream.subprotocol)

        async def to_upstream() -> None:
            try:
                while True:
                    message = await ws.receive()
                    if message["type"] == "websocket.disconnect":
                        break
                    if message.get("text") is not None:
                        await upstream.send(message["text"])
                    elif message.get("bytes") is not None:
                        await upstream.send(message["bytes"])
            except WebSocketDisconnect:
                pass

        async def to_client() -> None:
            with contextlib.suppress(Exception):
                async for message in upstream:
                    if isinstance(message, str):
                        await ws.send_text(message)
                    else:
                        await ws.send_bytes(message)

        tasks = [asyncio.create_task(to_upstream()), asyncio.create_task(to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await upstream.close()
            with contextlib.suppress(Exception):
                await ws.close()


def create_proxy(ctx: Workspace, upstream_api_url: str) -> PrefectProxy:
    """The proxy for a Prefect API URL such as ``http://127.0.0.1:4200/api``."""
    root = upstream_api_url.rstrip("/")
    root = root[: -len("/api")] if root.endswith("/api") else root
    return PrefectProxy(ctx, root)
