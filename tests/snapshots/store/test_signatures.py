"""Signed, chained releases on SQLite and PostgreSQL: someone with write access to the database edits a
snapshot and recomputes the plain sha256, or inserts a forged variable-snapshot revision — verify, the
deployment and update-variables refuse; a rotated key still verifies old releases."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from snapshots import releases
from snapshots.errors import SnapshotIntegrityError
from snapshots.keys import open_vault, rotate
from snapshots.projects import apply
from snapshots.store import Store
from snapshots.store.crypto import Vault
from snapshots.store.feed import Feed
from tests.flows.local_project import LocalProject
from tests.snapshots.store import test_keys as keys_tests

KEY = b"s" * 32


@pytest.fixture
def released(database_url: str, sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FERRY_MASTER_KEY", base64.urlsafe_b64encode(KEY).decode())
    store = Store(database_url)
    feed = Feed(tmp_path / "feed")
    vault = open_vault(store, tmp_path / "master.key", "tester")
    with store.begin() as conn:
        apply(conn, [sample.infrastructure, sample.project], vault, "tester")
        feed.push(conn, sample.package("1.0.0"), "tester")
        releases.create(conn, feed, "OctoFX", "tester", vault=vault, version="1.0.0")
    yield store, feed, vault
    store.dispose()


def _unlock(conn: sa.Connection, table: str) -> None:
    """What an attacker with database rights does first: take the append-only trigger away."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
    else:
        conn.execute(sa.text(f"DROP TRIGGER {table}_no_update"))


def _require(store: Store) -> releases.Release:
    with store.read() as conn:
        return releases.require(conn, "OctoFX", "1.0.0")


def test_a_fresh_release_verifies(released) -> None:  # type: ignore[no-untyped-def]
    store, feed, vault = released
    checked = releases.verify(_require(store), feed, vault)
    assert any(line.startswith("signatures of the release and 1 variable snapshot") for line in checked)


def test_re_digested_snapshot_is_tampering(released) -> None:  # type: ignore[no-untyped-def]
    store, feed, vault = released
    with store.begin() as conn:
        _unlock(conn, "releases")
        text = conn.execute(sa.text("SELECT snapshot FROM releases")).scalar_one()
        edited = text.replace("Smoke test", "Smoke tost")
        assert edited != text
        conn.execute(sa.text("UPDATE releases SET snapshot = :s, digest = :d"),
                     {"s": edited, "d": hashlib.sha256(edited.encode()).hexdigest()})
    release = _require(store)
    releases.check_digests(release)  # the plain sha256 alone is fooled...
    with pytest.raises(SnapshotIntegrityError, match=r"^release OctoFX 1\.0\.0 was tampered with: the release "
                                                     r"snapshot does not match its signature$"):
        releases.verify(release, feed, vault)  # ...the signature is not


def _forge_revision(conn: sa.Connection, change: dict[str, str]) -> None:
    """Insert revision 2 with other values and a correct sha256 (the triggers allow INSERT)."""
    row = conn.execute(sa.text("SELECT * FROM variable_snapshots WHERE revision = 1")).mappings().one()
    document = json.loads(row["document"])
    document["revision"] = 2
    for var in document["variables"]:
        if var["name"] in change and not var.get("scope"):
            var["value"] = change[var["name"]]
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    conn.execute(sa.text("INSERT INTO variable_snapshots (release_id, revision, project_revision_id, document, digest, "
                         "created_at, created_by) VALUES (:r, 2, :p, :d, :h, :c, 'tester')"),
                 {"r": row["release_id"], "p": row["project_revision_id"], "d": text,
                  "h": hashlib.sha256(text.encode()).hexdigest(), "c": row["created_at"]})


def test_forged_variable_revision_is_tampering(released) -> None:  # type: ignore[no-untyped-def]
    store, feed, vault = released
    with store.begin() as conn:
        _forge_revision(conn, {"App.Root": "/tmp/evil"})
    release = _require(store)
    assert release.variables.revision == 2
    releases.check_digests(release)
    with pytest.raises(SnapshotIntegrityError, match=r"^release OctoFX 1\.0\.0 was tampered with: variable snapshot "
                                                     r"revision 2 is not signed by the executor's key$"):
        releases.verify(release, feed, vault)
    # nor can update-variables build on it
    with pytest.raises(SnapshotIntegrityError, match="variable snapshot revision 2"), store.begin() as conn:
        releases.add_variable_snapshot(conn, vault, release, release.project_revision_id, 1,
                                       release.variables.variables, "tester")


