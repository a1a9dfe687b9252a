"""Operations for the revisions of the pre-migration era (0001-0003), which also adopt old stores.

Before migrations, redis-maint made its tables with `create_all` and added missing columns with
ALTER TABLE (no index, no NOT NULL), at whatever version last opened the store. Such a store has no
`alembic_version` and any mix of those revisions' tables and columns. When the upgrade is adopting
one (`upgrade.py` says so in the Alembic config's attributes), these operations skip what is there
already and add the rest, and note both, so the log says which revision the store matched. On
any other store they are the plain `op` calls. Later revisions use `op` directly.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

# Keys in the Alembic config's attributes.
ADOPTING = "redis_maint.adopting"  # bool: the store predates migrations
FOUND = "redis_maint.found"  # {revision: {"present": [...], "added": [...]}}


def _attributes() -> dict[str, Any]:
    config = op.get_context().config
    return config.attributes if config is not None else {}


def _adopting() -> bool:
    return bool(_attributes().get(ADOPTING))


def _note(revision: str, what: str, present: bool) -> None:
    found = _attributes().setdefault(FOUND, {})
    entry = found.setdefault(revision, {"present": [], "added": []})
    entry["present" if present else "added"].append(what)


def _inspector() -> sa.Inspector:
    return sa.inspect(op.get_bind())


def create_table(revision: str, name: str, *columns: sa.Column, indexes: tuple[str, ...] = ()) -> None:
    """op.create_table plus an index (named ix_<table>_<column>) on each of `indexes`. Adopting a store
    that has the table, each missing column and index is added instead (a store older than this one)."""
    if not (_adopting() and _inspector().has_table(name)):
        op.create_table(name, *columns)
        for column in indexes:
            op.create_index(f"ix_{name}_{column}", name, [column])
        _note(revision, f"table {name}", present=False)
        return
    _note(revision, f"table {name}", present=True)
    for column in columns:
        # As the old ALTER TABLE path did: a column added to a table with rows cannot be NOT NULL.
        add_column(revision, name, sa.Column(column.name, column.type, nullable=True))
    for column in indexes:
        create_index(revision, name, column)


def add_column(revision: str, table: str, column: sa.Column) -> None:
    """op.add_column; adopting, only when the column is not there."""
    if _adopting():
        present = {c["name"] for c in _inspector().get_columns(table)}
        if column.name in present:
            _note(revision, f"column {table}.{column.name}", present=True)
            return
    op.add_column(table, column)
    _note(revision, f"column {table}.{column.name}", present=False)


def create_index(revision: str, table: str, column: str) -> None:
    """op.create_index of ix_<table>_<column>; adopting, only when no index of that name exists (the
    old ALTER TABLE path added columns without their index)."""
    name = f"ix_{table}_{column}"
    if _adopting() and name in {ix["name"] for ix in _inspector().get_indexes(table)}:
        _note(revision, f"index {name}", present=True)
        return
    op.create_index(name, table, [column])
    _note(revision, f"index {name}", present=False)
