"""Library variable sets and step templates (issue 14 item 4): one append-only table of revisions, each
a document applied with ``ferry apply`` (``kind`` "variable_set" or "step_template").

Revision ID: 0008
Revises: 0007
"""

import importlib
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TABLES = ("library_revisions",)


def _initial() -> ModuleType:
    """0001's trigger helpers (its module name starts with a digit, so no plain import)."""
    return importlib.import_module("snapshots.store.migrations.versions.0001_initial_store")


def upgrade() -> None:
    op.create_table('library_revisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('content_digest', sa.String(length=64), nullable=False),
    sa.Column('document', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=1000), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'name', 'revision')
    )
    _initial().append_only_triggers(TABLES)


def downgrade() -> None:
    initial = _initial()
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    else:
        initial.drop_append_only_triggers(TABLES)
    op.drop_table('library_revisions')
