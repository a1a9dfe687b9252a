"""Listings, kubectl-style: `-o table|wide|tsv|csv|json`, `--json` as the exact alias it always was.

table: fits the terminal. Columns that must stay whole (ids, times) never fold or shrink; the others
shrink (ellipsis, or wrap for long text), then drop, least useful first. wide: every column, each at
its full width. tsv/csv: every column, machine values (ISO times, bytes), a header of key names.
Off a terminal the default is tsv, so `| cut -f1` and `| awk` work without a flag.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from redis_maint.cli.modes import MODES, mode_for, output_option, stdout_is_tty  # noqa: F401 - re-exported
from redis_maint.cli.render.console import print_trimmed, stdout_console, terminal_width

GAP = 2  # blanks between two table columns
MIN_SHRUNK = 8  # a shrinkable column keeps at least this many cells (or its header)


@dataclass(frozen=True)
class Column:
    key: str  # header in tsv/csv: the machine name (the JSON key where there is one)
    title: str  # header in tables
    human: Callable[[dict[str, Any]], Any]  # cell in table/wide
    raw: Callable[[dict[str, Any]], Any] | None = None  # value in tsv/csv (default: row[key])
    whole: bool = False  # ids and times: never folded, shrunk or dropped
    drop: int = 0  # when the table does not fit, higher numbers go first; 0 = never dropped
    wide: bool = False  # only in -o wide (and tsv/csv)
    wrap: bool = False  # long text: wrap inside its width instead of an ellipsis
    style: Callable[[dict[str, Any]], str | None] | None = None  # e.g. red for a failure
    human_only: bool = False  # relative times ("3 h ago"): a pipe wants the facts, not this

    def machine(self, row: dict[str, Any]) -> Any:
        return self.raw(row) if self.raw else row.get(self.key)


def emit(mode: str, columns: Sequence[Column], rows: Sequence[dict[str, Any]], as_json: Any = None) -> None:
    """One listing in the chosen mode; `as_json` is the object `--json` prints (the contract)."""
    if mode == "json":
        from redis_maint.cli.output import emit_json

        emit_json(as_json if as_json is not None else list(rows))
    elif mode in ("tsv", "csv"):
        write_rows(mode, [c for c in columns if not c.human_only], rows)
    else:
        print_table(columns, rows, wide=mode == "wide")


def write_rows(mode: str, columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> None:
    """tsv or csv: a header of key names, then machine values."""
    if mode == "tsv":
        write_tsv([c.key for c in columns], [[c.machine(r) for c in columns] for r in rows])
    elif mode == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([c.key for c in columns])
        writer.writerows([[_plain(c.machine(r)) for c in columns] for r in rows])


def write_tsv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    out = ["\t".join(header)] + ["\t".join(tsv_cell(v) for v in row) for row in rows]
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()


def tsv_cell(value: Any) -> str:
    """One field: no tab or newline can break a row (escaped as \\t, \\n, like PostgreSQL's text COPY)."""
    text = _plain(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, default=str)
    return str(value)


def print_table(columns: Sequence[Column], rows: Sequence[dict[str, Any]], *, wide: bool = False) -> None:
    shown = [c for c in columns if wide or not c.wide]
    cells = [[_cell(c, r) for c in shown] for r in rows]
    natural = [
        max([cell_len(c.title)] + [_longest_line(row[i]) for row in cells]) for i, c in enumerate(shown)
    ]
    # Fitted only on a terminal: `-o table` into a pipe keeps every cell whole.
    limit = terminal_width() if stdout_is_tty() and not wide else None
    keep, widths = fit(shown, natural, limit)
    table = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False, header_style="bold")
    for i in keep:
        c = shown[i]
        table.add_column(
            c.title, width=widths[i], no_wrap=not c.wrap, overflow="fold" if c.wrap else "ellipsis"
        )
    for r, row in zip(rows, cells, strict=True):
        table.add_row(*(_styled(shown[i], r, row[i]) for i in keep))
    total = sum(widths[i] for i in keep) + GAP * (len(keep) - 1) + 1
    print_trimmed(stdout_console(width=max(total, limit or 0)), table)


def fit(columns: Sequence[Column], natural: list[int], limit: int | None) -> tuple[list[int], list[int]]:
    """Which columns to show and how wide: shrink the shrinkable ones (widest first), then drop."""
    keep = list(range(len(columns)))
    while True:
        widths = list(natural)
        if limit is None or _shrink(columns, keep, widths, limit):
            return keep, widths
        droppable = [i for i in keep if columns[i].drop and not columns[i].whole]
        if not droppable:
            return keep, widths  # ids and times alone are wider than the terminal: it wraps them
        keep.remove(max(droppable, key=lambda i: (columns[i].drop, i)))


def _shrink(columns: Sequence[Column], keep: list[int], widths: list[int], limit: int) -> bool:
    """Narrow shrinkable columns, widest first, until the row fits `limit`; False if it cannot."""
    floor = {
        i: min(widths[i], max(MIN_SHRUNK, cell_len(columns[i].title))) for i in keep if not columns[i].whole
    }
    excess = sum(widths[i] for i in keep) + GAP * (len(keep) - 1) - limit + 1
    while excess > 0:
        candidates = [i for i in floor if widths[i] > floor[i]]
        if not candidates:
            return False
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return True


def _cell(column: Column, row: dict[str, Any]) -> str:
    value = column.human(row)
    return "" if value is None else str(value)


def _longest_line(text: str) -> int:
    return max((cell_len(line) for line in text.splitlines()), default=0)


def _styled(column: Column, row: dict[str, Any], text: str) -> Text:
    style = column.style(row) if column.style else None
    return Text(text, style=style or "")
