"""Prompted values (``--variable NAME=VALUE``, the ferry API, the Prefect UI form) kept encrypted in the
store, so a flow run carries a reference and never the value: Prefect's database, its API and UI, process
arguments and environments only ever see a deployment id or a bundle id.

Two ways in:

- a deployment record exists (``ferry deploy``, the ferry API): the values are stored under its id in the
  same transaction that creates the record;
- no record yet (the Prefect UI form through ferry's Prefect API proxy): the values are stored as a
  *bundle* under a random id, bound to the flow run Prefect creates, and claimed once by that flow run when
  it creates its record. A second run naming the same bundle (a copy of the parameters) gets nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)

from snapshots.errors import ConflictError, NotFoundError
from snapshots.store import now
from snapshots.store.tables import Timestamp, metadata

prompted_values = Table(
    "prompted_values", metadata,
    Column("id", Integer, primary_key=True),
    Column("deployment_id", Integer, ForeignKey("deployments.id")),
    Column("bundle", String(64)),
    Column("project", String(200), nullable=False),
    Column("flow_run_id", String(64)),
    Column("name", String(500), nullable=False),
    Column("ciphertext", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(200), nullable=False),
    Index("ix_prompted_values_deployment", "deployment_id"),
    Index("ix_prompted_values_bundle", "bundle"),
)
"""One row per prompted value: owned by a deployment record, or (until claimed) by a bundle."""

BUNDLE_PREFIX = "bundle:"


class Cipher(Protocol):
    def encrypt(self, plain: str) -> str: ...

    def decrypt(self, token: str) -> str: ...


def store_for_deployment(conn: Connection, vault: Cipher, deployment_id: int, project: str,
                         values: Mapping[str, str], actor: str) -> None:
    """Keep a deployment's prompted values (call in the transaction that creates its record)."""
    _insert(conn, vault, values, project=project, actor=actor, deployment_id=deployment_id)


def store_bundle(conn: Connection, vault: Cipher, project: str, values: Mapping[str, str], actor: str) -> str:
    """Keep values that arrive before any deployment record exists; returns the reference (``bundle:…``)
    the flow run's parameters carry instead of the values."""
    bundle = secrets.token_urlsafe(24)
    _insert(conn, vault, values, project=project, actor=actor, bundle=bundle)
    return BUNDLE_PREFIX + bundle


def bind_bundle(conn: Connection, ref: str, flow_run_id: str) -> None:
    """The flow run Prefect created for the bundle: only that run may claim it."""
    conn.execute(update(prompted_values).where(prompted_values.c.bundle == _bundle(ref),
                                               prompted_values.c.flow_run_id.is_(None))
                 .values(flow_run_id=flow_run_id))


def discard_bundle(conn: Connection, ref: str) -> None:
    """Prefect refused the run: the values go."""
    conn.execute(delete(prompted_values).where(prompted_values.c.bundle == _bundle(ref),
                                               prompted_values.c.deployment_id.is_(None)))


def bundle_state(conn: Connection, ref: str) -> tuple[str, str | None] | None:
    """(project, bound flow run id) of an unclaimed bundle, or None."""
    row = conn.execute(select(prompted_values.c.project, prompted_values.c.flow_run_id)
                       .where(prompted_values.c.bundle == _bundle(ref),
                              prompted_values.c.deployment_id.is_(None)).limit(1)).first()
    return (row[0], row[1]) if row else None


def claim_bundle(conn: Connection, ref: str, *, deployment_id: int, project: str, flow_run_id: str | None) -> None:
    """Move a bundle's values to the deployment record its flow run created. Refused when the bundle is
    unknown or already claimed, belongs to another project, or was bound to a different flow run."""
    state = bundle_state(conn, ref)
    if state is None:
        raise NotFoundError("the prompted values this run refers to are gone (already used by another run, or "
                            "never stored): start the deployment again")
    owner, bound_run = state
    if owner != project:
        raise ConflictError(f"the prompted values this run refers to were given for {owner}, not {project}")
    if bound_run is not None and bound_run != flow_run_id:
        raise ConflictError("the prompted values this run refers to belong to another flow run: start the "
                            "deployment again")
    conn.execute(update(prompted_values).where(prompted_values.c.bundle == _bundle(ref),
                                               prompted_values.c.deployment_id.is_(None))
                 .values(deployment_id=deployment_id, flow_run_id=flow_run_id))


def reclaim(conn: Connection, vault: Cipher, ref: str, flow_run_id: str | None) -> dict[str, str] | None:
    """The values of a bundle this same flow run already claimed (Prefect's Retry runs the same flow run
    again, with the same parameters); None for any other run."""
    if flow_run_id is None:
        return None
    rows = conn.execute(select(prompted_values.c.name, prompted_values.c.ciphertext)
                        .where(prompted_values.c.bundle == _bundle(ref), prompted_values.c.deployment_id.isnot(None),
                               prompted_values.c.flow_run_id == flow_run_id)
                        .order_by(prompted_values.c.id)).all()
    return {name: vault.decrypt(token) for name, token in rows} or None


def read(conn: Connection, vault: Cipher, deployment_id: int) -> dict[str, str]:
    """A deployment's prompted values, decrypted (in memory only: the executor holds the key)."""
    rows = conn.execute(select(prompted_values.c.name, prompted_values.c.ciphertext)
                        .where(prompted_values.c.deployment_id == deployment_id)
                        .order_by(prompted_values.c.id)).all()
    return {name: vault.decrypt(token) for name, token in rows}


def read_bundle(conn: Connection, vault: Cipher, ref: str) -> dict[str, str]:
    """An unclaimed bundle's values, decrypted."""
    rows = conn.execute(select(prompted_values.c.name, prompted_values.c.ciphertext)
                        .where(prompted_values.c.bundle == _bundle(ref), prompted_values.c.deployment_id.is_(None))
                        .order_by(prompted_values.c.id)).all()
    return {name: vault.decrypt(token) for name, token in rows}


def names(conn: Connection, deployment_id: int) -> list[str]:
    rows = conn.execute(select(prompted_values.c.name).where(prompted_values.c.deployment_id == deployment_id))
    return sorted(r[0] for r in rows)


def reencrypt(conn: Connection, old: Cipher, new: Cipher) -> int:
    """Re-encrypt every prompted value under a new key (``ferry key rotate``). Returns how many."""
    rows = conn.execute(select(prompted_values.c.id, prompted_values.c.ciphertext)).all()
    for row_id, token in rows:
        conn.execute(update(prompted_values).where(prompted_values.c.id == row_id)
                     .values(ciphertext=new.encrypt(old.decrypt(token))))
    return len(rows)


def is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(BUNDLE_PREFIX) and len(value) > len(BUNDLE_PREFIX)


def _bundle(ref: str) -> str:
    if not is_ref(ref):
        raise NotFoundError(f"not a prompted-values reference: {ref[:40]!r}")
    return ref[len(BUNDLE_PREFIX):]


def _insert(conn: Connection, vault: Cipher, values: Mapping[str, str], *, project: str, actor: str,
            deployment_id: int | None = None, bundle: str | None = None) -> None:
    if not values:
        return
    at = now()
    conn.execute(insert(prompted_values), [
        {"deployment_id": deployment_id, "bundle": bundle, "project": project, "name": name,
         "ciphertext": vault.encrypt(str(value)), "created_at": at, "created_by": actor}
        for name, value in values.items()])
