"""workers.stale_after_s: each worker's --stale-after, so the dashboard's "dead" uses the real limit

Revision ID: 0002
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: workers registered before this column existed fall back to the default limit.
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stale_after_s', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_column('stale_after_s')
