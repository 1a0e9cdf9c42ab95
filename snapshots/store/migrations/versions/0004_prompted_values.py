"""Prompted values kept encrypted in the store; flows receive a reference (issue 12, item 4).

Not append-only: a bundle's rows move to the deployment record that claims them.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('prompted_values',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=True),
    sa.Column('bundle', sa.String(length=64), nullable=True),
    sa.Column('project', sa.String(length=200), nullable=False),
    sa.Column('flow_run_id', sa.String(length=64), nullable=True),
    sa.Column('name', sa.String(length=500), nullable=False),
    sa.Column('ciphertext', sa.Text(), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_prompted_values_deployment', 'prompted_values', ['deployment_id'])
    op.create_index('ix_prompted_values_bundle', 'prompted_values', ['bundle'])


def downgrade() -> None:
    op.drop_index('ix_prompted_values_bundle', table_name='prompted_values')
    op.drop_index('ix_prompted_values_deployment', table_name='prompted_values')
    op.drop_table('prompted_values')
