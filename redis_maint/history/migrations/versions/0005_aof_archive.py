"""The AOF archiver: its position per instance and generation (archive_state) and the segments it
uploaded (archive_segments).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from redis_maint.history.migrations import adopt

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    adopt.create_table(
        revision,
        "archive_state",
        sa.Column("instance", sa.String(128), primary_key=True),
        sa.Column("generation", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("backup_id", sa.String(64)),
        sa.Column("base_name", sa.String(255)),
        sa.Column("base_sha256", sa.String(64)),
        sa.Column("base_time", sa.DateTime()),
        sa.Column("incr_file", sa.String(255)),
        sa.Column("incr_inode", sa.BigInteger()),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("safe_until", sa.DateTime()),
        sa.Column("last_segment_at", sa.DateTime()),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime()),
        sa.Column("fence", sa.BigInteger()),
        indexes=("status",),
    )
    adopt.create_table(
        revision,
        "archive_segments",
        sa.Column("instance", sa.String(128), primary_key=True),
        sa.Column("generation", sa.String(64), primary_key=True),
        sa.Column("incr_file", sa.String(255), primary_key=True),
        sa.Column("offset", sa.BigInteger(), primary_key=True),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("first_ts", sa.BigInteger()),
        sa.Column("last_ts", sa.BigInteger()),
        sa.Column("uploaded_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("archive_segments")
    op.drop_table("archive_state")
