"""Alembic's environment: run by `upgrade.upgrade_to_head` (a connection of redis-maint's own, in its
transaction, with the store's lock held) or, to draft a revision, by `upgrade.draft_revision`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.types import TypeDecorator

config = context.config


def _metadata():
    metadata = config.attributes.get("metadata")
    if metadata is None:  # drafting a revision: compare against the models
        from redis_maint.history.db import metadata
    return metadata


def _render_item(kind: str, obj, _autogen_context):
    """Drafts name plain SQLAlchemy types: db.UTCDateTime is a DATETIME column (revisions never
    import the models, so that each keeps the schema it had)."""
    if kind == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{type(obj.impl).__name__}()"
    return False


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.begin() as connection:
            _run_on(connection)
        engine.dispose()
        return
    _run_on(connection)


def _run_on(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=_metadata(),
        render_as_batch=True,  # SQLite alters a table by copying it
        render_item=_render_item,
        compare_type=True,
    )
    with context.begin_transaction():  # the caller's transaction when there is one
        context.run_migrations()


run()
