"""The evidence chain (ledger, ledger_head, prev_hash/hash on runs and backups) and who/when/under
which settings on runs (os_user, scheduled_for, config_hash).

Rows written before the chain are chained on first use, not here (history/chain.py
`adopt_unchained`): a record holds every column of the row as the code that chains it knows them.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from redis_maint.history.migrations import adopt

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RUNS_COLUMNS = (
    ("prev_hash", sa.String(64)),
    ("hash", sa.String(64)),
    ("os_user", sa.String(128)),
    ("scheduled_for", sa.DateTime()),
    ("config_hash", sa.String(64)),
)
BACKUPS_COLUMNS = (("prev_hash", sa.String(64)), ("hash", sa.String(64)))


def upgrade() -> None:
    for name, type_ in RUNS_COLUMNS:
        adopt.add_column(revision, "runs", sa.Column(name, type_))
    for name, type_ in BACKUPS_COLUMNS:
        adopt.add_column(revision, "backups", sa.Column(name, type_))
    adopt.create_table(
        revision,
        "ledger",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False
        ),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(128), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        indexes=("ref",),
    )
    adopt.create_table(
        revision,
        "ledger_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ledger_head")
    op.drop_table("ledger")
    with op.batch_alter_table("backups") as batch:
        for name, _ in reversed(BACKUPS_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("runs") as batch:
        for name, _ in reversed(RUNS_COLUMNS):
            batch.drop_column(name)
