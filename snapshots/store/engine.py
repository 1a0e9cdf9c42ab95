"""Open the store: SQLite in FERRY_HOME by default, PostgreSQL when FERRY_DATABASE_URL says so."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine, create_engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from snapshots.errors import StoreError
from snapshots.settings import private_file
from snapshots.store import migrate


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the driver ferry ships), not psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _private_sqlite_file(path: Path) -> None:
    """The store file 0600 before SQLite opens it (its -wal and -shm files then get the same mode)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file == path or file.exists():
            private_file(file)


def open_engine(url: str) -> Engine:
    """Create the engine and bring the schema up to date."""
    url = normalise_url(url)
    try:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                _private_sqlite_file(Path(path))
            engine = create_engine(url, poolclass=NullPool)
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        migrate.upgrade(engine)
    except ArgumentError as exc:
        raise StoreError(f"invalid FERRY_DATABASE_URL: {exc}") from exc
    except DBAPIError as exc:  # the driver's own message only: never the SQL or its parameters
        reason = _reason(exc)
        if url.startswith("sqlite") and _read_only(Path(_where(url)).parent):
            reason = "its file system is read-only (SQLite writes beside the store even to read it)"
        raise StoreError(f"cannot open the store ({_where(url)}): {reason}") from None
    except OSError as exc:
        raise StoreError(f"cannot open the store ({_where(url)}): {exc.strerror or exc}") from None
    return engine


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _reason(exc: DBAPIError) -> str:
    lines = str(exc.orig).strip().splitlines()
    return lines[0] if lines else type(exc.orig).__name__


def _where(url: str) -> str:
    """The store's file, or its URL without the password."""
    if url.startswith("sqlite"):
        return url.split("///", 1)[-1]
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "FERRY_DATABASE_URL"


def now() -> str:
    """UTC timestamp as stored: ISO 8601 with microseconds and 'Z'."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key of the row a single-row INSERT added (SQLAlchemy types it as optional)."""
    key = result.inserted_primary_key
    assert key is not None, "not a single-row INSERT"
    return int(key[0])


class Store:
    """The engine plus one-transaction-per-operation helpers."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.engine = open_engine(url)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: everything in it lands, or nothing does. A database error the code did not handle
        (a read-only or full store) becomes one line without the SQL or its parameters."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise  # a concurrent writer won a race: callers handle it (release versions, the first key)
        except DBAPIError as exc:
            raise StoreError(f"the store ({_where(self.url)}) refused the change: {_reason(exc)}; nothing was "
                             "stored") from None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
