"""Signatures by the executor's key over releases and their variable-snapshot revisions, chained.

A plain sha256 only shows that a row was changed by someone who did not also recompute the digest; anyone
with write access to the database can do both. The signature is an HMAC-SHA256 under a key derived from the
master key (purpose "signing"), which only the executor holds, over the row's canonical JSON, its digest and
the columns that place it (project, version, release, revision) — and, for a variable-snapshot revision, the
signature of the revision before it (revision 1 chains to the release's own signature). So an edited row, a
re-digested row and an inserted revision all fail the check; so does a removed revision, which breaks the
chain of every later one.

Each signature names the key that made it (its fingerprint). A key rotation re-signs every row under the
new key (after checking it under the old one), so old releases verify with the new key alone, and with the
retired key while it is kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select

from snapshots.canonical import canonical_json
from snapshots.store.crypto import Vault, short
from snapshots.store.engine import now
from snapshots.store.tables import signatures

RELEASES, VARIABLE_SNAPSHOTS = "releases", "variable_snapshots"


@dataclass(frozen=True)
class ReleaseRow:
    """What a release signature covers."""

    id: int
    project: str
    version: str
    project_revision_id: int
    text: str
    digest: str


@dataclass(frozen=True)
class SnapshotRow:
    """What a variable-snapshot signature covers (besides the previous signature)."""

    id: int
    release_id: int
    revision: int
    project_revision_id: int
    text: str
    digest: str


def release_message(row: ReleaseRow) -> bytes:
    return b"ferry release v1\n" + canonical_json(
        {"project": row.project, "version": row.version, "project_revision_id": row.project_revision_id,
         "digest": row.digest, "snapshot": row.text}).encode("utf-8")


def snapshot_message(row: SnapshotRow, previous_signature: str) -> bytes:
    return b"ferry variable snapshot v1\n" + canonical_json(
        {"release_id": row.release_id, "revision": row.revision, "project_revision_id": row.project_revision_id,
         "digest": row.digest, "document": row.text, "previous": previous_signature}).encode("utf-8")


def _insert(conn: Connection, subject: str, subject_id: int, key_id: str, signature: str) -> None:
    conn.execute(insert(signatures).values(subject=subject, subject_id=subject_id, key_fingerprint=key_id,
                                           signature=signature, created_at=now()))


def sign_release(conn: Connection, vault: Vault, row: ReleaseRow) -> str:
    signature = vault.sign(release_message(row))
    _insert(conn, RELEASES, row.id, vault.key_id, signature)
    return signature


def sign_snapshot(conn: Connection, vault: Vault, row: SnapshotRow, previous_signature: str) -> str:
    signature = vault.sign(snapshot_message(row, previous_signature))
    _insert(conn, VARIABLE_SNAPSHOTS, row.id, vault.key_id, signature)
    return signature


def sign_chain(conn: Connection, vault: Vault, release: ReleaseRow, snapshots: Sequence[SnapshotRow]) -> str:
    """Sign a release and all its revisions under the vault's current key; returns the last signature."""
    signature = sign_release(conn, vault, release)
    for snap in snapshots:
        signature = sign_snapshot(conn, vault, snap, signature)
    return signature


def load(conn: Connection, subject: str, ids: Sequence[int]) -> dict[int, dict[str, str]]:
    """{row id: {key fingerprint: signature}} for the given rows."""
    found: dict[int, dict[str, str]] = defaultdict(dict)
    if ids:
        rows = conn.execute(select(signatures.c.subject_id, signatures.c.key_fingerprint, signatures.c.signature)
                            .where(signatures.c.subject == subject, signatures.c.subject_id.in_(list(ids))))
        for row in rows:
            found[row.subject_id][row.key_fingerprint] = row.signature
    return dict(found)


def check_chain(vault: Vault, release: ReleaseRow, release_signatures: dict[str, str],
                snapshots: Sequence[tuple[SnapshotRow, dict[str, str]]]) -> tuple[str | None, list[str]]:
    """Find a key this vault holds under which the whole chain verifies.

    Returns (key fingerprint, []) when one does, else (None, problems) described under the key that signed
    the most of the chain (the current key when nothing is signed by a held key)."""
    best: tuple[int, list[str]] | None = None
    for key_id in vault.signing_keys():
        problems: list[str] = []
        good = 0
        previous = release_signatures.get(key_id)
        if previous is None:
            problems.append(_missing("the release snapshot", release_signatures))
        elif not vault.check_signature(key_id, release_message(release), previous):
            problems.append("the release snapshot does not match its signature")
        else:
            good += 1
        for snap, sigs in snapshots:
            signature = sigs.get(key_id)
            if signature is None:
                problems.append(_missing(f"variable snapshot revision {snap.revision}", sigs))
            elif previous is None or not vault.check_signature(key_id, snapshot_message(snap, previous), signature):
                problems.append(f"variable snapshot revision {snap.revision} does not match its signature "
                                "(edited, forged or out of chain)")
            else:
                good += 1
            previous = signature
        if not problems:
            return key_id, []
        if best is None or good > best[0]:
            best = (good, problems)
    assert best is not None
    return None, best[1]


def _missing(what: str, sigs: dict[str, str]) -> str:
    if not sigs:
        return f"{what} is not signed by the executor's key"
    keys = ", ".join(short(k) for k in sorted(sigs))
    return f"{what} is signed only by key {keys}, which this executor does not hold"
