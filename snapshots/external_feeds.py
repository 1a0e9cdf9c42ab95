"""External package feeds: find a package's versions, download one into the worker cache, and check it against
the sha256 a release pinned (issue 15 item 5).

``release create`` resolves the version in the feed (explicit, the newest the channel's rules allow, or the newest
stable), downloads it once into ``FERRY_HOME/cache/feeds/<feed>/<Id>/`` and pins its sha256. Every deployment then
uses those bytes: from the cache when they are there and still hash to the pin, downloaded again when the cache
lost them, refused in one line when the bytes differ (the feed changed a published version, or the cache was
tampered with). Messages name the feed and the package, never a credential.

Transports: httpx for NuGet v3 (service index → PackageBaseAddress flat container) and plain HTTP directories,
boto3 for S3-compatible buckets.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from snapshots.errors import ConfigError, FeedError, SnapshotIntegrityError
from snapshots.feed_credentials import reveal
from snapshots.model.feeds import HttpFeed, NugetFeed, S3Feed
from snapshots.store.crypto import Vault
from snapshots.store.feed import EXTENSIONS, Package, parse_filename
from snapshots.tls import tls_context
from snapshots.versions import is_version, latest, sort_key

CHUNK = 1 << 20
AnyFeed = NugetFeed | HttpFeed | S3Feed


@dataclass(frozen=True)
class ExternalPackage(Package):
    """A package pinned from an external feed (``feed`` names it in the release)."""

    feed: str = ""


class _Client:
    """One feed: list versions of a package, stream one file."""

    def __init__(self, feed: AnyFeed, vault: Vault | None = None) -> None:
        self.feed, self.vault = feed, vault

    def secret(self, credential: Any) -> str | None:
        return reveal(credential, self.vault, self.where())

    def where(self) -> str:
        return f"feed {self.feed.name!r}"

    def versions(self, package_id: str) -> dict[str, str]:
        """version → file name, for every version the feed holds (empty: no such package)."""
        raise NotImplementedError

    def stream(self, package_id: str, version: str, filename: str) -> Iterator[bytes]:
        raise NotImplementedError


class _HttpBase(_Client):
    feed: NugetFeed | HttpFeed

    def client(self) -> httpx.Client:
        auth = None
        if self.feed.username:
            auth = httpx.BasicAuth(self.feed.username, self.secret(self.feed.password) or "")
        return httpx.Client(auth=auth, timeout=self.feed.timeout, follow_redirects=True, verify=tls_context())

    def fail(self, url: str, exc: Exception | None = None, response: httpx.Response | None = None) -> FeedError:
        shown = _safe_url(url)
        if response is not None:
            if response.status_code in (401, 403):
                return FeedError(f"{self.where()} refused the credentials ({response.status_code} from {shown})")
            return FeedError(f"{self.where()}: {shown} answered {response.status_code}")
        return FeedError(f"{self.where()} is unreachable ({shown}: {_reason(exc)})")

    def get(self, http: httpx.Client, url: str, *, missing_ok: bool = False) -> httpx.Response | None:
        try:
            response = http.get(url)
        except httpx.HTTPError as exc:
            raise self.fail(url, exc) from None
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self.fail(url, response=response)
        return response

    def stream_url(self, url: str) -> Iterator[bytes]:
        with self.client() as http:
            try:
                with http.stream("GET", url) as response:
                    if response.status_code != 200:
                        raise self.fail(url, response=response)
                    yield from response.iter_bytes(CHUNK)
            except httpx.HTTPError as exc:
                raise self.fail(url, exc) from None


class _Nuget(_HttpBase):
    feed: NugetFeed

    def base(self, http: httpx.Client) -> str:
        response = self.get(http, self.feed.url)
        assert response is not None
        try:
            resources = response.json()["resources"]
            base = next(r["@id"] for r in resources if str(r.get("@type", "")).startswith("PackageBaseAddress/3"))
        except (ValueError, KeyError, TypeError, StopIteration):
            raise FeedError(f"{self.where()}: {_safe_url(self.feed.url)} is not a NuGet v3 service index with a "
                            "PackageBaseAddress/3.0.0 resource") from None
        return str(base).rstrip("/")

    def versions(self, package_id: str) -> dict[str, str]:
        with self.client() as http:
            base = self.base(http)
            response = self.get(http, f"{base}/{package_id.lower()}/index.json", missing_ok=True)
            if response is None:
                return {}
            try:
                listed = [str(v) for v in response.json()["versions"]]
            except (ValueError, KeyError, TypeError):
                raise FeedError(f"{self.where()}: the version list of {package_id} is not NuGet's "
                                "{\"versions\": [...]}") from None
        return {v: f"{package_id}.{v}.nupkg" for v in listed if is_version(v)}

    def stream(self, package_id: str, version: str, filename: str) -> Iterator[bytes]:
        with self.client() as http:
            base = self.base(http)
        low, ver = package_id.lower(), version.lower()
        yield from self.stream_url(f"{base}/{low}/{ver}/{low}.{ver}.nupkg")


_HREF = re.compile(r"""href\s*=\s*["']([^"']+)["']""", re.I)


class _HttpDir(_HttpBase):
    feed: HttpFeed

    def versions(self, package_id: str) -> dict[str, str]:
        with self.client() as http:
            response = self.get(http, self.feed.url + "/")
            assert response is not None
        found: dict[str, str] = {}
        for href in _HREF.findall(response.text):
            name = unquote(urlsplit(html.unescape(href)).path.rstrip("/").rsplit("/", 1)[-1])
            if not name.lower().endswith(EXTENSIONS):
                continue
            try:
                parsed = parse_filename(name)
            except ConfigError:  # a listing may hold other files
                continue
            if parsed.package_id.lower() == package_id.lower():
                found[parsed.version] = name
        return found

    def stream(self, package_id: str, version: str, filename: str) -> Iterator[bytes]:
        yield from self.stream_url(urljoin(self.feed.url + "/", filename))


class _S3(_Client):
    feed: S3Feed

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.feed.endpoint_url, region_name=self.feed.region or "us-east-1",
            aws_access_key_id=self.secret(self.feed.access_key_id),
            aws_secret_access_key=self.secret(self.feed.secret_access_key),
            config=Config(connect_timeout=self.feed.timeout, read_timeout=self.feed.timeout,
                          retries={"max_attempts": 1}))

    def fail(self, exc: Exception) -> FeedError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "ExpiredToken"):
                return FeedError(f"{self.where()} refused the credentials ({code}) for bucket {self.feed.bucket!r}")
            if code in ("NoSuchBucket", "404"):
                return FeedError(f"{self.where()}: bucket {self.feed.bucket!r} does not exist")
            return FeedError(f"{self.where()}: S3 answered {code or 'an error'} for bucket {self.feed.bucket!r}")
        return FeedError(f"{self.where()} is unreachable ({_safe_url(self.feed.endpoint_url or 'AWS S3')}: "
                         f"{_reason(exc)})")

    def versions(self, package_id: str) -> dict[str, str]:
        from botocore.exceptions import BotoCoreError, ClientError

        found: dict[str, str] = {}
        try:
            pages = self.client().get_paginator("list_objects_v2").paginate(
                Bucket=self.feed.bucket, Prefix=self.feed.prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    name = str(item["Key"])[len(self.feed.prefix):]
                    if "/" in name or not name.lower().endswith(EXTENSIONS):
                        continue
                    try:
                        parsed = parse_filename(name)
                    except ConfigError:  # other objects may share the prefix
                        continue
                    if parsed.package_id.lower() == package_id.lower():
                        found[parsed.version] = name
        except (BotoCoreError, ClientError) as exc:
            raise self.fail(exc) from None
        return found

    def stream(self, package_id: str, version: str, filename: str) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client().get_object(Bucket=self.feed.bucket, Key=self.feed.prefix + filename)["Body"]
            while chunk := body.read(CHUNK):
                yield chunk
        except (BotoCoreError, ClientError) as exc:
            raise self.fail(exc) from None


def _safe_url(url: str) -> str:
    """A URL for a message: no user info, no query string (either may carry a credential)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else url


