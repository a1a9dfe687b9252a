"""What a long job reports as it goes; the CLI may draw it, the daemon ignores it."""

from __future__ import annotations


class Progress:
    def start(self, total: int | None, label: str) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def finish(self) -> None: ...
