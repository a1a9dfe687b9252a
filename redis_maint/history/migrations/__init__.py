"""The history store's schema changes, as Alembic revisions (`versions/`), run by redis-maint itself.

Every process that opens a store checks its revision with one query (`db.ensure_schema`); only when
it is behind does `upgrade.upgrade_to_head` load Alembic (a few hundred ms of imports) and bring it to
`HEAD`, under the database's write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so
processes starting at once upgrade it once. A store written before migrations existed (tables made
by `create_all`, columns added by hand-rolled ALTER TABLE, no `alembic_version`) is adopted: the
revisions of the tables that era made (0001-0003 and 0005, through adopt.py) skip what is already there
and add the rest.

A new revision, for any change to the tables in db.py: write `versions/NNNN_what.py` with explicit `op`
calls (never `create_all`) and move `HEAD` here. tests/test_migrations.py checks that HEAD is Alembic's
head and that the models and the migrations agree, on SQLite and PostgreSQL. For a first draft of the
`op` calls (it upgrades the scratch store to the previous head, then compares):

    .venv/bin/python -c 'from redis_maint.history.migrations import upgrade; \
        print(upgrade.draft_revision("sqlite:////tmp/draft.db", "what it adds", "NNNN"))'
"""

from __future__ import annotations

import logging

from redis_maint.errors import EXIT_USAGE, HistoryError

# Alembic logs at INFO as it loads and runs ("setup plugin ...", "Context impl SQLiteImpl."); set before
# it is imported. upgrade.py logs what an upgrade did in one line of its own.
logging.getLogger("alembic").setLevel(logging.WARNING)

# The newest revision in versions/: a store at this revision needs no upgrade (checked without Alembic).
HEAD = "0006"


class SchemaNewerThanCodeError(HistoryError):
    """The store was upgraded by a newer redis-maint: this one cannot know its schema. Nothing ran."""

    exit_code = EXIT_USAGE