def _reason(exc: Exception | None) -> str:
    text = " ".join(str(exc).split()) if exc else ""
    if "refused" in text.lower():
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return (text or type(exc).__name__)[:160]


def client_for(feed: AnyFeed, vault: Vault | None = None) -> _Client:
    if isinstance(feed, NugetFeed):
        return _Nuget(feed, vault)
    if isinstance(feed, HttpFeed):
        return _HttpDir(feed, vault)
    return _S3(feed, vault)


class ExternalFeeds:
    """The infrastructure's feeds plus the worker cache they download into."""

    def __init__(self, feeds: list[AnyFeed], cache: Path, vault: Vault | None = None) -> None:
        self.feeds = {f.name: f for f in feeds}
        self.cache, self.vault = cache, vault

    def get(self, name: str) -> AnyFeed:
        if name not in self.feeds:
            raise FeedError(f"no feed named {name!r} in the infrastructure (feeds: "
                            f"{', '.join(sorted(self.feeds)) or 'none'})")
        return self.feeds[name]

    def path_of(self, feed: str, package_id: str, filename: str) -> Path:
        return self.cache / feed / package_id / filename

    def versions(self, feed: str, package_id: str) -> dict[str, str]:
        return client_for(self.get(feed), self.vault).versions(package_id)

    def resolve(self, feed: str, package_id: str, version: str | None,
                pick: Callable[[list[str]], str | None] | None = None) -> ExternalPackage:
        """Find the version (explicit; else ``pick`` over the feed's versions, e.g. the channel's rules; else the
        newest stable), download it into the cache and return it with its sha256."""
        have = self.versions(feed, package_id)
        if not have:
            raise FeedError(f"feed {feed!r} has no package {package_id}")
        if version is None and pick is not None:
            version = pick(sorted(have, key=sort_key))
        if version is None:
            version = latest(have, stable_only=True) or latest(have)
        if version is None or version not in have:
            match = next((v for v in have if version is not None and sort_key(v).compare(version) == 0), None)
            if match is None:
                shown = ", ".join(sorted(have, key=sort_key)[-10:])
                raise FeedError(f"feed {feed!r} has no version {version} of {package_id} (newest: {shown})")
            version = match
        filename = have[version]
        sha, size = self._download(feed, package_id, version, filename)
        return ExternalPackage(package_id, version, filename, size, sha, "", f"feed:{feed}", feed)

    def _download(self, feed: str, package_id: str, version: str, filename: str) -> tuple[str, int]:
        dest = self.path_of(feed, package_id, filename)
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(prefix=".download-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in client_for(self.get(feed), self.vault).stream(package_id, version, filename):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return digest.hexdigest(), size

    def ensure(self, feed: str, package_id: str, version: str, filename: str, sha256: str) -> Path:
        """The pinned bytes on this worker: the cached file if it hashes to the pin, else downloaded again and
        checked; refused in one line when the bytes differ from the pin."""
        dest = self.path_of(feed, package_id, filename)
        if dest.is_file():
            actual = _sha256(dest)
            if actual == sha256:
                return dest
            raise SnapshotIntegrityError(
                f"package {package_id} {version} (feed {feed!r}): the cached file has sha256 {actual[:16]}…, the "
                f"release pinned {sha256[:16]}…: refusing to deploy it")
        actual, _ = self._download(feed, package_id, version, filename)
        if actual != sha256:
            dest.unlink(missing_ok=True)
            raise SnapshotIntegrityError(
                f"package {package_id} {version}: feed {feed!r} now serves bytes with sha256 {actual[:16]}…, the "
                f"release pinned {sha256[:16]}…: refusing to deploy it")
        return dest


def _sha256(path: Path) -> str:
    from snapshots.digests import sha256_file

    return sha256_file(path)
