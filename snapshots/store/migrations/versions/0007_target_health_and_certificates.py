"""Target health checks (issue 15 item 1) and certificates (issue 15 item 4).

``target_health``: one row per check of one target (``ferry target check`` or the served schedule): reachable,
latency, free disk, clock skew, PowerShell version, the releases its journal holds, or the reason it failed.
History, but pruned (old checks are deleted), so not append-only.

``certificates``: one row per certificate content a ``ferry apply`` met (name, thumbprint, subject, validity);
the PEM certificate chain and private key are Fernet ``ciphertext`` under the master key (the key check and
``ferry key rotate`` find the column by its name, as for prompted values), never plain.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('target_health',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=False),
    sa.Column('checked_at', sa.String(length=32), nullable=False),
    sa.Column('reachable', sa.Boolean(), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('free_bytes', sa.BigInteger(), nullable=True),
    sa.Column('clock_skew_s', sa.Float(), nullable=True),
    sa.Column('powershell', sa.String(length=100), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('holds', sa.Text(), nullable=True),
    sa.Column('checked_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_target_health_target', 'target_health', ['target', 'checked_at'])
    op.create_table('certificates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('thumbprint', sa.String(length=40), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('issuer', sa.Text(), nullable=False),
    sa.Column('not_before', sa.String(length=32), nullable=False),
    sa.Column('not_after', sa.String(length=32), nullable=False),
    sa.Column('has_key', sa.Boolean(), nullable=False),
    sa.Column('ciphertext', sa.Text(), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_certificates_name', 'certificates', ['name'])


def downgrade() -> None:
    op.drop_index('ix_certificates_name', table_name='certificates')
    op.drop_table('certificates')
    op.drop_index('ix_target_health_target', table_name='target_health')
    op.drop_table('target_health')
