"""Output variables a deployment's scripts set (issue 14, item 1), kept with the deployment record: one row
per (deployment, step, target, name), every value encrypted (``ciphertext``), sensitive ones shown masked.

Not append-only: a retried step replaces its earlier value.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('output_variables',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=200), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('ciphertext', sa.Text(), nullable=False),
    sa.Column('sensitive', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('set_at', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_output_variables_deployment', 'output_variables', ['deployment_id'])


def downgrade() -> None:
    op.drop_index('ix_output_variables_deployment', table_name='output_variables')
    op.drop_table('output_variables')
