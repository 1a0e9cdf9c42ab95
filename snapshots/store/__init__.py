"""The ferry store: SQLAlchemy Core tables, alembic migrations, append-only snapshot history."""

from snapshots.store.engine import Store, StoreError, now

__all__ = ["Store", "StoreError", "now"]
