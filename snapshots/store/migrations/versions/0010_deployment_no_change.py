"""A deployment that found every target already at its release ran nothing: its record says so (``no_change``)
while its state stays ``Success`` — the targets do have the release, so it counts for lifecycle progression,
status and promote exactly as a success does; ``deployment show|list``, ``status`` and the dashboard tell it apart.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deployments') as batch:
        batch.add_column(sa.Column('no_change', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('deployments') as batch:
        batch.drop_column('no_change')
