"""The ferry server API (``/api/v1``), served by ``ferry serve`` next to its Prefect runner: what a requester
holding only a scoped API key may ask of the executor — push a package, create a release, deploy, promote,
roll back, answer, cancel, read. FastAPI and uvicorn come with Prefect.

Errors are ``{"error": "<one line>"}``: 401/403 ``AccessDenied``, 400 ``ConfigError`` (and any other
``FerryError`` a person can fix), 404 ``NotFoundError``, 409 ``ConflictError`` / ``LifecycleError`` /
``SnapshotIntegrityError``, 422 a malformed body, 503 the executor's own store or master key failing.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from snapshots.errors import (
    AccessDenied,
    ConfigError,
    ConflictError,
    FerryError,
    LifecycleError,
    MasterKeyError,
    NotFoundError,
    SnapshotIntegrityError,
    StoreError,
)
from snapshots.workspace import Workspace

logger = logging.getLogger("ferry.server")

PREFIX = "/api/v1"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 4280


def status_of(exc: FerryError) -> int:
    if isinstance(exc, AccessDenied):
        return exc.status
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError | LifecycleError | SnapshotIntegrityError):
        return 409
    if isinstance(exc, StoreError | MasterKeyError):
        return 503
    return 400


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "error"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": _one_line(message)}, status_code=status)


def create_app(ctx: Workspace) -> FastAPI:
    """The API over one executor workspace (its store, vault and feed are opened once and shared)."""
    from flows.server import routes_deployments, routes_packages, routes_projects, routes_runbooks

    app = FastAPI(title="ferry", docs_url=f"{PREFIX}/docs", openapi_url=f"{PREFIX}/openapi.json", redoc_url=None)
    app.state.ctx = ctx
    for module in (routes_packages, routes_projects, routes_deployments, routes_runbooks):
        app.include_router(module.router, prefix=PREFIX)
    from flows.server import routes_inventory  # project list, environment list

    app.include_router(routes_inventory.router, prefix=PREFIX)
    _mount_prefect_proxy(app, ctx)

    @app.exception_handler(FerryError)
    async def ferry_error(_request: Request, exc: FerryError) -> JSONResponse:
        return _error(status_of(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()]
        return _error(422, "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error(f"{request.method} {request.url.path} failed: {type(exc).__name__} (traceback follows)")
        return _error(500, f"internal error: {type(exc).__name__} (the ferry serve log has the details)")

    return app


def _mount_prefect_proxy(app: FastAPI, ctx: Workspace) -> None:
    """``/prefect``: the Prefect API for the Prefect UI, with prompted values kept out of Prefect
    (``flows.server.prefect_proxy``; point the UI here with PREFECT_UI_API_URL=<this server>/prefect/api)."""
    from flows.orchestration.served_runs import api_url
    from flows.server.prefect_proxy import create_proxy

    upstream = api_url()
    if upstream:
        app.mount("/prefect", create_proxy(ctx, upstream))


# --- serving it from ferry serve -------------------------------------------------------------------------

@dataclass(frozen=True)
class ApiOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure_http: bool = False

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


def is_loopback(host: str) -> bool:
    """Every address the host name stands for is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def check_options(options: ApiOptions) -> None:
    """Refuse what would expose keys on the network: plain HTTP on a non-loopback address (unless
    ``--insecure-http``), half a TLS pair, unreadable certificate files."""
    if (options.tls_cert is None) != (options.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    if options.tls:
        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(options.tls_cert), str(options.tls_key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--tls-cert/--tls-key: cannot load {options.tls_cert} and {options.tls_key}: "
                              f"{_one_line(str(exc))}") from None
    elif not options.insecure_http and not is_loopback(options.host):
        raise ConfigError(f"--api-host {options.host} is not a loopback address: API keys would cross the network "
                          "in plain text; give --tls-cert and --tls-key (or --insecure-http behind a TLS proxy)")


def bind(options: ApiOptions) -> socket.socket:
    """The listening socket, bound now so a port in use is one line before anything starts."""
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((options.host, options.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"the ferry API cannot listen on {options.host}:{options.port}: {exc.strerror or exc} "
                          "(--api-port, or --no-api)") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class ApiServer:
    """uvicorn inside ``ferry serve``'s event loop, next to the runner. Signals stay ``ferry serve``'s: Ctrl-C
    stops both."""

    def __init__(self, options: ApiOptions) -> None:
        check_options(options)
        self.options = options
        self.sock = bind(options)
        if options.port == 0:
            self.options = ApiOptions(options.host, self.sock.getsockname()[1], options.tls_cert, options.tls_key,
                                      options.insecure_http)

    @property
    def url(self) -> str:
        return self.options.url

    async def serve(self, ctx: Workspace) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        config = uvicorn.Config(create_app(ctx), log_level="warning", access_log=False, lifespan="off",
                                ssl_certfile=str(self.options.tls_cert) if self.options.tls_cert else None,
                                ssl_keyfile=str(self.options.tls_key) if self.options.tls_key else None,
                                timeout_keep_alive=30)
        server = Server(config)
        try:
            await server.serve(sockets=[self.sock])
        finally:
            server.should_exit = True
            self.sock.close()
