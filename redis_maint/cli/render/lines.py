"""The lines under a run's verdict: `label  value` figures, notes and small tables; each job's
renderer registers here, and any other job gets a readable walk of its summary (never JSON)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from redis_maint.cli.render import human

STATUS_STYLE = {
    "succeeded": "bold green",
    "failed": "bold red",
    "running": "bold cyan",
    "skipped": "bold yellow",
    "interrupted": "bold yellow",
    "missed": "bold yellow",
}
PROBLEM = "bold red"
WARN = "yellow"
LABEL_WIDTH = 11
LABEL_INDENT = 2 + LABEL_WIDTH + 1  # where a figure's value starts
SHOWN_ELSEWHERE = ("dry_run", "params", "duration_s")  # the verdict line and "asked for" show these


@dataclass
class Figures:
    """The lines under the verdict: `label  value`, notes, and small tables."""

    verbose: int = 0
    dry_run: bool = False
    items: list[RenderableType] = field(default_factory=list)

    def add(self, label: str, value: Any, style: str | None = None) -> None:
        self.items.append(Text.assemble(f"  {label:<{LABEL_WIDTH}} ", (str(value), style or "")))

    def note(self, text: str, style: str | None = None, indent: int = 4) -> None:
        self.items.append(Text(" " * indent + text, style=style or ""))

    def block(self, renderable: RenderableType) -> None:
        self.items.append(renderable)


Renderer = Callable[[dict[str, Any], Figures], None]
RENDERERS: dict[str, Renderer] = {}


def renders(*jobs: str) -> Callable[[Renderer], Renderer]:
    def register(fn: Renderer) -> Renderer:
        for job in jobs:
            RENDERERS[job] = fn
        return fn

    return register


# ---- any job: a readable walk of its summary (no JSON, no dict dumps) ----


def generic(summary: dict[str, Any], figures: Figures, depth: int = 0) -> None:
    pad = "  " * depth
    for key, value in summary.items():
        if depth == 0 and key in SHOWN_ELSEWHERE:
            continue
        label = pad + key.replace("_", " ")
        if isinstance(value, dict):
            if not value:
                figures.add(label, "none")
                continue
            figures.add(label, "")
            if depth < 2:
                generic(value, figures, depth + 1)
        elif isinstance(value, list):
            _generic_list(label, value, figures)
        else:
            figures.add(label, scalar(key, value))


def _generic_list(label: str, items: list[Any], figures: Figures) -> None:
    if not items:
        figures.add(label, "none")
    elif all(not isinstance(i, dict | list) for i in items):
        figures.add(label, ", ".join(str(i) for i in items))
    else:
        figures.add(label, f"{len(items)}")
        for item in items[:20]:
            if isinstance(item, dict):
                parts = [f"{k} {scalar(k, v)}" for k, v in item.items() if not isinstance(v, dict | list)]
                figures.note("- " + ", ".join(parts), indent=LABEL_INDENT)
        if len(items) > 20:
            figures.note(f"… and {len(items) - 20} more (--json shows all)", indent=LABEL_INDENT)


def scalar(key: str, value: Any) -> str:
    """A value in the unit its key names: `*_s` durations, sizes in bytes, `*_at` times."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if key.endswith("_s") or key == "duration":
            return human.duration(value)
        if key in ("bytes", "size") or key.endswith("_bytes"):
            return human.size(value)
        if key.endswith("_time") and value > 1_000_000_000:  # epoch seconds, e.g. rdb_last_save_time
            from datetime import UTC, datetime

            return _at(datetime.fromtimestamp(value, UTC))
        return human.count(value) if isinstance(value, int) else f"{value:g}"
    if key.endswith("_at") or key in ("since", "paused_since"):
        return _at(value)
    return str(value)


def _at(value: Any) -> str:
    shown = human.when(value)
    return f"{shown} UTC ({human.ago(value)})" if shown else str(value)
