"""The built-in directory feed: package files addressed by id + version and pinned by sha256.

Files live under ``FERRY_HOME/feed/<Id>/<Id>.<version>.<ext>``. Bytes are hashed while they are copied
(streamed, never read whole into memory); a version is immutable once pushed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select

from snapshots.errors import ConfigError, ConflictError, NotFoundError, SnapshotIntegrityError
from snapshots.store import audit
from snapshots.store.engine import now
from snapshots.store.tables import packages
from snapshots.versions import is_version, latest

EXTENSIONS = (".tar.gz", ".tgz", ".zip", ".nupkg")
CHUNK = 1 << 20


@dataclass(frozen=True)
class PackageFile:
    package_id: str
    version: str
    extension: str


@dataclass(frozen=True)
class Package:
    package_id: str
    version: str
    filename: str
    size: int
    sha256: str
    pushed_at: str
    pushed_by: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.package_id, "version": self.version, "filename": self.filename,
                "size": self.size, "sha256": self.sha256, "pushed_at": self.pushed_at, "pushed_by": self.pushed_by}


def parse_filename(name: str) -> PackageFile:
    """``OctoFX.Web.1.2.3-beta.1.tar.gz`` → (OctoFX.Web, 1.2.3-beta.1, .tar.gz): the version starts at
    the first dot-separated part from which the rest is valid SemVer."""
    ext = next((e for e in EXTENSIONS if name.lower().endswith(e)), None)
    if ext is None:
        raise ConfigError(f"{name}: a package file must end in {', '.join(EXTENSIONS)}")
    stem = name[: -len(ext)]
    parts = stem.split(".")
    for i in range(1, len(parts)):
        candidate = ".".join(parts[i:])
        if is_version(candidate):
            return PackageFile(".".join(parts[:i]), candidate, ext)
    raise ConfigError(f"{name}: no SemVer version in the file name (expected <Id>.<Version>{ext}, "
                      f"e.g. OctoFX.Web.1.0.0{ext})")


def sha256_file(path: Path) -> str:
    """Streamed sha256 (hashlib releases the GIL, so several files hash in parallel threads)."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def _copy_hashing(source: Path, dest_dir: Path) -> tuple[Path, str, int]:
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    fd, tmp = tempfile.mkstemp(prefix=".push-", dir=dest_dir)
    try:
        with open(source, "rb", buffering=0) as src, os.fdopen(fd, "wb") as dst:
            while n := src.readinto(buffer):
                digest.update(view[:n])
                dst.write(view[:n])
                size += n
            dst.flush()
            os.fsync(dst.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp), digest.hexdigest(), size


class Feed:
    """Push, list and locate packages. Rows go through the caller's store connection."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, package_id: str, filename: str) -> Path:
        return self.root / package_id / filename

    def push(self, conn: Connection, source: Path, actor: str) -> tuple[Package, bool]:
        """Store a package file. Returns (package, created). Same bytes again: no-op; other bytes: refused."""
        if not source.is_file():
            raise NotFoundError(f"{source}: no such file")
        parsed, dest_dir = self.incoming(source.name)
        tmp, sha, size = _copy_hashing(source, dest_dir)
        return self.adopt(conn, parsed, tmp, sha, size, actor)

    def incoming(self, name: str) -> tuple[PackageFile, Path]:
        """Where the bytes of a package file of this name are received (a temporary file in this directory,
        then ``adopt``): the name is checked before any byte is read."""
        parsed = parse_filename(name)
        dest_dir = self.root / parsed.package_id
        dest_dir.mkdir(parents=True, exist_ok=True)
        return parsed, dest_dir

    def adopt(self, conn: Connection, parsed: PackageFile, tmp: Path, sha: str, size: int,
              actor: str) -> tuple[Package, bool]:
        """Take a received, hashed temporary file into the feed under the push rules (same bytes again: no-op;
        other bytes under a pushed version: refused). The temporary file is gone afterwards, whatever happens."""
        try:
            existing = self.find(conn, parsed.package_id, parsed.version)
            if existing is not None:
                if existing.sha256 != sha:
                    raise ConflictError(
                        f"{parsed.package_id} {parsed.version} is already in the feed with different content "
                        f"(sha256 {existing.sha256[:12]}…, pushed {existing.pushed_at}; "
                        f"this file {sha[:12]}…): push it under a new version")
                return existing, False
            filename = f"{parsed.package_id}.{parsed.version}{parsed.extension}"
            package = Package(parsed.package_id, parsed.version, filename, size, sha, now(), actor)
            conn.execute(insert(packages).values(
                package_id=package.package_id, version=package.version, filename=filename, size=size,
                sha256=sha, pushed_at=package.pushed_at, pushed_by=actor))
            audit.record(conn, actor, "package.push", f"package/{package.package_id}/{package.version}",
                         sha256=sha, size=size)
            os.replace(tmp, self.path_of(package.package_id, filename))
            return package, True
        finally:
            if tmp.exists():
                tmp.unlink()

    def find(self, conn: Connection, package_id: str, version: str) -> Package | None:
        row = conn.execute(select(packages).where(packages.c.package_id == package_id,
                                                  packages.c.version == version)).first()
        return _package(row) if row else None

    def list(self, conn: Connection, package_id: str | None = None) -> list[Package]:
        query = select(packages).order_by(packages.c.package_id, packages.c.id)
        if package_id:
            query = query.where(packages.c.package_id == package_id)
        return [_package(row) for row in conn.execute(query)]

    def resolve(self, conn: Connection, package_id: str, version: str | None) -> Package:
        """The named version, or the latest stable one (latest pre-release if there is no stable)."""
        versions = {p.version: p for p in self.list(conn, package_id)}
        if not versions:
            raise NotFoundError(f"package {package_id!r} is not in the feed (push it with `ferry package push`)")
        if version is None:
            version = latest(versions, stable_only=True) or latest(versions)
        if version not in versions:
            raise NotFoundError(f"package {package_id} has no version {version} in the feed "
                                f"(have: {', '.join(sorted(versions))})")
        return versions[str(version)]

    def verify(self, package: Package) -> None:
        """Re-hash the stored file; raise if the bytes are gone or changed."""
        path = self.path_of(package.package_id, package.filename)
        if not path.is_file():
            raise SnapshotIntegrityError(f"package {package.package_id} {package.version}: {path} is missing")
        actual = sha256_file(path)
        if actual != package.sha256:
            raise SnapshotIntegrityError(
                f"package {package.package_id} {package.version}: sha256 mismatch "
                f"(pinned {package.sha256[:16]}…, file has {actual[:16]}…): the file was changed after it was pushed")

    def copy_out(self, package: Package, dest: Path) -> None:
        shutil.copyfile(self.path_of(package.package_id, package.filename), dest)


def _package(row: Any) -> Package:
    m = row._mapping
    return Package(m["package_id"], m["version"], m["filename"], m["size"], m["sha256"], m["pushed_at"],
                   m["pushed_by"])
