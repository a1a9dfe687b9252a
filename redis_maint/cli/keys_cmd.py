"""`redis-maint keys`: what takes Redis's memory (the runbook's Memory Exhaustion step 2, without KEYS).

`keys big` only reads: it is not a run in history and takes no lock.
"""

from __future__ import annotations

import re
from typing import Any

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.output import emit_json
from redis_maint.cli.progress import progress_for

PREFIX_ROWS = 20  # prefixes in the table; --json has them all
_GLOB = re.compile(r"[*?\[\\]")


@click.group()
def keys() -> None:
    """Find what takes Redis's memory, with SCAN (never KEYS); read-only.

    \b
    Examples:
      redis-maint keys big
      redis-maint keys big --pattern 'session:*' --top 50 --json

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_REDIS_URL     the Redis to scan (every primary, on a Cluster)
      REDIS_MAINT_SESSIONS__<FIELD>   key_pattern, organisation_field, scan_count, idle_cpu
    """


@keys.command("big")
@click.option(
    "--pattern", default="*", show_default=True, metavar="P", help="SCAN MATCH pattern of the keys to size."
)
@click.option(
    "--top",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    metavar="N",
    help="How many of the largest keys to list (1-1000).",
)
@click.option(
    "--samples",
    type=click.IntRange(1, 1000),
    default=5,
    show_default=True,
    metavar="K",
    help="MEMORY USAGE … SAMPLES K: nested values sampled per list, hash, set or zset (1-1000; "
    "0, every value, is not offered: it can block Redis on a large key).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='JSON on stdout: {"scanned", "top": [{key, type, bytes, ttl_s, org}], '
    '"by_prefix": [{prefix, keys, bytes, mean, no_ttl}], "duration_s", "complete", ...}.',
)
@pass_app
def big(app: App, pattern: str, top: int, samples: int, as_json: bool) -> None:
    """The largest keys and the memory per key prefix.

    SCAN with MEMORY USAGE and PTTL in small batches (like the session sweep, at idle CPU
    priority), so Redis keeps answering its clients. Prefixes: the session prefix (from
    sessions.key_pattern), other keys by their first segment (`ratelimit:`), keys without ':'
    together. For the top sessions it shows the organisation. Exit 0, 1 when Redis cannot be
    reached, 2 for bad flags.

    \b
    Examples:
      redis-maint keys big
      redis-maint keys big --top 50 --samples 10
      redis-maint keys big --pattern 'session:*' --json | jq '.by_prefix[0]'

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_REDIS_URL     the Redis to scan (every primary, on a Cluster)
      REDIS_MAINT_SESSIONS__<FIELD>   key_pattern, organisation_field, scan_count, idle_cpu
    """
    if not pattern.strip():
        raise click.BadParameter("must not be empty (use '*' for every key)", param_hint="--pattern")
    report = _scan(app, pattern, top, samples, as_json)
    if as_json:
        emit_json(report.to_json())
    else:
        _render(report, pattern)


def _scan(app: App, pattern: str, top: int, samples: int, as_json: bool) -> Any:
    from redis_maint.keyspace import scan_big_keys
    from redis_maint.redis_conn import connect

    settings = app.core_settings()
    s = settings.sessions
    client = connect(settings.redis_url, settings.redis_timeout)
    try:
        return scan_big_keys(
            client,
            pattern=pattern,
            top=top,
            samples=samples,
            scan_count=s.scan_count,
            progress=progress_for(as_json),
            organisation_field=s.organisation_field,
            session_prefix=session_prefix(s.key_pattern),
            url=settings.redis_url,
            timeout=settings.redis_timeout,
            idle_cpu=s.idle_cpu,
        )
    finally:
        client.close()


def session_prefix(key_pattern: str) -> str:
    """`session:*` -> `session:`: the literal start of the sessions' SCAN pattern."""
    glob = _GLOB.search(key_pattern)
    return key_pattern[: glob.start()] if glob else key_pattern


