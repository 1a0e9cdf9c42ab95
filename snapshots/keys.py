"""The master key against the store: checked on every open, generated only for an empty store, rotated.

The store records the fingerprint of its key (``master_keys``; never the key). Opening the vault with any
other key, or with no key while the store holds encrypted or signed data, is refused before anything is
written — a wrong key would otherwise store values nobody can decrypt with the right one, and a silently
generated key would mix two keys in one store. ``rotate`` re-encrypts every secret under a new key as new
revisions (append-only history stays untouched), re-signs every release chain, records the new fingerprint,
and keeps the old key beside the new one as ``master.key.<fingerprint>.retired`` so old revisions stay
readable until that file is deleted.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Connection, Integer, MetaData, Table, Text, func, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError

from snapshots import library, releases
from snapshots.canonical import canonical_json
from snapshots.errors import ConflictError, MasterKeyError, SnapshotIntegrityError
from snapshots.model.documents import content_digest
from snapshots.store import Store, audit, now, signing
from snapshots.store.crypto import (
    MasterKey,
    Vault,
    generate_master_key,
    read_master_key,
    read_retired_keys,
    short,
    write_key_file,
)
from snapshots.store.tables import master_keys, project_revisions, signatures, variable_snapshots
from snapshots.store.tables import releases as releases_table


@dataclass(frozen=True)
class KeyState:
    """What the store says about its key, read before anything is written."""

    current: str | None
    known: list[str]
    sample_ciphertext: str | None
    has_releases: bool
    signers: list[str]

    @property
    def empty(self) -> bool:
        return self.current is None and self.sample_ciphertext is None and not self.has_releases


def _ciphertexts(document_text: str) -> list[str]:
    try:
        variables = json.loads(document_text).get("variables") or []
    except (json.JSONDecodeError, AttributeError):
        return []
    return [v["ciphertext"] for v in variables if isinstance(v, dict) and v.get("ciphertext")]


def other_encrypted_tables(conn: Connection) -> list[Table]:
    """Tables besides the revisions that keep Fernet ciphertext in a ``ciphertext`` column (prompted values,
    and whatever comes next): the key check and the rotation cover them without knowing them."""
    found = []
    inspector = inspect(conn)
    for name in inspector.get_table_names():
        if name in (project_revisions.name, variable_snapshots.name):
            continue
        columns = {c["name"] for c in inspector.get_columns(name)}
        if {"id", "ciphertext"} <= columns:
            found.append(Table(name, MetaData(), Column("id", Integer, primary_key=True), Column("ciphertext", Text)))
    return found


def key_state(conn: Connection) -> KeyState:
    """One small query when the store has a fingerprint (every command); the rest only for a store without one."""
    known = [r[0] for r in conn.execute(select(master_keys.c.fingerprint).order_by(master_keys.c.id))]
    if known:
        return KeyState(known[-1], known, None, True, [])
    sample = None
    for table, column in ((project_revisions, project_revisions.c.document),
                          (variable_snapshots, variable_snapshots.c.document)):
        row = conn.execute(select(column).where(column.like('%"ciphertext"%')).order_by(table.c.id.desc())
                           .limit(1)).first()
        if row is not None and _ciphertexts(row[0]):
            sample = _ciphertexts(row[0])[0]
            break
    if sample is None:
        for table in other_encrypted_tables(conn):
            sample = conn.execute(select(table.c.ciphertext).limit(1)).scalar()
            if sample is not None:
                break
    has_releases = conn.execute(select(func.count()).select_from(releases_table)).scalar_one() > 0
    signers = [r[0] for r in conn.execute(select(signatures.c.key_fingerprint).distinct())]
    return KeyState(None, known, sample, has_releases, signers)


def _mismatch(found: MasterKey, vault: Vault, state: KeyState, key_file: Path) -> MasterKeyError:
    expected = state.current or (state.signers[0] if state.signers else None)
    theirs = f"the store's key is {short(expected)}" if expected else "the store's data was encrypted under another key"
    if found.from_env:
        what, fix = "FERRY_MASTER_KEY", f"set it to this store's key, or unset it to use {key_file}"
    else:
        what, fix = f"the master key file {found.source}", "restore this store's key file, or set FERRY_MASTER_KEY"
    if vault.key_id in state.known:
        return MasterKeyError(f"{what} is a retired key of this store (fingerprint {short(vault.key_id)}; "
                              f"{theirs} since `ferry key rotate`); {fix}")
    pending = key_file.with_name(f"{key_file.name}.{short(expected)}.new") if expected else None
    if pending is not None and pending.exists():
        fix = f"a key rotation was interrupted after it committed: {pending} holds the store's key (move it to " \
              f"{key_file})"
    return MasterKeyError(f"{what} does not match this store (fingerprint {short(vault.key_id)}, {theirs}); "
                          f"{fix}; nothing was written")


def _record(store: Store, vault: Vault, reason: str, actor: str) -> None:
    """Record the fingerprint of the key a store adopts; a concurrent first command may win the race."""
    try:
        with store.begin() as conn:
            if key_state(conn).current is None:
                conn.execute(insert(master_keys).values(fingerprint=vault.key_id, reason=reason, created_at=now(),
                                                        created_by=actor))
                audit.record(conn, actor, f"key.{reason}", "key", fingerprint=short(vault.key_id))
                _adopt_unsigned(conn, vault)
    except IntegrityError:
        pass


def _adopt_unsigned(conn: Connection, vault: Vault) -> None:
    """Releases made before signing existed: sign those whose digests still hold (a tampered one stays
    unsigned, and verify reports it)."""
    signed = {r[0] for r in conn.execute(select(signatures.c.subject_id)
                                         .where(signatures.c.subject == signing.RELEASES))}
    for row in conn.execute(select(releases_table.c.id, releases_table.c.project, releases_table.c.version)
                            .order_by(releases_table.c.id)).all():
        if row.id in signed:
            continue
        release = releases.find(conn, row.project, row.version)
        if release is None or any(s.signatures for s in release.variable_snapshots):
            continue
        try:
            releases.check_digests(release)
        except SnapshotIntegrityError:
            continue
        signing.sign_chain(conn, vault, release.signed, [s.signed for s in release.variable_snapshots])


def _open(store: Store, key_file: Path, actor: str) -> tuple[Vault, MasterKey]:
    found = read_master_key(key_file)
    with store.read() as conn:
        state = key_state(conn)
    if found is None:
        if not state.empty:
            held = f"key {short(state.current)}" if state.current else "a master key"
            raise MasterKeyError(f"no master key: FERRY_MASTER_KEY is not set and {key_file} does not exist, but "
                                 f"this store's data is encrypted and signed under {held}; set FERRY_MASTER_KEY or "
                                 "restore the key file (no new key was generated, nothing was written)")
        with contextlib.suppress(FileExistsError):  # another command created it first: use that one
            write_key_file(key_file, generate_master_key(), exclusive=True)
        found = read_master_key(key_file)
        assert found is not None
    vault = Vault(found.key, read_retired_keys(key_file))
    if state.current is None:
        if state.sample_ciphertext is not None and not vault.can_decrypt(state.sample_ciphertext):
            raise _mismatch(found, vault, state, key_file)
        if state.signers and vault.key_id not in state.signers:
            raise _mismatch(found, vault, state, key_file)
        _record(store, vault, "generated" if state.empty else "adopted", actor)
        with store.read() as conn:
            state = key_state(conn)
    if state.current != vault.key_id:
        raise _mismatch(found, vault, state, key_file)
    return vault, found


def open_vault(store: Store, key_file: Path, actor: str) -> Vault:
    """The vault for this store, after checking the key against the store's fingerprint."""
    return _open(store, key_file, actor)[0]