def test_forged_revision_with_a_made_up_signature_is_tampering(released) -> None:  # type: ignore[no-untyped-def]
    store, feed, vault = released
    with store.begin() as conn:
        _forge_revision(conn, {"App.Root": "/tmp/evil"})
        forged = conn.execute(sa.text("SELECT id FROM variable_snapshots WHERE revision = 2")).scalar_one()
        conn.execute(sa.text("INSERT INTO signatures (subject, subject_id, key_fingerprint, signature, created_at) "
                             "VALUES ('variable_snapshots', :i, :k, :s, 'now')"),
                     {"i": forged, "k": vault.key_id, "s": "0" * 64})
    with pytest.raises(SnapshotIntegrityError, match=r"variable snapshot revision 2 does not match its signature "
                                                     r"\(edited, forged or out of chain\)$"):
        releases.verify(_require(store), feed, Vault(KEY))


def test_signature_of_another_key_is_not_trusted(released) -> None:  # type: ignore[no-untyped-def]
    """A release signed under a key this executor does not hold (e.g. an attacker's own) does not verify."""
    store, feed, _ = released
    with pytest.raises(SnapshotIntegrityError, match=r"signed only by key [0-9a-f]{16}, which this executor does "
                                                     r"not hold"):
        releases.verify(_require(store), feed, Vault(b"o" * 32))


