"""Turn SIGTERM/SIGINT into a cancel request for a run in the main thread (`redis-maint run`).

The daemon already sets the run's cancel event on SIGTERM; a CLI run in the foreground
has nobody to do that, and Python's default would kill it without running `finally`
blocks (AOF-rewrite guard, staging cleanup, multipart abort). Inside this block a signal
sets the event instead, and the job's next checkpoint stops it cleanly.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("redis_maint.run.interrupts")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def signals_cancel(event: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread (the daemon's own handler covers us)
        return

    def handler(signum, _frame):
        log.warning("stop requested: finishing cleanly", extra={"signal": signal.Signals(signum).name})
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
