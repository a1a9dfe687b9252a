"""Run work at the lowest CPU priority, in a thread of its own.

A sweep keeps a core busy parsing sessions. On a small host that core is shared with Redis, and
a Redis preempted mid-turn answers every other client late (measured with `bench/sweep.py`: a
pinging client's p99 fell from ~3.5 ms to ~2 ms). At SCHED_IDLE the kernel runs the work only
when nothing else wants the CPU. The policy belongs to one thread, and an unprivileged thread
may not raise it again, so the work gets a thread that ends with it.

The cost: on a host with no idle CPU at all the work crawls, and a starved thread still holds
Python's GIL between bytecodes, so the daemon's other threads (/healthz) can stall with it.
`jobs.session_sweep.idle_cpu = false` is the way out on such a host.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("redis_maint.idle_cpu")
T = TypeVar("T")


def run_idle(work: Callable[[], T], *, name: str) -> T:
    """`work()` in a new thread at SCHED_IDLE; its result, or its exception raised here.

    The caller waits in `join`, which Python interrupts for signal handlers, so a foreground
    run's SIGTERM still reaches the cancel event that `work` checks."""
    outcome: dict[str, object] = {}

    def target() -> None:
        lower_priority()
        try:
            outcome["result"] = work()
        except BaseException as exc:
            outcome["error"] = exc

    # daemon: an interrupted CLI may exit without waiting for the thread to notice
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]  # type: ignore[return-value]


def lower_priority() -> bool:
    """Put the calling thread at SCHED_IDLE; False where the platform has no such policy."""
    if not hasattr(os, "SCHED_IDLE"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError as exc:  # a seccomp profile may refuse it: the work still runs, only less gently
        log.warning("could not lower the CPU priority", extra={"error": str(exc)})
        return False
    return True
