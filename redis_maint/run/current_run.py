"""Which run the current thread is executing, for infrastructure that must name its owner.

The run path sets it around the job; code deep inside a job (the AOF-rewrite guard's note)
reads it instead of having every caller thread a run id through its arguments.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class RunRef:
    job: str
    run_id: int


current_run: ContextVar[RunRef | None] = ContextVar("current_run", default=None)
