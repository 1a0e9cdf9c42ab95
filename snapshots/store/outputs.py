"""Output variables a deployment's scripts set (``set_octopusvariable``), kept with the deployment record.

One row per (deployment, step, target, name): a step that runs again — a guided-failure retry, an automatic
retry — replaces its earlier value. Every value is stored encrypted with the store's key (in a ``ciphertext``
column, so ``ferry key rotate`` and the key check cover the table without knowing it); a sensitive one is shown
masked. Rows change as a deployment runs, so the table is not append-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import (
    Boolean,
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
)

from snapshots.store import now
from snapshots.store.tables import Timestamp, metadata
from snapshots.variables.masking import MASK

output_variables = Table(
    "output_variables", metadata,
    Column("id", Integer, primary_key=True),
    Column("deployment_id", Integer, ForeignKey("deployments.id"), nullable=False),
    Column("step", String(200), nullable=False),
    Column("target", String(200)),
    Column("name", String(200), nullable=False),
    Column("ciphertext", Text, nullable=False),
    Column("sensitive", Boolean, nullable=False, server_default="0"),
    Column("set_at", Timestamp, nullable=False),
    Index("ix_output_variables_deployment", "deployment_id"),
)
"""``target`` is NULL for a step that ran once on the worker."""


class Cipher(Protocol):
    def encrypt(self, plain: str) -> str: ...

    def decrypt(self, token: str) -> str: ...


@dataclass(frozen=True)
class Output:
    step: str
    target: str | None
    name: str
    value: str
    sensitive: bool
    set_at: str

    def as_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """For ``deployment show``: a sensitive value as ``********`` unless ``reveal``."""
        return {"step": self.step, "target": self.target, "name": self.name,
                "value": self.value if reveal or not self.sensitive else MASK, "sensitive": self.sensitive,
                "set_at": self.set_at}


def record(conn: Connection, vault: Cipher, deployment_id: int, step: str, target: str | None, name: str,
           value: str, sensitive: bool) -> Output:
    """Keep one value, replacing what the same step set under that name on that target before."""
    c = output_variables.c
    conn.execute(delete(output_variables).where(
        c.deployment_id == deployment_id, c.step == step, c.name == name,
        c.target.is_(None) if target is None else c.target == target))
    at = now()
    conn.execute(insert(output_variables).values(
        deployment_id=deployment_id, step=step, target=target, name=name,
        ciphertext=vault.encrypt(value), sensitive=sensitive, set_at=at))
    return Output(step, target, name, value, sensitive, at)


def for_deployment(conn: Connection, deployment_id: int, vault: Cipher, *, reveal: bool = False) -> list[Output]:
    """A deployment's outputs in the order they were set; a sensitive value is decrypted only with ``reveal``
    (the executor reading them back), else it is ``********``."""
    rows = conn.execute(select(output_variables).where(output_variables.c.deployment_id == deployment_id)
                        .order_by(output_variables.c.id))
    return [Output(r.step, r.target, r.name, vault.decrypt(r.ciphertext) if reveal or not r.sensitive else MASK,
                   bool(r.sensitive), r.set_at) for r in rows]
