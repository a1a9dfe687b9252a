"""Redis Cluster backups: each shard backup's cluster backup and node (backups.cluster_id, .shard)
and the claim on writing a cluster manifest (cluster_backups).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from redis_maint.history.migrations import adopt

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    adopt.add_column(revision, "backups", sa.Column("cluster_id", sa.String(64)))
    adopt.add_column(revision, "backups", sa.Column("shard", sa.JSON()))
    adopt.create_index(revision, "backups", "cluster_id")
    adopt.create_table(
        revision,
        "cluster_backups",
        sa.Column("instance", sa.String(128), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("claimed_by_run", sa.Integer()),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.Column("written_at", sa.DateTime()),
        sa.Column("target_root", sa.String(1024)),
        sa.Column("location", sa.String(512)),
        sa.Column("sha256", sa.String(64)),
        sa.Column("shards", sa.JSON()),
    )


def downgrade() -> None:
    op.drop_table("cluster_backups")
    op.drop_index("ix_backups_cluster_id", table_name="backups")
    with op.batch_alter_table("backups") as batch:
        batch.drop_column("shard")
        batch.drop_column("cluster_id")
