"""The built-in directory feed: package files addressed by id + version and pinned by sha256.

Files live under ``FERRY_HOME/feed/<Id>/<Id>.<version>.<ext>``. Bytes are hashed while they are copied
(streamed, never read whole into memory); a version is immutable once pushed.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import re
import shutil
import socket
import stat
import tarfile
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import Connection, Row, insert, select

from snapshots import processes
from snapshots.digests import sha256_file
from snapshots.errors import ConfigError, ConflictError, NotFoundError, SnapshotIntegrityError, StoreError
from snapshots.store import audit
from snapshots.store.engine import now
from snapshots.store.tables import packages
from snapshots.versions import is_version, latest, sort_key

EXTENSIONS = (".tar.gz", ".tgz", ".zip", ".nupkg")
CHUNK = 1 << 20

PACKAGE_ID = re.compile(r"^[A-Za-z0-9_]+(?:[.-][A-Za-z0-9_]+)*$")
"""NuGet / Octopus package ids: letters, digits and ``_`` in parts joined by single ``.`` or ``-`` (so no empty id,
no ``..``, no leading ``-``, no shell or path characters); at most 100 characters."""

PARTIAL_PREFIX = ".push-"
"""Bytes being received are written to ``.push-<host>-<pid>-<random>`` beside their final place."""

STALE_SECONDS = 24 * 3600
"""A partial file of another host (or of the old unnamed form) older than this is swept too."""


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
    the first dot-separated part from which the rest is valid SemVer. The id must be a NuGet id."""
    ext = next((e for e in EXTENSIONS if name.lower().endswith(e)), None)
    if ext is None:
        raise ConfigError(f"{name!r}: a package file must end in {', '.join(EXTENSIONS)}")
    stem = name[: -len(ext)]
    parts = stem.split(".")
    for i in range(1, len(parts)):
        candidate = ".".join(parts[i:])
        if is_version(candidate):
            check_package_id(".".join(parts[:i]), name)
            return PackageFile(".".join(parts[:i]), candidate, ext)
    raise ConfigError(f"{name!r}: no SemVer version in the file name (expected <Id>.<Version>{ext}, "
                      f"e.g. OctoFX.Web.1.0.0{ext})")


def check_package_id(package_id: str, name: str | None = None) -> None:
    """Refuse an id NuGet and Octopus would refuse (it names a folder of the feed and reaches scripts)."""
    if len(package_id) > 100 or not PACKAGE_ID.match(package_id):
        where = f"{name!r}: " if name else ""
        raise ConfigError(f"{where}package id {package_id!r} is not valid: letters, digits and _ in parts joined "
                          "by single . or - (e.g. OctoFX.Web), at most 100 characters")


def _unsafe_member(name: str) -> str | None:
    """Why an archive member's path may not be extracted (absolute, a drive, ``..``), or None."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or re.match(r"^[A-Za-z]:", unified):
        return "an absolute path"
    if ".." in PurePosixPath(unified).parts:
        return "a path that climbs out of the package (..)"
    if any(ord(ch) < 32 for ch in name):
        return "a control character in its name"
    return None


def _link_escapes(member: str, target: str) -> bool:
    """Does a link at ``member`` pointing to ``target`` resolve outside the archive's tree?"""
    target = target.replace("\\", "/")
    if target.startswith("/") or re.match(r"^[A-Za-z]:", target):
        return True
    depth = 0
    for part in [*PurePosixPath(member.replace("\\", "/")).parent.parts, *PurePosixPath(target).parts]:
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in (".", ""):
            depth += 1
    return False


def inspect_archive(path: Path, extension: str, name: str) -> int:
    """Open and list the whole archive as the deployment will, and check every byte decompresses (CRCs): refuse
    an empty, truncated or corrupted file, and any member with an absolute path, ``..``, or a link leading out of
    the tree, with one line naming the file and the member. Returns the number of entries."""
    if path.stat().st_size == 0:
        raise ConfigError(f"{name!r}: the file is empty (0 bytes), not a {extension} archive")
    try:
        count = _inspect_zip(path, name) if extension in (".zip", ".nupkg") else _inspect_tar(path, name)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"{name!r}: not a readable {extension} archive (corrupted or truncated: {detail})") from None
    except NotImplementedError as exc:  # zipfile: an unsupported compression method
        raise ConfigError(f"{name!r}: not a readable {extension} archive ({exc})") from None
    if count == 0:
        raise ConfigError(f"{name!r}: the archive holds no files")
    return count


