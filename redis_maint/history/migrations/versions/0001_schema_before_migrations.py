"""The schema before migrations (as of commit 2fe5dbb): runs, leases, backups, daemons.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from redis_maint.history.migrations import adopt

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    adopt.create_table(
        revision,
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(128)),
        sa.Column("host", sa.String(255)),
        sa.Column("pid", sa.Integer()),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.JSON()),
        sa.Column("error", sa.Text()),
        indexes=("job", "started_at", "status"),
    )
    adopt.create_table(
        revision,
        "leases",
        sa.Column("job", sa.String(64), primary_key=True),
        sa.Column("owner_host", sa.String(255), nullable=False),
        sa.Column("owner_pid", sa.Integer(), nullable=False),
        sa.Column("owner_token", sa.String(64), nullable=False),
        sa.Column("run_id", sa.Integer()),
        sa.Column("acquired_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    adopt.create_table(
        revision,
        "backups",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.Integer()),
        sa.Column("instance", sa.String(128), nullable=False),
        sa.Column("target", sa.String(1024), nullable=False),
        sa.Column("target_root", sa.String(1024), nullable=False),
        sa.Column("location", sa.String(512), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("completed_at", sa.DateTime()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger()),
        sa.Column("files", sa.JSON()),
        sa.Column("redis_version", sa.String(32)),
        sa.Column("server", sa.JSON()),
        sa.Column("checks", sa.JSON()),
        sa.Column("verified_at", sa.DateTime()),
        sa.Column("verify_result", sa.JSON()),
        sa.Column("pruned_at", sa.DateTime()),
        sa.Column("error", sa.Text()),
        sa.Column("events", sa.JSON()),
        sa.Column("kept", sa.Boolean()),
        sa.Column("kept_reason", sa.Text()),
        sa.Column("kept_by", sa.String(128)),
        sa.Column("kept_at", sa.DateTime()),
        indexes=("run_id", "instance", "created_at", "status"),
    )
    adopt.create_table(
        revision,
        "daemons",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_s", sa.Float(), nullable=False),
        sa.Column("stopped_at", sa.DateTime()),
        sa.Column("stop_reason", sa.Text()),
        sa.Column("timezone", sa.String(64)),
        sa.Column("schedules", sa.JSON()),
        indexes=("heartbeat_at",),
    )


def downgrade() -> None:
    for table in ("daemons", "backups", "leases", "runs"):
        op.drop_table(table)
