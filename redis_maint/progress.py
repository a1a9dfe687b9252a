"""What a long wait reports as it goes; the CLI may draw it, the daemon ignores it.

Infrastructure takes a Progress (or plain callbacks) as an explicit argument and never asks
where it is drawn. This base class draws nothing, so it is also the "no progress" default.
"""

from __future__ import annotations

from typing import Literal

# What a total counts: a bar over bytes shows sizes, a rate and an ETA; keys show keys/s.
Unit = Literal["bytes", "keys", "items"]


class Progress:
    def start(self, total: int | None, label: str, unit: Unit = "items") -> None:
        """Begin a wait of `total` units (None: unknown, only the elapsed time is shown).

        Calling it again begins a new wait: the previous one is finished first."""

    def advance(self, n: int = 1) -> None:
        """`n` more units done since the last call."""

    def finish(self) -> None:
        """The wait is over (called on failure too); a second call does nothing."""


class Meter:
    """Turns absolute readings (keys processed so far, bytes loaded) into `advance` steps, and starts
    the wait on the first reading: with a total when one is known, else as an elapsed-time wait."""

    def __init__(self, progress: Progress | None, label: str, unit: Unit) -> None:
        self.progress = progress or Progress()
        self.label, self.unit = label, unit
        self._done = 0
        self._total: int | None = None
        self._started = False

    def reading(self, done: int | None, total: int | None) -> None:
        if total and total != self._total:  # a total appears (or changes): a bar of its own
            self.progress.start(total, self.label, self.unit)
            self._total, self._done, self._started = total, 0, True
        elif not self._started:
            self.progress.start(None, self.label, self.unit)
            self._started = True
        if done is not None and self._total and done > self._done:
            self.progress.advance(done - self._done)
            self._done = done

    def finish(self) -> None:
        if self._started:
            self.progress.finish()
