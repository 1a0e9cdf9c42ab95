"""``FerryClient`` against a small real HTTP server that speaks the API contract of ISSUE12-DESIGN.md (the
ferry server's own tests cover the server; these cover what the client does with what it hears): status
codes become the errors a person reads, a package is streamed from disk with its sha256, ``follow`` returns
within one poll of the end, and importing the client loads neither Prefect nor the store."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from flows.client import FerryClient, LogLine
from snapshots.errors import (
    AccessDenied,
    ConfigError,
    ConflictError,
    FerryError,
    NotFoundError,
    ServerUnreachable,
)

KEY = "ferry_0123abcd_" + "s" * 43


class Api(ThreadingHTTPServer):
    """The fake's state: what it received, and the deployment whose log it serves."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.received: list[dict[str, Any]] = []
        self.pushed: dict[str, Any] = {}
        self.finish_at: float = 0.0
        self.log_requests: list[float] = []
        self.refuse_push_early = False
        self.outcome = "Success"
        self.run_for: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Api
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict[str, Any], close: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        if close:
            self.close_connection = True

    def _auth(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if header != f"Bearer {KEY}":
            self._send(401, {"error": "unknown api key"})
            return None
        return "ci"

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if not self._auth():
            return
        self.server.received.append({"method": "GET", "path": url.path, "query": query})
        if url.path == "/api/v1/whoami":
            self._send(200, {"name": "ci", "projects": ["*"], "environments": ["Dev"], "actions": ["deploy"],
                             "expires_at": None})
        elif url.path == "/api/v1/deployments/7/log":
            self._log(query.get("after"))
        elif url.path == "/api/v1/deployments/7":
            finished = time.monotonic() >= self.server.finish_at
            self._send(200, {"id": 7, "project": "OctoFX", "version": "1.0.0", "environment": "Dev",
                             "state": self.server.outcome if finished else "Running",
                             "error": None if self.server.outcome == "Success" else "Install · web-01: exit code 3",
                             "created_at": "2026-11-28T19:00:00", "created_by": "key:ci", "started_at": None,
                             "finished_at": None, "results": [], "finished": finished})
        elif url.path == "/api/v1/deployments/404":
            self._send(404, {"error": "deployment #404 not found"})
        elif url.path == "/api/v1/deployments":
            self._send(200, {"deployments": [{"id": 7, "project": query.get("project"), "state": "Success"}]})
        elif url.path == "/api/v1/projects/Octo%20FX/status":
            self._send(200, {"environments": ["Dev"], "current": {}, "latest": {}, "releases": []})
        elif url.path == "/api/v1/boom":
            self._send(500, {"error": "database is down"})
        else:
            self._send(404, {"error": f"no route {url.path}"})

    def _log(self, after: str | None) -> None:
        """Lines 0..9 appear over time; the deployment pauses, then finishes at ``finish_at``."""
        self.server.log_requests.append(time.monotonic())
        now = time.monotonic()
        if self.server.run_for is not None:  # the deployment "starts" when the first follower asks
            self.server.finish_at, self.server.run_for = now + self.server.run_for, None
        start = int(after or 0)
        finished = now >= self.server.finish_at
        available = 10 if finished else min(9, int((self.server.finish_at - now < 1.0) * 9) + 1)
        lines = [{"at": f"2026-11-28T19:00:0{i}Z", "level": "INFO", "task": f"Install · web-0{i}",
                  "message": f"line {i}"} for i in range(start, available)]
        outcome = self.server.outcome
        state = ("Completed" if outcome == "Success" else outcome) if finished else \
            "Paused" if self.server.finish_at - now < 1.0 else "Running"
        self._send(200, {"lines": lines, "next": str(max(start, available)), "state": state,
                         "record_state": outcome if finished else "Running", "finished": finished,
                         "ok": finished and outcome == "Success"})

    def do_POST(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/api/v1/packages" and self.server.refuse_push_early:
            self._send(403, {"error": "api key 'ci' may not push packages"}, close=True)  # body never read
            return
        if not self._auth():
            return
        if url.path == "/api/v1/packages":
            self._push(query)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.received.append({"method": "POST", "path": url.path, "body": body})
        if url.path == "/api/v1/deployments":
            if body["environment"] == "Production":
                self._send(403, {"error": "api key 'ci' may not deploy to Production"})
            elif "release" not in body:
                self._send(422, {"detail": [{"loc": ["body", "release"], "msg": "Field required"}]})
            else:
                self._send(201, {"deployment_id": 7, "release": "1.0.0", "environment": body["environment"],
                                 "flow_run_id": "abc", "flow_run_url": ""})
        elif url.path == "/api/v1/deployments/7/cancel":
            self.server.outcome, self.server.finish_at = "Cancelled", time.monotonic()
            self._send(200, {"message": "deployment #7: cancel requested (cancelled by key:ci)"})
        elif url.path.endswith("/releases"):
            self._send(409, {"error": "release OctoFX 1.0.0 already exists"})
        else:
            self._send(404, {"error": "no such route"})

    def _push(self, query: dict[str, str]) -> None:
        digest = hashlib.sha256()
        length = int(self.headers["Content-Length"])
        remaining, reads = length, 0
        while remaining:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
            reads += 1
        self.server.pushed = {"filename": query.get("filename"), "length": length, "reads": reads,
                              "sha": digest.hexdigest(), "claimed": self.headers.get("X-Ferry-Sha256"),
                              "chunked": self.headers.get("Transfer-Encoding")}
        if digest.hexdigest() != self.headers.get("X-Ferry-Sha256"):
            self._send(400, {"error": "sha256 mismatch"})
            return
        self._send(201, {"package_id": "OctoFX.Web", "version": "1.0.0", "sha256": digest.hexdigest(),
                         "size": length, "created": True, "releases": []})


@contextmanager
def serve_api() -> Iterator[Api]:
    """The fake API on a free loopback port, in a thread, for the length of the block."""
    server = Api()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def api() -> Iterator[Api]:
    with serve_api() as server:
        yield server


@pytest.fixture
def client(api: Api) -> Iterator[FerryClient]:
    with FerryClient(api.url + "/", KEY, timeout=5) as c:
        yield c


def test_status_codes_become_the_errors_a_person_reads(api: Api, client: FerryClient) -> None:
    with pytest.raises(AccessDenied, match=r"^api key 'ci' may not deploy to Production$") as refused:
        client.deploy("OctoFX", "latest", "Production")
    assert refused.value.exit_code == 3
    with pytest.raises(AccessDenied, match="unknown api key"):
        FerryClient(api.url, "ferry_0123abcd_wrong", timeout=5).whoami()
    with pytest.raises(NotFoundError, match=r"^deployment #404 not found$"):
        client.show_deployment(404)
    with pytest.raises(ConflictError, match="already exists"):
        client.create_release("OctoFX", version="1.0.0")
    with pytest.raises(ConfigError, match=r"^release: Field required$"):
        client._call("POST", "/deployments", json={"project": "OctoFX", "environment": "Dev"})
    with pytest.raises(FerryError, match="answered 500: database is down"):
        client._call("GET", "/boom")


def test_requests_carry_what_the_contract_says(api: Api, client: FerryClient) -> None:
    started = client.deploy("OctoFX", "latest", "Dev", targets=["web-01"], exclude_targets=[],
                            variables={"Db.Password": "pw"}, guided_failure=None, force=True)
    assert started["deployment_id"] == 7
    assert api.received[-1] == {"method": "POST", "path": "/api/v1/deployments",
                                "body": {"project": "OctoFX", "release": "latest", "environment": "Dev",
                                         "targets": ["web-01"], "variables": {"Db.Password": "pw"},
                                         "force": True}}
    assert client.list_deployments("OctoFX", limit=5) == [{"id": 7, "project": "OctoFX", "state": "Success"}]
    assert api.received[-1]["query"] == {"project": "OctoFX", "limit": "5"}
    assert client.status("Octo FX")["environments"] == ["Dev"]  # a project name with a space, escaped once


def test_an_unreachable_server_is_one_line_naming_it() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(ServerUnreachable) as exc:
        FerryClient(f"http://127.0.0.1:{port}", KEY, timeout=2).whoami()
    assert str(exc.value) == f"cannot reach the ferry server at http://127.0.0.1:{port}: connection refused"
    assert KEY not in str(exc.value)


def test_a_package_is_streamed_from_disk_with_its_sha256(api: Api, client: FerryClient, tmp_path: Path) -> None:
    package = tmp_path / "OctoFX.Web.1.0.0.tar.gz"
    with open(package, "wb") as f:
        for _ in range(40):
            f.write(os.urandom(1 << 20))
    expected = hashlib.sha256(package.read_bytes()).hexdigest()
    tracemalloc.start()
    try:
        pushed = client.push_package(package)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pushed["sha256"] == expected and pushed["created"] is True
    assert api.pushed["claimed"] == api.pushed["sha"] == expected
    assert api.pushed["length"] == 40 << 20 and api.pushed["chunked"] is None  # Content-Length, not chunked
    assert api.pushed["filename"] == "OctoFX.Web.1.0.0.tar.gz"
    assert peak < 8 << 20, f"the 40 MiB file was held in memory (peak {peak / 2**20:.1f} MiB)"


def test_a_push_the_server_refuses_before_reading_is_reported_as_refused(api: Api, client: FerryClient,
                                                                           tmp_path: Path) -> None:
    """A server that answers 403 without reading the body closes the connection under the sender; the
    client asks who it is and reports the refusal, not a broken pipe."""
    package = tmp_path / "OctoFX.Web.1.0.0.tar.gz"
    package.write_bytes(os.urandom(8 << 20))
    api.refuse_push_early = True
    with pytest.raises(AccessDenied, match=r"^api key 'ci' may not push packages$"):
        client.push_package(package)


def test_a_missing_package_file_is_a_config_error(client: FerryClient, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        client.push_package(tmp_path / "nope.tar.gz")


def test_follow_streams_every_line_and_returns_within_a_poll_of_the_end(api: Api, client: FerryClient) -> None:
    api.finish_at = time.monotonic() + 2.0
    lines: list[LogLine] = []
    states: list[str] = []
    result = client.follow(7, lines.append, on_state=states.append)
    returned = time.monotonic()
    assert (result.state, result.ok, result.finished) == ("Success", True, True)
    assert [line.message for line in lines] == [f"line {i}" for i in range(10)]  # each once, in order
    assert lines[0].text().endswith(" | INFO    | Install · web-00 | line 0")
    assert states == ["Running", "Paused", "Completed"]
    assert returned - api.finish_at < 0.2 + 0.1, "follow must return within one 0.2 s poll of the end"
    gaps = [b - a for a, b in zip(api.log_requests, api.log_requests[1:], strict=False)]
    assert all(g > 0.12 for g in gaps), f"polled too often: {gaps}"
    assert len(api.log_requests) <= 2.5 / 0.2 + 2


def test_follow_gives_up_at_its_timeout(api: Api, client: FerryClient) -> None:
    api.finish_at = time.monotonic() + 30
    started = time.monotonic()
    result = client.follow(7, lambda _line: None, timeout=0.7)
    assert not result.finished and result.state == "Running"
    assert 0.7 <= time.monotonic() - started < 1.0


def test_importing_the_client_loads_neither_prefect_nor_the_store() -> None:
    probe = ("import sys, flows.client; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'sqlalchemy', 'cryptography'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "[]"