def test_rotated_key_still_verifies_old_releases(released, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store, _, old = released
    done = rotate(store, tmp_path / "master.key", "tester")
    monkeypatch.setenv("FERRY_MASTER_KEY", base64.urlsafe_b64encode(done.new_key).decode())
    new = open_vault(store, tmp_path / "master.key", "tester")
    assert new.key_id == done.new != old.key_id
    release = _require(store)
    assert [s.revision for s in release.variable_snapshots] == [1, 2]
    # each row names the keys that signed it: the old key's signatures are kept beside the new ones
    assert set(release.signatures) == {old.key_id, new.key_id}
    assert all(set(s.signatures) >= {new.key_id} for s in release.variable_snapshots)
    assert releases.check_integrity(release, new) == new.key_id
    assert releases.check_integrity(release, Vault(done.new_key)) == new.key_id  # the retired key file is gone
    # the old key still verifies what it signed (the release and revision 1, as they were before the rotation)...
    before = replace(release, variable_snapshots=release.variable_snapshots[:1])
    assert releases.check_integrity(before, old) == old.key_id
    # ...and nothing signed after it was retired: revision 2 carries only the new key's signature
    with pytest.raises(SnapshotIntegrityError, match=r"variable snapshot revision 2 is signed only by key "
                                                     r"[0-9a-f]{16}, which this executor does not hold"):
        releases.check_integrity(release, old)


# -- through the CLI: verify is one line, and a deployment of a tampered release deploys nothing --------------

@pytest.fixture
def shop(tmp_path: Path, ferry, prefect_env) -> LocalProject:  # type: ignore[no-untyped-def]
    project = LocalProject(tmp_path / "shop", ferry, environments={"Dev": 1})
    marker = tmp_path / "deployed"
    project.write([{"name": "Install", "kind": "script", "roles": ["web"],
                    "script": f"ferry_var App.Greeting > {marker}"}],
                  variables=[{"name": "App.Greeting", "value": "hello"}])
    project.apply()
    project.release("1.0.0")
    return project


def _sqlite(home: Path):  # type: ignore[no-untyped-def]
    import sqlite3

    return sqlite3.connect(home / "ferry.db")


def test_cli_verify_and_deploy_refuse_a_re_digested_release(shop: LocalProject, ferry, ferry_home: Path,  # type: ignore[no-untyped-def]
                                                             tmp_path: Path) -> None:
    conn = _sqlite(ferry_home)
    conn.execute("DROP TRIGGER releases_no_update")
    text = conn.execute("SELECT snapshot FROM releases").fetchone()[0]
    injected = text.replace("> " + str(tmp_path / "deployed"), "> " + str(tmp_path / "injected"))
    assert injected != text
    conn.execute("UPDATE releases SET snapshot = ?, digest = ?",
                 (injected, hashlib.sha256(injected.encode()).hexdigest()))
    conn.commit()
    conn.close()
    expected = "error: release Shop 1.0.0 was tampered with: the release snapshot does not match its signature"
    before = keys_tests.store_state(ferry_home)
    verify = ferry("release", "verify", "Shop", "1.0.0")
    assert verify.exit_code == 1 and verify.stderr.strip() == expected, verify.output
    deploy = shop.deploy("1.0.0", "Dev")
    assert deploy.exit_code != 0 and deploy.stderr.strip().splitlines()[-1] == expected, deploy.output
    assert keys_tests.store_state(ferry_home) == before  # not even a deployment record
    assert not (tmp_path / "injected").exists() and not (tmp_path / "deployed").exists()
    assert shop.deployments() == []


def test_cli_verify_and_deploy_refuse_a_forged_variable_revision(shop: LocalProject, ferry, ferry_home: Path,  # type: ignore[no-untyped-def]
                                                                  tmp_path: Path) -> None:
    conn = _sqlite(ferry_home)
    release_id, project_revision_id, document, created = conn.execute(
        "SELECT release_id, project_revision_id, document, created_at FROM variable_snapshots").fetchone()
    forged = json.loads(document)
    forged["revision"] = 2
    forged["variables"][0]["value"] = "$(touch " + str(tmp_path / "injected") + ")"
    text = json.dumps(forged, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    conn.execute("INSERT INTO variable_snapshots (release_id, revision, project_revision_id, document, digest, "
                 "created_at, created_by) VALUES (?, 2, ?, ?, ?, ?, 'ci')",
                 (release_id, project_revision_id, text, hashlib.sha256(text.encode()).hexdigest(), created))
    conn.commit()
    conn.close()
    expected = ("error: release Shop 1.0.0 was tampered with: variable snapshot revision 2 is not signed by the "
                "executor's key")
    before = keys_tests.store_state(ferry_home)
    verify = ferry("release", "verify", "Shop", "1.0.0")
    assert verify.exit_code == 1 and verify.stderr.strip() == expected, verify.output
    deploy = shop.deploy("1.0.0", "Dev")
    assert deploy.exit_code != 0 and deploy.stderr.strip().splitlines()[-1] == expected, deploy.output
    assert keys_tests.store_state(ferry_home) == before  # not even a deployment record
    assert not (tmp_path / "injected").exists() and not (tmp_path / "deployed").exists()
    assert shop.deployments() == []
    assert re.search(r"variable snapshot revision 2", ferry("release", "update-variables", "Shop", "1.0.0").stderr)


def _rows(store: Store) -> dict[str, list]:
    with store.read() as conn:
        names = sa.inspect(conn).get_table_names()
        return {t: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {t}")))) for t in names}


def test_wrong_or_missing_key_is_refused_before_anything_is_written(released, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                    monkeypatch) -> None:
    from snapshots.errors import MasterKeyError

    store, _, _ = released
    before = _rows(store)
    monkeypatch.setenv("FERRY_MASTER_KEY", base64.urlsafe_b64encode(b"w" * 32).decode())
    with pytest.raises(MasterKeyError, match=r"^FERRY_MASTER_KEY does not match this store \(fingerprint "):
        open_vault(store, tmp_path / "master.key", "tester")
    monkeypatch.delenv("FERRY_MASTER_KEY")
    with pytest.raises(MasterKeyError, match=r"^no master key: .*no new key was generated"):
        open_vault(store, tmp_path / "master.key", "tester")
    assert not (tmp_path / "master.key").exists()
    assert _rows(store) == before


def test_rotation_re_encrypts_prompted_values_too(released, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Anything else the store keeps as Fernet ciphertext (prompted values waiting for their deployment)."""
    store, _, old = released
    with store.begin() as conn:
        conn.execute(sa.text("INSERT INTO prompted_values (bundle, project, name, ciphertext, created_at, created_by) "
                             "VALUES ('b1', 'OctoFX', 'Sec.Prompt', :c, 'now', 'tester')"),
                     {"c": old.encrypt("prompted-s3cret")})
    done = rotate(store, tmp_path / "master.key", "tester")
    with store.read() as conn:
        token = conn.execute(sa.text("SELECT ciphertext FROM prompted_values")).scalar_one()
    assert Vault(done.new_key).decrypt(token) == "prompted-s3cret"
