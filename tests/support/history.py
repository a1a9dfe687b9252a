"""The history store the code under test writes to (the autouse fixture points it into tmp_path)."""

from __future__ import annotations

import os

from redis_maint.history.runs import HistoryStore


def current_store() -> HistoryStore:
    """A store on this test's REDIS_MAINT_HISTORY_URL, as the CLI and the daemon open it."""
    return HistoryStore(os.environ["REDIS_MAINT_HISTORY_URL"])
