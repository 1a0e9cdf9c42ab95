"""``FerryClient``: one method per row of the ferry server API (``/api/v1``), errors as ``FerryError``s.

The API's status codes map onto the errors the local commands raise, so a command reads the same whether
it ran here or on the executor: 401/403 → ``AccessDenied`` (exit code 3, "refused before start"), 404 →
``NotFoundError``, 409 → ``ConflictError``, 400/422 → ``ConfigError``; a server that cannot be reached →
``ServerUnreachable`` naming it. The API key travels only in the ``Authorization`` header and never appears
in an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Self

import httpx

from snapshots.digests import sha256_file
from snapshots.errors import (
    AccessDenied,
    ConfigError,
    ConflictError,
    FerryError,
    NotFoundError,
    PrefectUnreachable,
    ServerUnreachable,
)
from snapshots.tls import tls_context

API_PREFIX = "/api/v1"
CHUNK = 1 << 20
"""Bytes per read when hashing and sending a package: large enough that a 200 MB push costs ~200 writes."""

FULL_PAGE = 200
"""A log page with at least this many lines is read again at once instead of after the poll interval."""

PUSH_READ_TIMEOUT = 600.0
"""After the last byte of a package, the server hashes, checks and stores it before answering."""

_STATUS_ERRORS: dict[int, type[FerryError]] = {401: AccessDenied, 403: AccessDenied, 404: NotFoundError,
                                               409: ConflictError, 400: ConfigError, 422: ConfigError}


@dataclass(frozen=True)
class LogLine:
    """One line of a deployment's log as the server sends it."""

    at: str
    level: str
    task: str | None
    message: str

    def text(self) -> str:
        """``HH:MM:SS | LEVEL   | step · target | message`` (local time), the shape ``ferry deploy --wait``
        prints."""
        try:
            clock = datetime.fromisoformat(self.at.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
        except ValueError:
            clock = self.at
        where = f"{self.task} | " if self.task else ""
        return f"{clock} | {self.level:<7} | {where}{self.message}"


@dataclass(frozen=True)
class FollowResult:
    """How following a deployment ended: ``finished`` is False when the timeout came first."""

    deployment_id: int
    state: str
    ok: bool
    finished: bool
    cursor: str | None = None
    """Where the log was left: pass it as ``after`` to go on following without repeating lines."""


def sha256_of(path: Path) -> tuple[str, int]:
    """The file's sha256 and size, read once in chunks (the file is never held in memory)."""
    return sha256_file(path), path.stat().st_size


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


def _error_text(response: httpx.Response) -> str:
    """The server's one-line reason: ``{"error": ...}``, or FastAPI's ``{"detail": ...}`` for a body that
    failed validation."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip().splitlines()[0][:300] if response.text.strip() else response.reason_phrase
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            return body["error"]
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            first = detail[0]
            where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
            return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))
    return response.reason_phrase


class _Connection:
    """One keep-alive httpx connection, closed with the ``with`` block (both APIs the CLI talks to)."""

    _http: httpx.Client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FerryClient(_Connection):
    """A requester's connection to the ferry server API. Synchronous: the CLI does one thing at a time."""

    def __init__(self, server: str, api_key: str, *, timeout: float = 30.0, verify: bool | str = True) -> None:
        self.server = server.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.server + API_PREFIX, timeout=timeout, verify=tls_context(verify),
                                  headers={"Authorization": f"Bearer {api_key}", "User-Agent": "ferry-client"})

    # -- transport ---------------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ServerUnreachable(f"the ferry server at {self.server} did not answer within "
                                    f"{self.timeout:g}s") from None
        except httpx.ConnectError as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else str(exc) or type(exc).__name__
            raise ServerUnreachable(f"cannot reach the ferry server at {self.server}: {reason}") from None
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"the connection to the ferry server at {self.server} broke: "
                                    f"{str(exc) or type(exc).__name__}") from None

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.is_success:
            return response.json() if response.content else {}
        error = _STATUS_ERRORS.get(response.status_code, FerryError)
        text = _error_text(response)
        if error is AccessDenied:
            raise AccessDenied(text, status=response.status_code)
        if error is FerryError:
            text = f"the ferry server answered {response.status_code}: {text}"
        raise error(text)

    # -- the API, one method per row ---------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        """The key's name and scopes."""
        return self._call("GET", "/whoami")

    def push_package(self, path: Path, *, filename: str | None = None) -> dict[str, Any]:
        """Push a package file: its sha256 first (one pass over the file), then the bytes streamed from disk
        in 1 MiB chunks. Returns ``{package_id, version, sha256, size, created, releases}``."""
        path = Path(path)
        try:
            sha, size = sha256_of(path)
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror or exc}") from None
        headers = {"X-Ferry-Sha256": sha, "Content-Type": "application/octet-stream",
                   "Content-Length": str(size)}
        timeout = httpx.Timeout(self.timeout, read=max(self.timeout, PUSH_READ_TIMEOUT))
        with open(path, "rb") as f:
            try:
                return self._call("POST", "/packages", params={"filename": filename or path.name},
                                  content=_chunks(f), headers=headers, timeout=timeout)
            except ServerUnreachable:
                # A server that refuses a push answers before reading the body and closes the connection,
                # which the sender sees as a broken pipe: ask who we are, to report the refusal instead.
                self._explain_refused_push()
                raise

    def _explain_refused_push(self) -> None:
        me = self.whoami()  # raises AccessDenied for a key the server does not accept
        if "push" not in (me.get("actions") or []):
            raise AccessDenied(f"api key {me.get('name')!r} may not push packages")

    def list_packages(self, package_id: str | None = None) -> list[dict[str, Any]]:
        params = {"package_id": package_id} if package_id else None
        return self._call("GET", "/packages", params=params)["packages"]

    def create_release(self, project: str, *, version: str | None = None, packages: dict[str, str] | None = None,
                       notes: str | None = None, ignore_existing: bool = False,
                       deploy_to: list[str] | None = None, channel: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"ignore_existing": ignore_existing}
        for key, value in (("version", version), ("packages", packages), ("notes", notes),
                           ("deploy_to", deploy_to), ("channel", channel)):
            if value:
                body[key] = value
        return self._call("POST", f"/projects/{_seg(project)}/releases", json=body)

    def list_projects(self) -> list[dict[str, Any]]:
        """As ``ferry project list --json``'s ``projects``: the ones this key may read."""
        return self._call("GET", "/projects")["projects"]

    def list_environments(self) -> list[dict[str, Any]]:
        """As ``ferry environment list --json``'s ``environments``."""
        return self._call("GET", "/environments")["environments"]

    def list_releases(self, project: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/projects/{_seg(project)}/releases")["releases"]

    def show_release(self, project: str, version: str) -> dict[str, Any]:
        return self._call("GET", f"/projects/{_seg(project)}/releases/{_seg(version)}")

    def deploy(self, project: str, release: str, environment: str, **options: Any) -> dict[str, Any]:
        """Start a deployment. ``options``: targets, exclude_targets, skip_steps, variables (prompted values;
        they travel in the request body only), guided_failure, force. Returns ``{deployment_id, release,
        environment, flow_run_id, flow_run_url}``."""
        body = {"project": project, "release": release, "environment": environment, **_options(options)}
        return self._call("POST", "/deployments", json=body)

    def plan(self, project: str, release: str, environment: str, *, check_targets: bool = False,
             **options: Any) -> dict[str, Any]:
        """What ``deploy`` would do, as ``ferry deploy … --plan --json`` prints it; nothing is started."""
        body = {"project": project, "release": release, "environment": environment, **_options(options),
                **({"check_targets": True} if check_targets else {})}
        return self._call("POST", "/deployments/plan", json=body)

    def promote(self, project: str, from_environment: str, to_environment: str, **options: Any) -> dict[str, Any]:
        body = {"from": from_environment, "to": to_environment, **_options(options)}
        return self._call("POST", f"/projects/{_seg(project)}/promote", json=body)

    def rollback(self, project: str, environment: str, **options: Any) -> dict[str, Any]:
        body = {"environment": environment, **_options(options)}
        return self._call("POST", f"/projects/{_seg(project)}/rollback", json=body)

    def list_runbooks(self, project: str) -> list[dict[str, Any]]:
        """As ``ferry runbook list --json``."""
        return self._call("GET", f"/projects/{_seg(project)}/runbooks")

    def run_runbook(self, project: str, runbook: str, environment: str, *, snapshot: int | None = None,
                    targets: list[str] | None = None, exclude_targets: list[str] | None = None,
                    variables: dict[str, str] | None = None, guided_failure: bool | None = None) -> dict[str, Any]:
        """Start a runbook run (its newest published snapshot, or ``snapshot``). Returns ``{deployment_id,
        runbook, snapshot, environment, flow_run_id, flow_run_url}``; follow it like a deployment."""
        body = {"project": project, "runbook": runbook, "environment": environment, "snapshot": snapshot,
                "targets": targets, "exclude_targets": exclude_targets, "variables": variables,
                "guided_failure": guided_failure}
        return self._call("POST", "/runbooks/runs", json={k: v for k, v in body.items() if v not in (None, [], {})})

    def list_deployments(self, project: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if project:
            params["project"] = project
        if limit is not None:
            params["limit"] = limit
        return self._call("GET", "/deployments", params=params or None)["deployments"]

    def show_deployment(self, deployment_id: int) -> dict[str, Any]:
        """As ``ferry deployment show --json``, plus ``finished``."""
        return self._call("GET", f"/deployments/{int(deployment_id)}")

    def log(self, deployment_id: int, after: str | None = None) -> dict[str, Any]:
        """One page of the log after ``after``: ``{lines, next, state, finished, ok}``."""
        params = {"after": after} if after is not None else None
        return self._call("GET", f"/deployments/{int(deployment_id)}/log", params=params)

    def answer(self, deployment_id: int, action: str, notes: str | None = None) -> str:
        body: dict[str, Any] = {"action": action}
        if notes:
            body["notes"] = notes
        return str(self._call("POST", f"/deployments/{int(deployment_id)}/answer", json=body).get("message", ""))

    def cancel(self, deployment_id: int) -> str:
        return str(self._call("POST", f"/deployments/{int(deployment_id)}/cancel").get("message", ""))

    def status(self, project: str) -> dict[str, Any]:
        """As ``ferry status --json``."""
        return self._call("GET", f"/projects/{_seg(project)}/status")

    def audit(self, limit: int | None = None) -> list[dict[str, Any]]:
        params = {"limit": limit} if limit is not None else None
        return self._call("GET", "/audit", params=params)["entries"]

    # -- following a deployment --------------------------------------------------------------------------

    def follow(self, deployment_id: int, on_line: Callable[[LogLine], None], *, poll: float = 0.2,
               timeout: float | None = None, on_state: Callable[[str], None] | None = None,
               after: str | None = None) -> FollowResult:
        """Stream the deployment's log to ``on_line`` until it finishes; returns its final state (the ferry
        record's: Success, Failed, Cancelled). Polls every ``poll`` seconds (the request's own time
        included), so it returns within ``poll`` of the end. With ``timeout``: returns ``finished=False``
        once that many seconds have passed (the deployment goes on). ``on_state`` hears every change of the
        run's state (e.g. ``Paused``: a person must answer)."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        cursor = after
        state = ""
        while True:
            asked = time.monotonic()
            page = self.log(deployment_id, after=cursor)
            lines = page.get("lines") or []
            for line in lines:
                on_line(LogLine(str(line.get("at") or ""), str(line.get("level") or "INFO"), line.get("task"),
                                str(line.get("message") or "")))
            cursor = page.get("next") or cursor
            if page.get("state") and page["state"] != state:
                state = str(page["state"])
                if on_state is not None:
                    on_state(state)
            if page.get("finished"):
                final = str(page.get("record_state") or state)
                return FollowResult(int(deployment_id), final, bool(page.get("ok")), True, cursor)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return FollowResult(int(deployment_id), state, False, False, cursor)
            if len(lines) >= FULL_PAGE:
                continue
            pause = poll - (now - asked)
            if deadline is not None:
                pause = min(pause, deadline - now)
            if pause > 0:
                time.sleep(pause)


def _options(options: dict[str, Any]) -> dict[str, Any]:
    """The deploy options the caller set (empty lists and None are left to the server's defaults)."""
    known = {"targets", "exclude_targets", "skip_steps", "variables", "guided_failure", "force", "channel",
             "override_freeze"}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"unknown deploy options: {', '.join(sorted(unknown))}")
    return {k: v for k, v in options.items() if v is not None and v != [] and v != {}
            and not (k == "override_freeze" and v is False)}


def _seg(value: str) -> str:
    """A path segment: project names may hold spaces and other characters a URL path must escape."""
    from urllib.parse import quote

    return quote(str(value), safe="")


# -- the Prefect API, the same thin way -------------------------------------------------------------------


def prefect_api_url() -> str | None:
    """The Prefect API this process talks to, found without importing Prefect (whose import costs ~1 s):
    Prefect's own settings when something in this process has imported it already (a test, ``ferry serve``),
    else ``PREFECT_API_URL``, else the active profile of ``PREFECT_PROFILES_PATH`` /
    ``$PREFECT_HOME/profiles.toml`` — where ``prefect config set`` writes it."""
    import os
    import sys

    if "prefect.settings" in sys.modules:
        url = sys.modules["prefect.settings"].get_current_settings().api.url
        return str(url) if url else None
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    return _profile_setting("PREFECT_API_URL")


def _profile_setting(name: str) -> str | None:
    import os
    import tomllib

    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active")
    value = (profiles.get("profiles", {}).get(active) or {}).get(name) if isinstance(active, str) else None
    return str(value) if value else None


def prefect_ui_url(api: str | None = None) -> str:
    """Where the Prefect UI is (``PREFECT_UI_URL``, else the API's address without ``/api``), or empty."""
    import os
    import sys

    if "prefect.settings" in sys.modules:
        ui = sys.modules["prefect.settings"].get_current_settings().ui_url
        return str(ui).rstrip("/") if ui else ""
    if os.environ.get("PREFECT_UI_URL"):
        return os.environ["PREFECT_UI_URL"].rstrip("/")
    api = api or prefect_api_url()
    return api.rstrip("/").removesuffix("/api") if api else ""


@dataclass(frozen=True)
class PrefectRun:
    """A flow run as ``ferry deploy --wait`` needs it: id, name, state (type as Prefect spells it, e.g.
    ``COMPLETED``; name as shown, e.g. ``Completed``), and when it ended."""

    id: str
    name: str
    state_type: str
    state_name: str
    state_message: str
    end_time: str | None

    @classmethod
    def of(cls, body: dict[str, Any]) -> PrefectRun:
        state = body.get("state") or {}
        kind = str(state.get("type") or "")
        return cls(str(body["id"]), str(body.get("name") or ""), kind, str(state.get("name") or kind.title()),
                   str(state.get("message") or ""), body.get("end_time"))

    @property
    def final(self) -> bool:
        return self.state_type in {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


class PrefectApi(_Connection):
    """The few Prefect REST calls the CLI makes to start and follow a served deployment's run — plain httpx,
    so ``ferry deploy --wait`` through ``ferry serve`` starts without importing Prefect (~1.1 s of a CLI
    call). Errors: a transport failure is ``PrefectUnreachable``; ``None`` for 404 where the caller asks;
    anything else non-2xx raises ``httpx.HTTPStatusError`` for the caller to word."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        import os

        self.url = url.rstrip("/")
        headers = {"User-Agent": "ferry-client"}
        auth: tuple[str, str] | None = None
        key = os.environ.get("PREFECT_API_KEY") or _profile_setting("PREFECT_API_KEY")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        basic = os.environ.get("PREFECT_API_AUTH_STRING") or _profile_setting("PREFECT_API_AUTH_STRING")
        if basic and ":" in basic:
            user, _, password = basic.partition(":")
            auth = (user, password)
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers, auth=auth,
                                  verify=tls_context())

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise PrefectUnreachable(f"cannot reach the Prefect API at {self.url}: {type(exc).__name__}: "
                                     f"{str(exc) or type(exc).__name__}") from None

    def deployment(self, flow: str, name: str) -> dict[str, Any] | None:
        """``GET /deployments/name/{flow}/{name}``; None when there is none."""
        response = self._send("GET", f"/deployments/name/{_seg(flow)}/{_seg(name)}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    def create_flow_run(self, deployment_id: str, parameters: dict[str, Any], *, at: datetime | None = None,
                        name: str | None = None, tags: list[str] | None = None,
                        enforce_schema: bool = True) -> PrefectRun:
        """``POST /deployments/{id}/create_flow_run``, scheduled now or at ``at``; ``enforce_schema=False``:
        without checking the parameters against the deployment's form (ferry checked them already)."""
        state: dict[str, Any] = {"type": "SCHEDULED", "name": "Scheduled"}
        if at is not None:
            state["state_details"] = {"scheduled_time": at.isoformat()}
        body: dict[str, Any] = {"parameters": parameters, "state": state, "tags": tags or []}
        if not enforce_schema:
            body["enforce_parameter_schema"] = False
        if name:
            body["name"] = name
        response = self._send("POST", f"/deployments/{deployment_id}/create_flow_run", json=body)
        response.raise_for_status()
        return PrefectRun.of(response.json())

    def update_parameter_schema(self, deployment_id: str, schema: dict[str, Any]) -> None:
        """``PATCH /deployments/{id}``: a new ``parameter_openapi_schema`` (the UI form) for a deployment."""
        self._send("PATCH", f"/deployments/{deployment_id}",
                   json={"parameter_openapi_schema": schema}).raise_for_status()

    def task_run_name(self, task_run_id: str) -> str | None:
        """A task run's name (``step · target`` for deploy-release), or None when Prefect does not know it."""
        response = self._send("GET", f"/task_runs/{task_run_id}")
        return str(response.json().get("name") or "") or None if response.status_code == 200 else None

    def flow_run(self, flow_run_id: str) -> PrefectRun:
        response = self._send("GET", f"/flow_runs/{flow_run_id}")
        response.raise_for_status()
        return PrefectRun.of(response.json())

    def logs(self, flow_run_id: str, *, after: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The run's log lines (oldest first) with a timestamp at or after ``after`` (Prefect's ``after_`` is
        inclusive): each ``{id, timestamp, level, message, task_run_id}``."""
        logs: dict[str, Any] = {"flow_run_id": {"any_": [flow_run_id]}}
        if after:
            logs["timestamp"] = {"after_": after}
        response = self._send("POST", "/logs/filter", json={"logs": logs, "sort": "TIMESTAMP_ASC", "limit": limit})
        response.raise_for_status()
        return list(response.json())

    def set_state(self, flow_run_id: str, state_type: str, message: str) -> None:
        """Force the run into ``state_type`` (``CANCELLED``, ``CANCELLING``)."""
        body = {"state": {"type": state_type, "name": state_type.title(), "message": message}, "force": True}
        self._send("POST", f"/flow_runs/{flow_run_id}/set_state", json=body).raise_for_status()
