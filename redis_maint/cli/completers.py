"""Shell-completion values: job names for `run`, backup IDs from the catalog for `backups ...`.

They run on every <TAB>, in a fresh process, so they stay quiet and quick: no output but the
values, no network, and backup IDs come from the history store without importing a job.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click
from click.shell_completion import CompletionItem

# Enough to choose from; a shell shows no more than this usefully.
MAX_BACKUP_IDS = 200


def job_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from jobs import REGISTRY

    return [
        CompletionItem(name, help=job.description)
        for name, job in REGISTRY.items()
        if name.startswith(incomplete)
    ]


def backup_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Backup IDs in the catalog, newest first; nothing (never an error) when it cannot be read."""
    # A warning (a renamed setting, say) would land in the middle of the user's command line.
    logging.disable(logging.CRITICAL)
    try:
        return [CompletionItem(i, help=status) for i, status in _catalog(ctx) if i.startswith(incomplete)]
    except Exception:
        return []
    finally:
        logging.disable(logging.NOTSET)


def _catalog(ctx: click.Context) -> list[tuple[str, str]]:
    from sqlalchemy import select
    from sqlalchemy.engine import make_url

    from config import load_settings
    from redis_maint.history import db

    settings = load_settings(ctx.find_root().params.get("config_path"))
    url = settings.history_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        return []  # completing must not create a history store
    query = (
        select(db.backups.c.id, db.backups.c.status)
        .order_by(db.backups.c.created_at.desc())
        .limit(MAX_BACKUP_IDS)
    )
    with db.engine_for(url).connect() as conn:
        return [(row.id, row.status) for row in conn.execute(query)]