def _inspect_zip(path: Path, name: str) -> int:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        for info in infos:
            why = _unsafe_member(info.filename)
            if why:
                raise ConfigError(f"{name!r}: entry {info.filename!r} has {why}; refused")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                target = archive.read(info).decode("utf-8", "replace")
                if _link_escapes(info.filename, target):
                    raise ConfigError(f"{name!r}: entry {info.filename!r} is a link to {target!r}, outside the "
                                      "package; refused")
        bad = archive.testzip()  # reads every member: CRC and truncation
        if bad is not None:
            raise zipfile.BadZipFile(f"entry {bad!r} fails its CRC check")
        return len(infos)


def _inspect_tar(path: Path, name: str) -> int:
    """One sequential pass: the tar stream read through gzip (member data skipped by reading it), then the rest
    of the gzip stream, whose CRC and length are checked only at its end."""
    count = 0
    with gzip.open(path, "rb") as stream:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                count += 1
                why = _unsafe_member(member.name)
                if why:
                    raise ConfigError(f"{name!r}: entry {member.name!r} has {why}; refused")
                if member.issym() or member.islnk():
                    base = member.name if member.issym() else "./"
                    if _link_escapes(base, member.linkname):
                        raise ConfigError(f"{name!r}: entry {member.name!r} is a link to {member.linkname!r}, "
                                          "outside the package; refused")
                elif not (member.isfile() or member.isdir()):
                    raise ConfigError(f"{name!r}: entry {member.name!r} is a device, FIFO or other special file; "
                                      "refused")
        while stream.read(CHUNK):
            pass
    return count


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


def partial_file(dest_dir: Path) -> tuple[int, Path]:
    """A new partial file for received bytes, named for this host and process so a later push can tell a dead
    push's leftovers from a live one's."""
    fd, name = tempfile.mkstemp(prefix=f"{PARTIAL_PREFIX}{_host()}-{os.getpid()}-", dir=dest_dir)
    return fd, Path(name)


def sweep_partials(dest_dir: Path) -> list[Path]:
    """Remove partial files a killed push left: this host's whose process is gone, and any older than a day."""
    removed: list[Path] = []
    host = _host()
    try:
        candidates = [p for p in dest_dir.iterdir() if p.name.startswith(PARTIAL_PREFIX)]
    except OSError:
        return removed
    for path in candidates:
        m = re.match(rf"^{re.escape(PARTIAL_PREFIX)}(.+)-(\d+)-[^-]*$", path.name)
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            continue
        dead = m is not None and m.group(1) == host and not processes.alive(int(m.group(2)))
        if dead or age > STALE_SECONDS:
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
    return removed


def feed_write_error(exc: OSError, where: Path) -> StoreError:
    """One line for a feed that cannot be written (read-only, not ours, full disk)."""
    if exc.errno == errno.ENOSPC:
        return StoreError(f"the feed ({where}) is out of disk space: nothing was stored")
    if exc.errno == errno.EDQUOT:
        return StoreError(f"the feed ({where}) is over its disk quota: nothing was stored")
    if exc.errno == errno.EFBIG:
        return StoreError(f"the feed ({where}): the file is too large for this file system or process limit: "
                          "nothing was stored")
    return StoreError(f"cannot write to the feed ({where}): {exc.strerror or exc}: nothing was stored")


