"""run tags and note

Revision ID: 0005
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # add_column works on SQLite without copying the table (batch mode would copy it).
    op.add_column('runs', sa.Column('tags', sa.JSON(), nullable=True))
    op.add_column('runs', sa.Column('note', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('note')
        batch_op.drop_column('tags')
