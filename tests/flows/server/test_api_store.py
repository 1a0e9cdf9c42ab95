"""The ferry server API over real HTTP (uvicorn on loopback, as ``ferry serve`` runs it) on a store on SQLite and
on PostgreSQL, without Prefect: keys, scopes and refusals on record, the package push rules, reading. The
deployment paths that need Prefect are in ``test_server_api.py``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flows.server.app import ApiOptions, ApiServer
from snapshots.store import api_keys
from snapshots.workspace import Workspace


class Api:
    def __init__(self, ctx: Workspace, url: str) -> None:
        self.ctx, self.url = ctx, url

    def key(self, name: str, environments: list[str], actions: tuple[str, ...], projects: tuple[str, ...] = ("Shop",)
            ) -> str:
        with self.ctx.store.begin() as conn:
            return api_keys.create(conn, name, projects=list(projects), environments=environments, actions=actions,
                                   actor="admin")[1]

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=60)


@pytest.fixture
def api(ferry_home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setenv("FERRY_DATABASE_URL", database_url)
    ctx = Workspace()
    server = ApiServer(ApiOptions("127.0.0.1", 0))
    loop = asyncio.new_event_loop()
    task: list[asyncio.Task[None]] = []

    def run() -> None:
        task.append(loop.create_task(server.serve(ctx)))
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task[0])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{server.url}/api/v1/whoami", timeout=2)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    try:
        yield Api(ctx, server.url)
    finally:
        loop.call_soon_threadsafe(task[0].cancel)
        thread.join(10)
        ctx.store.dispose()


def archive(size: int) -> bytes:
    """A real .zip package (the feed opens every archive) holding ``size`` random bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("site/app.bin", os.urandom(size))
    return buffer.getvalue()


def _push(client: httpx.Client, name: str, data: bytes, sha: str | None = None) -> httpx.Response:
    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 1 << 16):
            yield data[i:i + (1 << 16)]

    return client.post("/packages", params={"filename": name}, content=chunks(),
                       headers={"X-Ferry-Sha256": sha or hashlib.sha256(data).hexdigest()})


def test_keys_are_checked_and_refusals_recorded(api: Api) -> None:
    ci = api.key("ci", ["Dev", "Test"], ("push", "deploy"))
    api.key("gone", ["Dev"], ("push",))
    with api.ctx.store.begin() as conn:
        gone = api_keys.revoke(conn, "gone", "admin")
    for key, status in ((None, 401), ("ferry_0000", 401), (ci[:-2] + "xx", 401), (ci, 200)):
        with api.client(key) as client:
            assert client.get("/whoami").status_code == status
    with api.client(ci) as client:
        refused = client.post("/deployments", json={"project": "Shop", "environment": "Prod"})
        other = client.get("/projects/Other/releases")
        release = client.post("/projects/Shop/releases", json={})
        audit = client.get("/audit").json()["entries"]
    assert (refused.status_code, refused.json()) == (403, {"error": "api key 'ci' may not deploy to Prod"})
    assert (other.status_code, other.json()) == (403, {"error": "api key 'ci' has no access to project Other"})
    assert (release.status_code, release.json()) == (403, {"error": "api key 'ci' may not release in Shop"})
    refusals = [(e["actor"], e["subject"], e["detail"]["wanted"]) for e in audit if e["action"] == "refused"]
    assert refusals == [("key:ci", "project/Shop", "release"), ("key:ci", "project/Other", "read"),
                        ("key:ci", "project/Shop/environment/Prod", "deploy")]
    assert gone.state == "revoked"


def test_push_streams_into_the_feed_under_the_push_rules(api: Api) -> None:
    ci = api.key("ci", ["Dev"], ("push",))
    reader = api.key("reader", ["Dev"], ("deploy",))
    feed = api.ctx.settings.feed_dir / "Shop.Web"
    data = archive((5 << 20) + 123)
    with api.client(ci) as client:
        first = _push(client, "Shop.Web.1.0.0.zip", data)
        same = _push(client, "Shop.Web.1.0.0.zip", data)
        changed = _push(client, "Shop.Web.1.0.0.zip", archive(1000))
        wrong_sha = _push(client, "Shop.Web.1.0.1.zip", data, sha="ab" * 32)
        no_sha = client.post("/packages", params={"filename": "Shop.Web.1.0.2.zip"}, content=b"x")
        bad_name = _push(client, "Shop.Web.zip", data)
        listed = client.get("/packages").json()["packages"]
    assert first.status_code == 201, first.text
    assert (first.json()["created"], first.json()["size"]) == (True, len(data))
    assert (same.status_code, same.json()["created"]) == (200, False)
    assert changed.status_code == 409 and "different content" in changed.json()["error"]
    assert wrong_sha.status_code == 400 and "sha256 mismatch" in wrong_sha.json()["error"]
    assert no_sha.status_code == 400 and "X-Ferry-Sha256" in no_sha.json()["error"]
    assert bad_name.status_code == 400 and "no SemVer version" in bad_name.json()["error"]
    assert sorted(p.name for p in feed.iterdir()) == ["Shop.Web.1.0.0.zip"]
    assert (feed / "Shop.Web.1.0.0.zip").read_bytes() == data
    assert [(p["version"], p["pushed_by"]) for p in listed] == [("1.0.0", "key:ci")]
    with api.client(reader) as client:
        assert _push(client, "Shop.Web.2.0.0.zip", data).status_code == 403
    assert sorted(p.name for p in feed.iterdir()) == ["Shop.Web.1.0.0.zip"]


def test_a_dropped_upload_leaves_nothing_behind(api: Api) -> None:
    ci = api.key("ci", ["Dev"], ("push",))
    feed = api.ctx.settings.feed_dir / "Shop.Web"

    def chunks() -> Iterator[bytes]:
        yield os.urandom(3 << 20)
        raise ConnectionAbortedError("the CI runner went away")

    with api.client(ci) as client, pytest.raises(ConnectionAbortedError):
        client.post("/packages", params={"filename": "Shop.Web.3.0.0.zip"}, content=chunks(),
                    headers={"X-Ferry-Sha256": "cd" * 32})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and feed.exists() and any(feed.iterdir()):
        time.sleep(0.1)
    assert not feed.exists() or list(feed.iterdir()) == []
    with api.client(ci) as client:
        assert client.get("/packages").json()["packages"] == []


def test_unknown_routes_and_records_are_one_line_json(api: Api) -> None:
    ci = api.key("ci", ["*"], ("deploy",), projects=("*",))
    with api.client(ci) as client:
        assert client.get("/nowhere").json() == {"error": "Not Found"}
        missing = client.get("/deployments/42")
        unknown = client.post("/deployments", json={"project": "Nope", "environment": "Dev"})
        invalid = client.post("/deployments", json={"project": "Nope", "environment": "Dev", "colour": "red"})
    assert (missing.status_code, missing.json()) == (404, {"error": "no deployment 42"})
    assert unknown.status_code == 404 and "Nope" in unknown.json()["error"]
    assert invalid.status_code == 422 and "colour" in invalid.json()["error"]
