"""Where a release's external packages come from: the glue between releases, the infrastructure's ``feeds:`` and
the worker cache (``snapshots.external_feeds``). A release records ``feed: NAME`` beside an external package's
id, version and sha256; the feed's URL and credentials are read from the current infrastructure when needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from snapshots.digests import sha256_file
from snapshots.errors import SnapshotIntegrityError
from snapshots.external_feeds import ExternalFeeds, ExternalPackage
from snapshots.projects import latest_infrastructure
from snapshots.store.crypto import Vault
from snapshots.store.feed import Feed, Package


def cache_dir(feed: Feed) -> Path:
    """The worker cache: beside the built-in feed's folders (a package id never starts with a dot)."""
    return feed.root / ".external"


def external_feeds(conn: Connection, feed: Feed, vault: Vault) -> ExternalFeeds:
    found = latest_infrastructure(conn)
    return ExternalFeeds(list(found[1].feeds) if found else [], cache_dir(feed), vault)


def package_feeds(document: dict[str, Any]) -> dict[str, str]:
    """Package id → external feed name, from a stored project document (older documents have none)."""
    return dict(document.get("package_feeds") or {})


def pin(conn: Connection, feed: Feed, vault: Vault, feed_name: str, package_id: str, version: str | None,
        pick: Callable[[list[str]], str | None] | None = None) -> ExternalPackage:
    """Resolve (explicit ``version``; else ``pick`` over the feed's versions, oldest first — a channel's rules;
    else the newest stable), download once into the cache, and return the package with its sha256."""
    return external_feeds(conn, feed, vault).resolve(feed_name, package_id, version, pick)


def snapshot_fields(package: Package) -> dict[str, str]:
    """What a release records beyond id/version/sha256 for an external package."""
    return {"feed": package.feed} if isinstance(package, ExternalPackage) and package.feed else {}


def ensure(conn: Connection, feed: Feed, vault: Vault, entry: dict[str, Any]) -> Path:
    """A release's external package on this worker, checked against its pin (downloaded again if the cache lost it)."""
    return external_feeds(conn, feed, vault).ensure(entry["feed"], entry["id"], entry["version"], entry["filename"],
                                             entry["sha256"])


def verify_cached(feed: Feed, entry: dict[str, Any]) -> str:
    """``release verify``: re-hash the cached copy when there is one (a mismatch raises); say what was checked."""
    path = cache_dir(feed) / entry["feed"] / entry["id"] / entry["filename"]
    if not path.is_file():
        return (f"package {entry['id']} {entry['version']} (feed {entry['feed']!r}) sha256 {entry['sha256']}: not "
                "cached here; downloaded and checked by the next deployment")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise SnapshotIntegrityError(f"package {entry['id']} {entry['version']} (feed {entry['feed']!r}): the cached "
                                     f"file has sha256 {actual[:16]}…, the release pinned {entry['sha256'][:16]}…")
    return f"package {entry['id']} {entry['version']} (feed {entry['feed']!r}) sha256 {entry['sha256']}"