# ---- for people -----------------------------------------------------------------------------------


def _render(report: Any, pattern: str) -> None:
    from rich.text import Text

    from redis_maint.cli.render import human
    from redis_maint.cli.render.console import print_trimmed, stdout_console
    from redis_maint.cli.render.listing import print_table

    console = stdout_console()
    print_trimmed(console, _verdict(report, pattern))
    for line in _notes(report):
        print_trimmed(console, Text(f"  {line}", style="yellow"))
    if not report.top:
        print_trimmed(console, Text("  no keys" + ("" if pattern == "*" else f" match {pattern!r}")))
        return
    print_trimmed(console, Text("\nlargest keys", style="bold"))
    top_columns, prefix_columns = _columns()
    print_table(top_columns, [k.to_json() for k in report.top])
    total = sum(r.bytes for r in report.by_prefix) or 1
    rows = [{**r.to_json(), "share": r.bytes / total} for r in report.by_prefix]
    print_trimmed(console, Text("\nmemory by prefix", style="bold"))
    print_table(prefix_columns, rows[:PREFIX_ROWS])
    if len(rows) > PREFIX_ROWS:
        more = len(rows) - PREFIX_ROWS
        print_trimmed(console, Text(f"  … and {human.count(more)} more prefixes (--json shows all)"))


def _verdict(report: Any, pattern: str) -> Any:
    from rich.text import Text

    from redis_maint.cli.progress import human_count
    from redis_maint.cli.render import human

    rate = report.scanned / report.duration_s if report.duration_s else 0
    what = "keys" if pattern == "*" else f"keys matching {pattern!r}"
    nodes = f" on {report.nodes} primaries" if report.nodes > 1 else ""
    size = human.size(sum(r.bytes for r in report.by_prefix))
    return Text.assemble(
        ("keys big: ", "bold"),
        f"{human.count(report.scanned)} {what}{nodes}, {size}, in {human.duration(report.duration_s)} "
        f"({human_count(rate)} keys/s)",
    )


def _notes(report: Any) -> list[str]:
    out = []
    if not report.complete:
        out.append("incomplete: the time budget ended the scan before it went round")
    if report.vanished:
        out.append(f"{report.vanished:,} keys vanished between SCAN and MEMORY USAGE (skipped)")
    if report.moved:
        out.append(f"{report.moved:,} keys were in Cluster slots that moved (skipped)")
    return out


def _ttl(row: dict[str, Any]) -> str:
    from redis_maint.cli.render import human

    return "none" if row["ttl_s"] is None else human.duration(row["ttl_s"])


def _columns() -> tuple[list[Any], list[Any]]:
    from redis_maint.cli.render import human
    from redis_maint.cli.render.listing import Column

    top = [
        Column("key", "key", lambda r: r["key"]),
        Column("type", "type", lambda r: r["type"], whole=True),
        Column("bytes", "size", lambda r: human.size(r["bytes"]), whole=True),
        Column(
            "ttl_s",
            "TTL",
            _ttl,
            drop=2,
            style=lambda r: "yellow" if r["ttl_s"] is None else None,
        ),
        Column("org", "organisation", lambda r: r["org"] or "", drop=1),
    ]
    prefixes = [
        Column("prefix", "prefix", lambda r: r["prefix"]),
        Column("keys", "keys", lambda r: human.count(r["keys"]), whole=True),
        Column("bytes", "size", lambda r: human.size(r["bytes"]), whole=True),
        Column("share", "share", lambda r: f"{r['share']:.0%}", drop=2),
        Column("mean", "mean", lambda r: human.size(r["mean"]), drop=3),
        Column(
            "no_ttl",
            "no TTL",
            lambda r: human.count(r["no_ttl"]),
            drop=1,
            style=lambda r: "yellow" if r["no_ttl"] else None,
        ),
    ]
    return top, prefixes
