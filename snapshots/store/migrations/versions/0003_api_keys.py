"""Scoped API keys for requesters (issue 12, item 2).

Keys are revoked and expired in place, so this table is not append-only; the audit log records each change.
At most one key of a name is active (not revoked): a partial unique index.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'api_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key_id', sa.String(length=16), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('secret_sha256', sa.String(length=64), nullable=False),
        sa.Column('projects', sa.Text(), nullable=False),
        sa.Column('environments', sa.Text(), nullable=False),
        sa.Column('actions', sa.Text(), nullable=False),
        sa.Column('created_at', sa.String(length=32), nullable=False),
        sa.Column('created_by', sa.String(length=200), nullable=False),
        sa.Column('expires_at', sa.String(length=32), nullable=True),
        sa.Column('revoked_at', sa.String(length=32), nullable=True),
        sa.Column('revoked_by', sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key_id'),
    )
    op.create_index('ix_api_keys_active_name', 'api_keys', ['name'], unique=True,
                    sqlite_where=sa.text('revoked_at IS NULL'), postgresql_where=sa.text('revoked_at IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_api_keys_active_name', table_name='api_keys')
    op.drop_table('api_keys')
