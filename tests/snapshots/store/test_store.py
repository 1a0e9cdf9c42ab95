"""The store on SQLite and on a real PostgreSQL: migrations, append-only snapshot rows, one-transaction
release creation."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from snapshots import releases
from snapshots.errors import SnapshotIntegrityError, StoreError
from snapshots.keys import open_vault
from snapshots.projects import apply
from snapshots.store import Store
from snapshots.store.crypto import Vault
from snapshots.store.feed import Feed
from snapshots.store.migrate import alembic_head, head_revision
from snapshots.store.tables import APPEND_ONLY
from tests.sample import SECRET

VAULT = Vault(b"k" * 32)


@pytest.fixture
def released(database_url: str, sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FERRY_MASTER_KEY", base64.urlsafe_b64encode(b"k" * 32).decode())
    store = Store(database_url)
    feed = Feed(tmp_path / "feed")
    assert open_vault(store, tmp_path / "master.key", "tester").key_id == VAULT.key_id
    with store.begin() as conn:
        apply(conn, [sample.infrastructure, sample.project], VAULT, "tester")
        feed.push(conn, sample.package("1.0.0"), "tester")
        releases.create(conn, feed, "OctoFX", "tester", vault=VAULT, version="1.0.0")
    yield store, feed
    store.dispose()


def test_migrations_reach_head(released) -> None:  # type: ignore[no-untyped-def]
    store, _ = released
    with store.read() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head_revision()


def test_the_head_read_from_file_names_is_the_head_alembic_finds() -> None:
    """Each command checks the schema against the head taken from the migration files' names (alembic is
    not imported unless there is something to upgrade): a migration that breaks the NNNN naming fails here."""
    assert head_revision() == alembic_head()


@pytest.mark.parametrize("table", APPEND_ONLY)
def test_database_refuses_update_and_delete_of_snapshot_rows(released, table: str) -> None:  # type: ignore[no-untyped-def]
    store, _ = released
    with store.read() as conn:
        before = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
    assert before > 0, f"{table} should hold rows after apply + push + release"
    for statement in (f"UPDATE {table} SET id = id", f"DELETE FROM {table}"):
        # a StoreError (one line, as the CLI says it), or on SQLite the IntegrityError Store.begin passes through
        with pytest.raises((StoreError, DBAPIError), match="append-only"), store.begin() as conn:
            conn.execute(sa.text(statement))
    with store.read() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == before


@pytest.mark.parametrize("edit", [("'Smoke test'", "'Smoke tost'"), ("'\"steps\":'", "'\"steps\" '")],
                         ids=["edited process", "broken JSON"])
def test_tampered_snapshot_is_detected(released, edit: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    """Someone with database rights drops the trigger and edits the frozen process: verify says so."""
    store, feed = released
    with store.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE releases DISABLE TRIGGER releases_append_only"))
        else:
            conn.execute(sa.text("DROP TRIGGER releases_no_update"))
        changed = conn.execute(sa.text(f"UPDATE releases SET snapshot = replace(snapshot, {edit[0]}, {edit[1]})"))
        assert changed.rowcount == 1
    with pytest.raises(SnapshotIntegrityError, match=r"OctoFX 1\.0\.0 was tampered with"), store.read() as conn:
        releases.verify(releases.require(conn, "OctoFX", "1.0.0"), feed, VAULT)


def test_sensitive_value_is_encrypted_at_rest(released) -> None:  # type: ignore[no-untyped-def]
    store, _ = released
    with store.read() as conn:
        for table in ("project_revisions", "variable_snapshots", "releases", "audit_log"):
            dump = " ".join(str(row) for row in conn.execute(sa.text(f"SELECT * FROM {table}")))
            assert SECRET not in dump
        release = releases.require(conn, "OctoFX", "1.0.0")
    values = {v["name"]: v["value"] for v in releases.decrypt_variables(release.variables, VAULT)}
    assert values["Db.Password"] == SECRET


def test_failed_release_creation_writes_nothing(released) -> None:  # type: ignore[no-untyped-def]
    """Release creation is one transaction: an error after the release row leaves no row behind."""
    store, feed = released

    def counts() -> dict[str, int]:
        with store.read() as conn:
            return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in APPEND_ONLY}

    before = counts()
    original = releases._insert_variable_snapshot

    def explode(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk full")

    releases._insert_variable_snapshot = explode
    try:
        with pytest.raises(RuntimeError), store.begin() as conn:
            releases.create(conn, feed, "OctoFX", "tester", vault=VAULT, version="1.0.1")
    finally:
        releases._insert_variable_snapshot = original
    assert counts() == before