def _copy_hashing(source: Path, dest_dir: Path) -> tuple[Path, str, int]:
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    try:
        src = open(source, "rb", buffering=0)  # noqa: SIM115 - closed below, before the feed is touched
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    with src:
        try:
            fd, tmp = partial_file(dest_dir)
        except OSError as exc:
            raise feed_write_error(exc, dest_dir) from None
        try:
            with os.fdopen(fd, "wb") as dst:
                while n := src.readinto(buffer):
                    digest.update(view[:n])
                    dst.write(view[:n])
                    size += n
                dst.flush()
                os.fsync(dst.fileno())
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise feed_write_error(exc, dest_dir) from None
            raise
    return tmp, digest.hexdigest(), size


class Feed:
    """Push, list and locate packages. Rows go through the caller's store connection."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, package_id: str, filename: str) -> Path:
        return self.root / package_id / filename

    def push(self, conn: Connection, source: Path, actor: str) -> tuple[Package, bool]:
        """Store a package file. Returns (package, created). Same bytes again: no-op; other bytes: refused."""
        if not source.is_file():
            raise NotFoundError(f"{source}: no such file" if not source.exists() else f"{source}: not a file")
        parsed, dest_dir = self.incoming(source.name)
        try:
            tmp, sha, size = _copy_hashing(source, dest_dir)
            return self.adopt(conn, parsed, tmp, sha, size, actor)
        except BaseException:
            with contextlib.suppress(OSError):
                dest_dir.rmdir()  # only if this push made it and left it empty
            raise

    def incoming(self, name: str) -> tuple[PackageFile, Path]:
        """Where the bytes of a package file of this name are received (a temporary file in this directory,
        then ``adopt``): the name is checked before any byte is read."""
        parsed = parse_filename(name)
        dest_dir = self.root / parsed.package_id
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise feed_write_error(exc, self.root) from None
        sweep_partials(dest_dir)
        return parsed, dest_dir

    def adopt(self, conn: Connection, parsed: PackageFile, tmp: Path, sha: str, size: int,
              actor: str) -> tuple[Package, bool]:
        """Take a received, hashed temporary file into the feed under the push rules (same bytes again: no-op;
        other bytes under a pushed version: refused). The archive is opened and listed first. The temporary file is
        gone afterwards, whatever happens."""
        name = f"{parsed.package_id}.{parsed.version}{parsed.extension}"
        try:
            inspect_archive(tmp, parsed.extension, name)
            existing = self.find(conn, parsed.package_id, parsed.version)
            if existing is not None:
                if existing.sha256 != sha:
                    raise ConflictError(
                        f"{parsed.package_id} {parsed.version} is already in the feed with different content "
                        f"(sha256 {existing.sha256[:12]}…, pushed {existing.pushed_at}; "
                        f"this file {sha[:12]}…): push it under a new version")
                return existing, False
            self._refuse_same_precedence(conn, parsed)
            filename = name
            package = Package(parsed.package_id, parsed.version, filename, size, sha, now(), actor)
            conn.execute(insert(packages).values(
                package_id=package.package_id, version=package.version, filename=filename, size=size,
                sha256=sha, pushed_at=package.pushed_at, pushed_by=actor))
            audit.record(conn, actor, "package.push", f"package/{package.package_id}/{package.version}",
                         sha256=sha, size=size)
            try:
                os.replace(tmp, self.path_of(package.package_id, filename))
            except OSError as exc:
                raise feed_write_error(exc, self.root) from None
            return package, True
        finally:
            if tmp.exists():
                tmp.unlink()

    def _refuse_same_precedence(self, conn: Connection, parsed: PackageFile) -> None:
        """``1.0.0+b5`` beside ``1.0.0``: build metadata does not order versions (SemVer 2 §10), so a deployment
        asking for the latest could not tell them apart."""
        wanted = sort_key(parsed.version)
        for other in self.list(conn, parsed.package_id):
            if sort_key(other.version).compare(wanted) == 0:
                raise ConflictError(f"{parsed.package_id} {parsed.version} has the same SemVer precedence as "
                                    f"{other.version}, already in the feed (build metadata after + does not order "
                                    "versions): push it under a new version")

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


def _package(row: Row[Any]) -> Package:
    m = row._mapping
    return Package(m["package_id"], m["version"], m["filename"], m["size"], m["sha256"], m["pushed_at"],
                   m["pushed_by"])
