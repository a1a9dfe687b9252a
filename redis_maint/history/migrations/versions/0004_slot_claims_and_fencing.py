"""Several sidecars on one history: one claim per scheduled slot (slot_claims), fencing tokens that
only grow per lease (lease_fences, leases.fence) and the token a run ran under (runs.fence).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("fence", sa.BigInteger()))
    op.add_column("leases", sa.Column("fence", sa.BigInteger()))
    op.create_table(
        "lease_fences",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("token", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "slot_claims",
        sa.Column("job", sa.String(64), primary_key=True),
        sa.Column("scope", sa.String(255), primary_key=True),
        sa.Column("scheduled_for", sa.DateTime(), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("run_id", sa.Integer()),
        sa.Column("fence", sa.BigInteger()),
        sa.Column("owner_host", sa.String(255)),
        sa.Column("owner_pid", sa.Integer()),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("slot_claims")
    op.drop_table("lease_fences")
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("fence")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("fence")
