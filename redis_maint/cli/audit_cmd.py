"""`redis-maint audit verify`: is the history as it was written?"""

from __future__ import annotations

from typing import Any

import click

from redis_maint.cli import App, pass_app
from redis_maint.cli.output import emit_json, verbose_option


@click.group()
def audit() -> None:
    """Evidence checks for auditors: the history's hash chain and its checkpoints.

    \b
    Examples:
      redis-maint audit verify
      redis-maint audit verify --json | jq '.breaks[0]'

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_HISTORY_URL   the history store whose chain is verified
      REDIS_MAINT_TARGET__URI   the backup target holding audit/checkpoints/ (S3: the standard AWS_* variables)
    """


@audit.command()
@click.option("--json", "as_json", is_flag=True, help="The verification result as JSON on stdout.")
@click.option("--as", "requested_by", metavar="NAME", help="Who asked, for history (default: $USER).")
@verbose_option
@pass_app
def verify(app: App, as_json: bool, requested_by: str | None) -> None:
    """Recompute the history's hash chain, compare every run and backup with it, and check it against
    the newest checkpoints on the backup target.

    Exit 0 when intact; 1 naming the first record that breaks it and how (edited, deleted,
    reordered, added), when a checkpoint is missing or disagrees (history cut back or replaced), or
    when the target cannot be read (the chain's own result is still shown); 75 when another
    verification holds the lock. Recorded as an `audit-verify` run; its own final row is chained after
    the check.

    \b
    Examples:
      redis-maint audit verify
      redis-maint audit verify --json | jq '{intact, records, head_hash, original_from}'
      redis-maint audit verify --json | jq -r '.breaks[] | "\\(.seq) \\(.kind) \\(.ref) \\(.how): \\(.detail)"'

    \b
    Environment:
      REDIS_MAINT_CONFIG        the settings file, when --config is not given
      REDIS_MAINT_LOG_FORMAT    json or text logs on stderr, when --log-format is not given
      REDIS_MAINT_HISTORY_URL   the history store whose chain is verified
      REDIS_MAINT_TARGET__URI   the backup target holding audit/checkpoints/ (S3: the standard AWS_* variables)
    """
    from redis_maint.history.runs import Trigger
    from redis_maint.run.runner import RUN_PATH_KEYS, default_requester, exit_code_for

    run = app.runner().execute(
        "audit-verify", trigger=Trigger.MANUAL, requested_by=requested_by or default_requester()
    )
    summary = run.summary or {}
    if "intact" not in summary:  # skipped by a held lock, or stopped before it checked anything
        from redis_maint.redact import redact

        click.echo(f"redis-maint: {redact(run.error or f'run {run.id} of {run.job} {run.status}')}", err=True)
        raise click.exceptions.Exit(exit_code_for(run))
    result = {k: v for k, v in summary.items() if k not in RUN_PATH_KEYS} | {"run_id": run.id}
    if as_json:
        emit_json(result)
    else:
        for line in describe(result):
            click.echo(line)
    raise click.exceptions.Exit(exit_code_for(run))


def describe(result: dict[str, Any]) -> list[str]:
    """The result for people: the verdict first, then the chain, the checkpoint and every break."""
    cp = result["checkpoint"]
    verdict = "intact" if result["intact"] else "NOT INTACT"
    lines = [f"audit verify: {verdict} · run {result['run_id']}"]
    original = result.get("original_from")
    adopted = f"; records before {original} were chained at upgrade time" if original and original > 1 else ""
    lines.append(
        f"  chain       {result['records']} records, head {result['head_seq']} {str(result['head_hash'])[:16]}…"
        f"{adopted}"
    )
    newest = cp.get("newest") or {}
    where = cp.get("target") or "the target"
    state = {
        "ok": f"{cp.get('checked')} checked, newest {newest.get('key')} (record {newest.get('head_seq')})",
        "none": "none yet (no backup since the chain began)",
        "missing": "MISSING",
        "mismatch": "DISAGREE with the history",
        "unreachable": f"UNREADABLE: {cp.get('error')}",
    }[cp["status"]]
    lines.append(f"  checkpoint  {where}: {state}")
    for b in result["breaks"]:
        at = f"record {b['seq']}" if b["seq"] is not None else "outside the chain"
        lines.append(f"  {b['how']:<10}  {at}, {b['kind']} {b['ref']}: {b['detail']}")
    hidden = result.get("breaks_total", 0) - len(result["breaks"])
    if hidden > 0:
        lines.append(f"  ... and {hidden} more breaks")
    return lines
