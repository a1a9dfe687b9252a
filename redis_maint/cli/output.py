"""What the CLI prints: `--json` to stdout as a stable contract, tables for people."""

from __future__ import annotations

import json
import sys
from typing import Any

import click


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    Console(file=sys.stdout, width=max(120, Console().width)).print(t)


def describe_run(run: Any) -> None:
    """A run for people: one status line, the error, then the summary's top-level figures."""
    took = ""
    if run.finished_at and run.started_at:
        took = f" in {(run.finished_at - run.started_at).total_seconds():.2f}s"
    click.echo(f"run {run.id}: {run.job} {run.status}{took} ({run.trigger}, by {run.requested_by})")
    if run.error:
        click.echo(f"error: {run.error}")
    for key, value in (run.summary or {}).items():
        if key == "retention" and isinstance(value, dict):
            _describe_retention(value)
            continue
        text = (
            value if isinstance(value, str | int | float) or value is None else json.dumps(value, default=str)
        )
        click.echo(f"  {key}: {text}")


def _describe_retention(r: dict[str, Any]) -> None:
    """Which backups retention kept, which it pruned, and why: one line each."""
    if "kept" not in r:  # skipped, or failed before deciding
        click.echo(f"  retention: {r.get('skipped') or r.get('error') or json.dumps(r, default=str)}")
        return
    policy = ", ".join(f"{k}={v}" for k, v in (r.get("policy") or {}).items())
    dry = " (dry run: nothing deleted)" if r.get("dry_run") else ""
    click.echo(f"  retention{dry}: kept {len(r['kept'])}, pruned {len(r['pruned'])} ({policy})")
    for k in r["kept"]:
        click.echo(f"    kept    {k['id']}  {', '.join(k['why'])}")
    for p in r.get("pruned_why") or [{"id": i, "why": ""} for i in r["pruned"]]:
        click.echo(f"    pruned  {p['id']}  {p['why']}")
    for p in r.get("prune_refused") or []:
        click.echo(f"    NOT pruned {p['id']}  {p['why']}")
    for backup_id in r.get("prune_finished") or []:
        click.echo(f"    pruned  {backup_id}  finishing a prune an earlier run started")
    for loc in r.get("incomplete_removed") or []:
        click.echo(f"    removed incomplete {loc}")
    for key in r.get("symlinks_skipped") or []:
        click.echo(f"    left alone: {key} is a symbolic link (retention never follows links)")
    for backup_id in r.get("missing_on_target") or []:
        click.echo(f"    WARNING: {backup_id} is complete in the catalog but has no manifest on the target")
