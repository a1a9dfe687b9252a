"""The fencing token of the archiver that uploaded each AOF segment: part of the segment's key, so an
upload still in flight when its archiver lost the lease never lands over the new holder's segment.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("archive_segments", sa.Column("fence", sa.BigInteger()))


def downgrade() -> None:
    op.drop_column("archive_segments", "fence")
