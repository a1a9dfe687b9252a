"""Progress bars for people: on stderr, on a terminal only, and only for waits that last.

A bar appears once a wait has lasted SHOW_AFTER_S, so quick steps never flash one (nor leave
escape codes in a terminal's scrollback), and it is erased when the wait ends. Byte waits show
sizes, a rate and an ETA in binary units; key waits show keys/s.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from redis_maint.progress import Progress, Unit

SHOW_AFTER_S = 1.0
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; whole bytes below 1 KiB."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in _BINARY[1:]:
        n /= 1024
        if n < 1024 or unit == _BINARY[-1]:
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def human_count(n: float) -> str:
    """950 -> '950', 45_210 -> '45.2k', 1_300_000 -> '1.3M'."""
    if n < 1000:
        return f"{n:.0f}"
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def human_rate(per_s: float | None, unit: str) -> str:
    """'12.3 MiB/s' for bytes, '45.2k keys/s' otherwise; '? keys/s' before there is a rate."""
    if unit == "bytes":
        return "? B/s" if per_s is None else f"{human_bytes(per_s)}/s"
    return f"? {unit}/s" if per_s is None else f"{human_count(per_s)} {unit}/s"


def human_eta(seconds: float | None) -> str:
    """'eta 0:07', 'eta 12:05', 'eta 2:03:04'; 'eta ?' while unknown."""
    if seconds is None:
        return "eta ?"
    minutes, secs = divmod(max(round(seconds), 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"eta {hours}:{minutes:02d}:{secs:02d}" if hours else f"eta {minutes}:{secs:02d}"


def _columns(total: int | None, unit: Unit) -> list[Any]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(human_rate(task.speed, unit))

    class Eta(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(human_eta(task.time_remaining))

    label = TextColumn("{task.description}")
    if total is None:  # nothing to measure against: show that it is alive and for how long
        return [SpinnerColumn(), label, TimeElapsedColumn()]
    done = (
        DownloadColumn(binary_units=True)
        if unit == "bytes"
        else TextColumn(f"{{task.completed:,.0f}}/{{task.total:,.0f}} {unit}")
    )
    return [label, BarColumn(), done, Rate(), Eta()]


class BarProgress(Progress):
    """A rich progress bar on stderr, drawn once a wait has lasted `show_after` seconds."""

    def __init__(self, show_after: float = SHOW_AFTER_S, console: Any = None) -> None:
        self._show_after = show_after
        self._console = console
        self._lock = threading.Lock()
        self._bar: Any = None
        self._task: Any = None
        self._timer: threading.Timer | None = None
        self._shown = False

    def start(self, total: int | None, label: str, unit: Unit = "items") -> None:
        from rich.console import Console
        from rich.progress import Progress as RichProgress

        self.finish()
        console = self._console or Console(stderr=True)
        bar = RichProgress(*_columns(total, unit), console=console, transient=True)
        timer = threading.Timer(self._show_after, self._show)
        timer.daemon = True
        with self._lock:
            self._bar, self._task, self._timer, self._shown = (
                bar,
                bar.add_task(label, total=total),
                timer,
                False,
            )
        timer.start()

    def _show(self) -> None:
        with self._lock:
            if self._bar is not None and not self._shown:
                self._bar.start()
                self._shown = True

    def advance(self, n: int = 1) -> None:
        bar = self._bar  # callbacks may come from a worker thread (the sweep's idle thread)
        if bar is not None:
            bar.advance(self._task, n)

    def finish(self) -> None:
        with self._lock:
            bar, timer, shown = self._bar, self._timer, self._shown
            self._bar, self._timer, self._shown = None, None, False
        if timer is not None:
            timer.cancel()
        if bar is not None and shown:
            bar.stop()


def wants_progress(as_json: bool, output: str | None = None) -> bool:
    """Bars only for people: not with --json or `-o` other than table, and only on a terminal
    that can redraw a line (stderr a TTY, TERM not dumb)."""
    if as_json or output not in (None, "table"):
        return False
    return sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"


def progress_for(as_json: bool, output: str | None = None) -> Progress:
    return BarProgress() if wants_progress(as_json, output) else Progress()
