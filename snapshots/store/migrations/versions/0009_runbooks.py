"""Runbook runs (issue 14, item 3) are deployment records of their own ``kind``: they take the same concurrency
slots, record results, outputs and who asked like a deployment, but "the release an environment holds"
(rollback, promote, status) looks at deployments only. ``runbook`` names the runbook a run ran.

A runbook snapshot itself is a signed row of ``releases`` (+ its variable snapshot) under the reserved
project name ``<project> :: runbook <name>``: append-only, digested, signed and re-signed by a key rotation
like any release, without a table of its own.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deployments') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=16), server_default='deployment', nullable=False))
        batch.add_column(sa.Column('runbook', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deployments') as batch:
        batch.drop_column('runbook')
        batch.drop_column('kind')
