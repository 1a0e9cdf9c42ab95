"""Prompted values in the store, on SQLite and on a real PostgreSQL: kept encrypted under a deployment record
or as a bundle; a bundle is claimed once, by the flow run it was bound to, for its own project."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import sqlalchemy as sa

from snapshots import releases
from snapshots.errors import ConflictError, NotFoundError
from snapshots.keys import open_vault
from snapshots.projects import apply
from snapshots.store import Store, prompted, records
from snapshots.store.crypto import Vault
from snapshots.store.feed import Feed

VAULT = Vault(b"p" * 32)
SECRET = "Pa#{ss W0rd}/+=Ünï"


@pytest.fixture
def store(database_url: str, sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A store holding the sample project and one release, so deployment records can exist."""
    monkeypatch.setenv("FERRY_MASTER_KEY", base64.urlsafe_b64encode(b"p" * 32).decode())
    store = Store(database_url)
    feed = Feed(tmp_path / "feed")
    open_vault(store, tmp_path / "master.key", "tester")
    with store.begin() as conn:
        apply(conn, [sample.infrastructure, sample.project], VAULT, "tester")
        feed.push(conn, sample.package("1.0.0"), "tester")
        releases.create(conn, feed, "OctoFX", "tester", vault=VAULT, version="1.0.0")
    yield store
    store.dispose()


def _record(conn: sa.Connection) -> int:
    release = releases.require(conn, "OctoFX", "1.0.0")
    return records.create(conn, project="OctoFX", release_id=release.id, environment="Development",
                          variable_snapshot_id=release.variables.id, parameters={}, actor="tester")


def _raw(conn: sa.Connection) -> str:
    return " ".join(str(v) for row in conn.execute(sa.text("SELECT * FROM prompted_values")) for v in row)


def test_values_of_a_deployment_are_encrypted_and_read_back(store: Store) -> None:
    with store.begin() as conn:
        deployment_id = _record(conn)
        prompted.store_for_deployment(conn, VAULT, deployment_id, "OctoFX", {"Db.Password": SECRET, "Note": "hi"},
                                      "tester")
    with store.read() as conn:
        assert SECRET not in _raw(conn) and "hi " not in _raw(conn)
        assert prompted.read(conn, VAULT, deployment_id) == {"Db.Password": SECRET, "Note": "hi"}
        assert prompted.names(conn, deployment_id) == ["Db.Password", "Note"]


def test_a_bundle_is_claimed_once_by_the_run_it_was_bound_to(store: Store) -> None:
    with store.begin() as conn:
        ref = prompted.store_bundle(conn, VAULT, "OctoFX", {"Db.Password": SECRET}, "prefect-ui")
        prompted.bind_bundle(conn, ref, "run-1")
        prompted.bind_bundle(conn, ref, "run-2")  # bound once: a second binding changes nothing
    assert prompted.is_ref(ref) and SECRET not in ref
    with store.read() as conn:
        assert prompted.bundle_state(conn, ref) == ("OctoFX", "run-1")
        assert prompted.read_bundle(conn, VAULT, ref) == {"Db.Password": SECRET}
    with store.begin() as conn, pytest.raises(ConflictError, match="another flow run"):
        prompted.claim_bundle(conn, ref, deployment_id=_record(conn), project="OctoFX", flow_run_id="run-2")
    with store.begin() as conn, pytest.raises(ConflictError, match="given for OctoFX, not Other"):
        prompted.claim_bundle(conn, ref, deployment_id=_record(conn), project="Other", flow_run_id="run-1")
    with store.begin() as conn:
        deployment_id = _record(conn)
        prompted.claim_bundle(conn, ref, deployment_id=deployment_id, project="OctoFX", flow_run_id="run-1")
    with store.read() as conn:
        assert prompted.read(conn, VAULT, deployment_id) == {"Db.Password": SECRET}
        assert prompted.bundle_state(conn, ref) is None
    with store.begin() as conn, pytest.raises(NotFoundError, match="already used"):
        prompted.claim_bundle(conn, ref, deployment_id=_record(conn), project="OctoFX", flow_run_id="run-1")
    with store.read() as conn:  # Prefect's Retry runs the same flow run again: it, and only it, reads them again
        assert prompted.reclaim(conn, VAULT, ref, "run-1") == {"Db.Password": SECRET}
        assert prompted.reclaim(conn, VAULT, ref, "run-2") is None
        assert prompted.reclaim(conn, VAULT, ref, None) is None


def test_a_refused_run_discards_its_bundle_and_rotation_reencrypts(store: Store) -> None:
    with store.begin() as conn:
        ref = prompted.store_bundle(conn, VAULT, "OctoFX", {"Db.Password": SECRET}, "prefect-ui")
        prompted.discard_bundle(conn, ref)
        assert prompted.bundle_state(conn, ref) is None
        deployment_id = _record(conn)
        prompted.store_for_deployment(conn, VAULT, deployment_id, "OctoFX", {"Db.Password": SECRET}, "tester")
    new = Vault(b"q" * 32)
    with store.begin() as conn:
        assert prompted.reencrypt(conn, VAULT, new) == 1
    with store.read() as conn:
        assert prompted.read(conn, new, deployment_id) == {"Db.Password": SECRET}
    with store.begin() as conn, pytest.raises(NotFoundError, match="not a prompted-values reference"):
        prompted.claim_bundle(conn, "not-a-ref", deployment_id=deployment_id, project="OctoFX", flow_run_id=None)
