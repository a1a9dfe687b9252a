"""Archive retention: whole generations no longer needed by `archive.window` or the oldest retained backup.

A generation is a base plus every increment after it: nothing inside one can go before the rest. It is
needed while it covers an instant at or after `keep_from` (now - window, or the oldest retained
backup's time if older). The current generation is never pruned. Deletion goes through the target
(a local target never follows a symbolic link: those keys are left and reported).
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from redis_maint.archive import layout
from redis_maint.archive.state import CURRENT, ArchiveState, Generation
from redis_maint.storage import Target
from redis_maint.timeutil import isoformat


def prunable(gens: list[Generation], keep_from: datetime) -> list[Generation]:
    """Generations (oldest first) that end before `keep_from`: the next one's start is their end."""
    out = []
    for gen, nxt in itertools.pairwise(gens):
        if gen.status == CURRENT:
            continue
        next_start = nxt.base_time or nxt.created_at
        if next_start <= keep_from:
            out.append(gen)
    return out


def prune(
    state: ArchiveState,
    target: Target,
    *,
    now: datetime,
    window: timedelta,
    oldest_backup_at: datetime | None,
) -> dict[str, Any]:
    keep_from = now - window
    if oldest_backup_at is not None and oldest_backup_at < keep_from:
        keep_from = oldest_backup_at
    gens = state.generations()
    doomed = prunable(gens, keep_from)
    deleted, refused = 0, []
    for gen in doomed:
        keys = [o.key for o in target.list(layout.generation_prefix(state.instance, gen.generation))]
        left = target.delete(keys)
        deleted += len(keys) - len(left)
        refused += left
    state.mark_pruned([g.generation for g in doomed])
    return {
        "keep_from": isoformat(keep_from),
        "window_s": window.total_seconds(),
        "oldest_backup_at": isoformat(oldest_backup_at),
        "pruned": [g.generation for g in doomed],
        "kept": len(gens) - len(doomed),
        "objects_deleted": deleted,
        "refused_links": refused,
    }