def is_current(store: Store, vault: Vault) -> bool:
    """Whether ``vault``'s key is still the store's key (one small query)."""
    with store.read() as conn:
        current = conn.execute(select(master_keys.c.fingerprint).order_by(master_keys.c.id.desc()).limit(1)).scalar()
    return current == vault.key_id


@dataclass(frozen=True)
class Rotation:
    old: str
    new: str
    key_file: Path
    retired_file: Path
    from_env: bool
    new_key: bytes
    projects: int
    variable_snapshots: int
    releases: int


def _rekey(variables: list[dict[str, Any]], old: Vault, new: Vault) -> tuple[list[dict[str, Any]], bool]:
    out, changed = [], False
    for var in variables:
        if var.get("ciphertext"):
            plain = old.decrypt(var["ciphertext"])
            var = {**var, "ciphertext": new.encrypt(plain), "fingerprint": new.fingerprint(plain)}
            changed = True
        out.append(var)
    return out, changed


def _rotate_in(conn: Connection, old: Vault, new: Vault, actor: str) -> tuple[int, int, int]:
    """Everything a rotation writes, in the caller's transaction. Every release is checked under the old
    key first: a tampered one stops the rotation (re-signing it would launder the change)."""
    current = conn.execute(select(master_keys.c.fingerprint).order_by(master_keys.c.id.desc()).limit(1)
                           .with_for_update()).scalar()
    if current != old.key_id:
        raise ConflictError("the store's key changed while rotating (another `ferry key rotate`?); nothing was written")
    rows = conn.execute(select(releases_table.c.project, releases_table.c.version)
                        .order_by(releases_table.c.id)).all()
    found = [releases.find(conn, r.project, r.version) for r in rows]
    every = [r for r in found if r is not None]
    for release in every:
        releases.check_integrity(release, old)
    projects = 0
    names = [r[0] for r in conn.execute(select(project_revisions.c.project).distinct())]
    for name in names:
        row = conn.execute(select(project_revisions).where(project_revisions.c.project == name)
                           .order_by(project_revisions.c.revision.desc()).limit(1)).one()
        document = json.loads(row.document)
        variables, changed = _rekey(document.get("variables") or [], old, new)
        if not changed:
            continue
        document = {**document, "variables": variables}
        conn.execute(insert(project_revisions).values(
            project=name, revision=row.revision + 1, content_digest=content_digest(document),
            document=canonical_json(document), source="ferry key rotate", created_at=now(), created_by=actor))
        audit.record(conn, actor, "project.rekey", f"project/{name}", revision=row.revision + 1,
                     key=short(new.key_id))
        projects += 1
    library.rekey(conn, old, new, actor)  # library variable sets' sensitive values, like a project's
    snapshots = 0
    for release in every:
        last = signing.sign_chain(conn, new, release.signed, [s.signed for s in release.variable_snapshots])
        variables, changed = _rekey(release.variables.variables, old, new)
        if changed:
            newest = release.variables
            releases.append_revision(conn, new, release, newest.project_revision_id,
                                     newest.document["project_revision"], variables, actor, last)
            audit.record(conn, actor, "release.rekey", f"project/{release.project}/release/{release.version}",
                         revision=newest.revision + 1, key=short(new.key_id))
            snapshots += 1
    for table in other_encrypted_tables(conn):
        for row in conn.execute(select(table.c.id, table.c.ciphertext)).all():
            conn.execute(update(table).where(table.c.id == row.id)
                         .values(ciphertext=new.encrypt(old.decrypt(row.ciphertext))))
    conn.execute(insert(master_keys).values(fingerprint=new.key_id, reason="rotated", created_at=now(),
                                            created_by=actor))
    audit.record(conn, actor, "key.rotate", "key", old=short(old.key_id), new=short(new.key_id),
                 projects=projects, variable_snapshots=snapshots, releases=len(every))
    return projects, snapshots, len(every)


