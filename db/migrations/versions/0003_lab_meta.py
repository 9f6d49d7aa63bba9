"""lab_meta: the database's identity

Revision ID: 0003
Revises: 0004
Create Date: 2026-11-30 02:00:00

One row, database_id = a random uuid, written once. Run folders are named by it (runs/<id>/<run>/),
checkpoints carry it, and workers and runs check it, so a database swapped under a running worker,
or a new database pointed at an old runs folder, is noticed instead of mixing runs up.
"""
import uuid

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        'lab_meta',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('value', sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )
    op.bulk_insert(table, [{'key': 'database_id', 'value': uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table('lab_meta')
