"""Signatures on releases and variable-snapshot revisions (chained), the master key's fingerprint (issue 12, items 5-6).

Both tables are history: append-only, with the same triggers as the snapshot tables of 0001.

Revision ID: 0002
Revises: 0001
"""

import importlib
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

TABLES = ("master_keys", "signatures")


def _initial() -> ModuleType:
    """0001's trigger helpers (its module name starts with a digit, so no plain import)."""
    return importlib.import_module("snapshots.store.migrations.versions.0001_initial_store")


def upgrade() -> None:
    op.create_table('master_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('fingerprint')
    )
    op.create_table('signatures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(length=32), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.Column('key_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('subject', 'subject_id', 'key_fingerprint')
    )
    with op.batch_alter_table('signatures', schema=None) as batch_op:
        batch_op.create_index('ix_signatures_subject', ['subject', 'subject_id'], unique=False)
    _initial().append_only_triggers(TABLES)


def downgrade() -> None:
    initial = _initial()
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    else:
        initial.drop_append_only_triggers(TABLES)
    op.drop_table('signatures')
    op.drop_table('master_keys')
