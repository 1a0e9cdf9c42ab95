"""The ferry store: SQLAlchemy Core tables, alembic migrations, append-only snapshot history."""

from snapshots.store.engine import Store, StoreError, inserted_id, now

__all__ = ["Store", "StoreError", "inserted_id", "now"]
