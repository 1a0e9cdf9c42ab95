"""External feeds against real servers on loopback (tests/servers/package_feeds.py): a NuGet v3 flat container
and a plain HTTP directory from python's http.server, and moto's S3 server with authentication on. Resolve the
latest and an explicit version, refuse a missing one, a wrong credential (never shown) and an unreachable feed in
one line; the cache is used, refilled when lost, and bytes that differ from the pin are refused."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text

from snapshots import releases
from snapshots.errors import FeedError, SnapshotIntegrityError
from snapshots.external_feeds import ExternalFeeds
from snapshots.model.feeds import HttpFeed, NugetFeed, S3Feed
from snapshots.projects import apply
from snapshots.store import Store
from snapshots.store.crypto import Vault
from snapshots.store.feed import Feed
from tests.sample import Sample
from tests.servers.package_feeds import PASSWORD, USER, S3Server, StaticFeeds, nupkg, s3_server, static_feeds

VERSIONS = ["1.0.0", "1.1.0", "1.2.0-beta.1"]


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticFeeds]:
    with static_feeds(tmp_path_factory.mktemp("feeds")) as feeds:
        feeds.publish_nuget("OctoFX.Web", VERSIONS)
        feeds.publish_nuget("OctoFX.Web", VERSIONS, private=True)
        feeds.publish_files(["OctoFX.Web.1.0.0.zip", "OctoFX.Web.1.3.0.tar.gz", "OctoFX.Web.2.0.0-rc.1.zip",
                             "Other.Thing.9.0.0.zip", "notes.txt"])
        yield feeds


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        client = server.client()
        client.create_bucket(Bucket="packages")
        for version in ("3.0.0", "3.1.0", "4.0.0-alpha"):
            client.put_object(Bucket="packages", Key=f"builds/OctoFX.Web.{version}.nupkg",
                              Body=nupkg("OctoFX.Web", version))
        client.put_object(Bucket="packages", Key="builds/readme.txt", Body=b"x")
        yield server


def feeds(tmp_path: Path, *specs: Any) -> ExternalFeeds:
    return ExternalFeeds(list(specs), tmp_path / "cache")


def nuget(web: StaticFeeds, **extra: Any) -> NugetFeed:
    return NugetFeed.model_validate({"name": "nuget-main", "kind": "nuget", "url": web.nuget_url(), **extra})


def test_nuget_resolves_latest_stable_and_explicit_version_into_the_cache(web: StaticFeeds, tmp_path: Path) -> None:
    found = feeds(tmp_path, nuget(web))
    latest = found.resolve("nuget-main", "OctoFX.Web", None)
    assert (latest.version, latest.filename, latest.feed) == ("1.1.0", "OctoFX.Web.1.1.0.nupkg", "nuget-main")
    cached = found.path_of("nuget-main", "OctoFX.Web", latest.filename)
    assert latest.sha256 == hashlib.sha256(cached.read_bytes()).hexdigest()
    assert cached.read_bytes() == web.nupkg_path("OctoFX.Web", "1.1.0").read_bytes()
    assert found.resolve("nuget-main", "OctoFX.Web", "1.2.0-beta.1").version == "1.2.0-beta.1"
    assert found.resolve("nuget-main", "OctoFX.Web", None, lambda have: have[0]).version == "1.0.0"  # channel pick


@pytest.mark.parametrize(("package_id", "version", "message"), [
    ("OctoFX.Web", "9.9.9", "feed 'nuget-main' has no version 9.9.9 of OctoFX.Web (newest: 1.0.0, 1.1.0, "
                            "1.2.0-beta.1)"),
    ("Nope", None, "feed 'nuget-main' has no package Nope"),
])
def test_nuget_missing_package_or_version_is_one_line(web: StaticFeeds, tmp_path: Path, package_id: str,
                                                      version: str | None, message: str) -> None:
    with pytest.raises(FeedError) as caught:
        feeds(tmp_path, nuget(web)).resolve("nuget-main", package_id, version)
    assert str(caught.value) == message


def test_nuget_credentials_used_and_a_wrong_one_refused_without_showing_it(
        web: StaticFeeds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = nuget(web, url=web.nuget_url(private=True), username=USER, password={"from_env": "FEED_PW"})
    monkeypatch.setenv("FEED_PW", PASSWORD)
    assert feeds(tmp_path, spec).resolve("nuget-main", "OctoFX.Web", "1.0.0").version == "1.0.0"
    monkeypatch.setenv("FEED_PW", "wrong-" + PASSWORD)
    with pytest.raises(FeedError) as caught:
        feeds(tmp_path, spec).resolve("nuget-main", "OctoFX.Web", None)
    assert str(caught.value) == (f"feed 'nuget-main' refused the credentials (401 from "
                                 f"{web.base}/private/v3/index.json)")
    assert PASSWORD not in str(caught.value)


def test_unreachable_feed_is_one_line(tmp_path: Path) -> None:
    spec = NugetFeed(name="gone", kind="nuget", url="http://127.0.0.1:9/v3/index.json", timeout=5)
    with pytest.raises(FeedError) as caught:
        feeds(tmp_path, spec).resolve("gone", "OctoFX.Web", None)
    assert str(caught.value) == "feed 'gone' is unreachable (http://127.0.0.1:9/v3/index.json: connection refused)"


def test_http_directory_feed_reads_its_listing(web: StaticFeeds, tmp_path: Path) -> None:
    spec = HttpFeed(name="drops", kind="http", url=f"{web.base}/files/")
    found = feeds(tmp_path, spec)
    assert sorted(found.versions("drops", "OctoFX.Web")) == ["1.0.0", "1.3.0", "2.0.0-rc.1"]
    latest = found.resolve("drops", "OctoFX.Web", None)
    assert (latest.version, latest.filename) == ("1.3.0", "OctoFX.Web.1.3.0.tar.gz")
    assert found.resolve("drops", "OctoFX.Web", "2.0.0-rc.1").filename == "OctoFX.Web.2.0.0-rc.1.zip"


def s3_feed(server: S3Server, **extra: Any) -> S3Feed:
    return S3Feed.model_validate({"name": "bucket", "kind": "s3", "bucket": "packages", "prefix": "builds/",
                                  "endpoint_url": server.endpoint, "region": "us-east-1",
                                  "access_key_id": {"from_env": "S3_KEY"},
                                  "secret_access_key": {"from_env": "S3_SECRET"}, **extra})


def test_s3_feed_resolves_and_refuses_a_wrong_key(s3: S3Server, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_KEY", s3.access_key)
    monkeypatch.setenv("S3_SECRET", s3.secret_key)
    found = feeds(tmp_path, s3_feed(s3))
    latest = found.resolve("bucket", "OctoFX.Web", None)
    assert (latest.version, latest.filename) == ("3.1.0", "OctoFX.Web.3.1.0.nupkg")
    assert latest.sha256 == hashlib.sha256(nupkg("OctoFX.Web", "3.1.0")).hexdigest()
    monkeypatch.setenv("S3_SECRET", "not-the-secret")
    with pytest.raises(FeedError) as caught:
        feeds(tmp_path, s3_feed(s3)).resolve("bucket", "OctoFX.Web", None)
    assert str(caught.value) == "feed 'bucket' refused the credentials (SignatureDoesNotMatch) for bucket 'packages'"
    assert s3.secret_key not in str(caught.value)


def test_ensure_uses_the_cache_refills_it_and_refuses_other_bytes(web: StaticFeeds, tmp_path: Path) -> None:
    found = feeds(tmp_path, nuget(web))
    pinned = found.resolve("nuget-main", "OctoFX.Web", "1.0.0")
    args = ("nuget-main", "OctoFX.Web", "1.0.0", pinned.filename, pinned.sha256)
    cached = found.ensure(*args)
    cached.unlink()  # the worker lost its cache: downloaded again, same bytes
    assert found.ensure(*args).read_bytes() == web.nupkg_path("OctoFX.Web", "1.0.0").read_bytes()
    cached.write_bytes(b"tampered")
    with pytest.raises(SnapshotIntegrityError, match=r"^package OctoFX.Web 1.0.0 \(feed 'nuget-main'\): the cached "
                                                     r"file has sha256 [0-9a-f]{16}…, the release pinned"):
        found.ensure(*args)


VAULT = Vault(b"f" * 32)


def test_release_pins_the_feed_and_deploys_refuse_bytes_changed_after(
        web: StaticFeeds, sample: Sample, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.engine.plan import release_plan

    web.publish_nuget("OctoFX.Web", [*VERSIONS, "1.4.0"])
    web.publish_nuget("OctoFX.Web", [*VERSIONS, "1.4.0"], private=True)
    infra = yaml.safe_load(sample.infrastructure.read_text())
    infra["feeds"] = [{"name": "nuget-main", "kind": "nuget", "url": web.nuget_url(private=True), "username": USER,
                       "password": {"from_env": "FEED_PW"}}]
    sample.infrastructure.write_text(yaml.safe_dump(infra, sort_keys=False))
    sample.edit_project(lambda d: d.update(packages=[{"id": "OctoFX.Web", "feed": "nuget-main"}]))
    store, feed = Store(database_url), Feed(tmp_path / "feed")
    monkeypatch.setenv("FEED_PW", PASSWORD)
    try:
        with store.begin() as conn:
            [applied, _] = apply(conn, [sample.infrastructure, sample.project], VAULT, "tester")
            again = apply(conn, [sample.infrastructure], VAULT, "tester")
            stored = conn.execute(text("select document from infrastructure_revisions")).scalars().all()
        assert applied.changed and not again[0].changed  # the same YAML again: no change, ciphertexts aside
        assert len(stored) == 1 and PASSWORD not in stored[0] and '"ciphertext"' in stored[0]
        monkeypatch.delenv("FEED_PW")  # the executor uses the stored, encrypted credential from now on
        with store.begin() as conn:
            release, _ = releases.create(conn, feed, "OctoFX", "tester", vault=VAULT)
        [pin] = release.packages
        assert (pin["version"], pin["feed"]) == ("1.4.0", "nuget-main")
        assert pin["sha256"] == hashlib.sha256(web.nupkg_path("OctoFX.Web", "1.4.0").read_bytes()).hexdigest()
        with store.begin() as conn:
            plan = release_plan(conn, feed, VAULT, release, "Development", {})
        cached = plan.packages["OctoFX.Web"].path
        assert cached.read_bytes() == web.nupkg_path("OctoFX.Web", "1.4.0").read_bytes()
        # the feed re-publishes 1.4.0 with other bytes and this worker's cache is gone: refused
        (web.root / "private" / web.nupkg_path("OctoFX.Web", "1.4.0").relative_to(web.root)).write_bytes(
            nupkg("OctoFX.Web", "1.4.0-evil"))
        cached.unlink()
        with store.begin() as conn, pytest.raises(SnapshotIntegrityError) as caught:
            release_plan(conn, feed, VAULT, release, "Development", {})
        assert str(caught.value).startswith("package OctoFX.Web 1.4.0: feed 'nuget-main' now serves bytes with sha256 ")
        assert str(caught.value).endswith(": refusing to deploy it")
        assert not cached.exists()
    finally:
        store.dispose()


def test_a_channel_rule_picks_among_the_external_feeds_versions(web: StaticFeeds, tmp_path: Path) -> None:
    from snapshots.errors import ChannelRuleError
    from snapshots.model.channels import Channel
    from snapshots.releases import _external_pick

    found = feeds(tmp_path, nuget(web))
    beta = Channel.model_validate({"name": "Beta", "rules": [{"tag": "^beta"}]})
    picked = found.resolve("nuget-main", "OctoFX.Web", None, _external_pick(beta, "OctoFX.Web", "nuget-main"))
    assert picked.version == "1.2.0-beta.1"
    old = Channel.model_validate({"name": "Old", "rules": [{"version_range": "[9.0,10.0)"}]})
    with pytest.raises(ChannelRuleError, match=r"^no version of package OctoFX.Web in feed 'nuget-main' satisfies "
                                               r"channel 'Old' \(version_range \[9.0,10.0\); have: 1.0.0, 1.1.0, "):
        found.resolve("nuget-main", "OctoFX.Web", None, _external_pick(old, "OctoFX.Web", "nuget-main"))
