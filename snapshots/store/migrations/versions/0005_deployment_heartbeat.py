"""A heartbeat on the deployment record (issue 13, item 7): the running flow stamps ``heartbeat_at`` every
few seconds and keeps the ids of the Prefect concurrency leases it holds in ``leases``, so the next
deployment to the environment knows within seconds that a Running record's process is gone and frees its
slots, instead of waiting out the 60 s lease.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deployments') as batch:
        batch.add_column(sa.Column('heartbeat_at', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('leases', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deployments') as batch:
        batch.drop_column('leases')
        batch.drop_column('heartbeat_at')
