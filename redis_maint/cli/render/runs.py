"""A run for people: a one-line verdict, then the figures that matter for its job.

`run JOB`, `sessions sweep|delete`, `backups verify` and `history show RUN_ID` all render a run's
history row (its `--json` object) through here, so a past run reads exactly like a fresh one.
"""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.text import Text

from redis_maint.cli.render import diagnose_view as _diagnose_renderer  # noqa: F401  (registers itself)
from redis_maint.cli.render import figures as _job_renderers  # noqa: F401  (they register themselves)
from redis_maint.cli.render import human
from redis_maint.cli.render.lines import (
    LABEL_WIDTH,
    PROBLEM,
    RENDERERS,
    SHOWN_ELSEWHERE,
    STATUS_STYLE,
    Figures,
    generic,
    scalar,
)


def render_run(row: dict[str, Any], verbose: int = 0) -> list[RenderableType]:
    """The verdict line first, the error (highlighted), then the job's own figures."""
    summary = row.get("summary") or {}
    figures = Figures(verbose=verbose, dry_run=bool(summary.get("dry_run")))
    out: list[RenderableType] = [verdict(row, figures.dry_run)]
    if row.get("error"):
        out.append(Text.assemble((f"  {'error':<{LABEL_WIDTH}} ", PROBLEM), (str(row["error"]), PROBLEM)))
    if any(k not in SHOWN_ELSEWHERE for k in summary):
        _render_body(row.get("job", ""), summary, figures)
    if summary.get("params"):
        figures.add("asked for", ", ".join(f"{k} {scalar(k, v)}" for k, v in summary["params"].items()))
    return out + figures.items


def _render_body(job: str, body: dict[str, Any], figures: Figures) -> None:
    renderer = RENDERERS.get(job, generic)
    before = len(figures.items)
    try:
        renderer(body, figures)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        # A row written by another version of a job: show what it holds rather than nothing.
        del figures.items[before:]
        generic(body, figures)


def verdict(row: dict[str, Any], dry_run: bool = False) -> Text:
    """`backup (dry run): succeeded in 669 ms · run 2, manual by alice, 3 h ago`."""
    status = row.get("status", "?")
    took = human.took(row)
    if status == "running" and human.parse_time(row.get("started_at")):
        how = f" for {human.duration((_now() - human.parse_time(row['started_at'])).total_seconds())}"
    else:
        how = f" in {human.duration(took)}" if took is not None else ""
    started = human.ago(row.get("started_at"))
    who = f"{row.get('trigger', '?')} by {row.get('requested_by') or '?'}"
    return Text.assemble(
        (str(row.get("job", "?")), "bold"),
        " (dry run)" if dry_run else "",
        ": ",
        (status, STATUS_STYLE.get(status, "")),
        how,
        f" · run {row.get('id')}, {who}" + (f", {started}" if started else ""),
    )


def _now():
    from redis_maint.timeutil import utcnow

    return utcnow()