def rotate(store: Store, key_file: Path, actor: str) -> Rotation:
    """Rotate the master key: one transaction in the store, key files written around it so that a crash at
    any point leaves either the old key working or the new one on disk."""
    old_vault, old = _open(store, key_file, actor)
    new_key = generate_master_key()
    new_vault = Vault(new_key, [old.key, *read_retired_keys(key_file)])
    retired = key_file.with_name(f"{key_file.name}.{short(old_vault.key_id)}.retired")
    staging = key_file.with_name(f"{key_file.name}.{short(new_vault.key_id)}.new")
    had_retired = retired.exists()
    write_key_file(retired, old.key, exclusive=False)
    write_key_file(staging, new_key, exclusive=True)
    try:
        with store.begin() as conn:
            counts = _rotate_in(conn, old_vault, new_vault, actor)
    except BaseException:
        staging.unlink(missing_ok=True)
        if not had_retired:
            retired.unlink(missing_ok=True)
        raise
    if old.from_env and key_file.exists():  # a key file FERRY_MASTER_KEY overrode: keep it, out of the way
        stale = read_master_key_file_quietly(key_file)
        if stale is not None and stale != old.key:
            os.replace(key_file, key_file.with_name(f"{key_file.name}.{os.getpid()}.replaced"))
    os.replace(staging, key_file)
    return Rotation(old_vault.key_id, new_vault.key_id, key_file, retired, old.from_env, new_key, *counts)


def read_master_key_file_quietly(key_file: Path) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(key_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
