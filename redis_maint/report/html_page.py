"""The report as one self-contained HTML page: inline CSS (with print styles), an inline SVG
calendar, no script and no external asset (its Content-Security-Policy forbids both).

Every value from the history is escaped: requesters, reasons and errors are user input.
"""

from __future__ import annotations

import json
from datetime import date
from html import escape
from typing import Any

from redis_maint.report.data import LEGEND, duration_text

CELL, STEP, LEFT, TOP, RIGHT = 14, 17, 30, 20, 40
COLOURS = {"green": "#2e7d32", "amber": "#f2a900", "red": "#c62828"}
WEEKDAYS = ("Mon", "", "Wed", "", "Fri", "", "")
NOT_RECORDED = '<span class="nr">not recorded</span>'

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: #1b1b1b; background: #fff; margin: 24px auto; max-width: 1180px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; padding-bottom: 3px; border-bottom: 2px solid #ddd; }
h3 { font-size: 15px; margin: 16px 0 6px; }
p, dl { margin: 6px 0; }
.meta { color: #444; }
.banner { padding: 10px 14px; border-radius: 4px; margin: 12px 0; border: 1px solid; }
.banner.empty { background: #fff8e1; border-color: #f2a900; }
.banner.zone { background: #eef4fb; border-color: #8fb3de; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid #d0d0d0; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, .mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; word-break: break-all; }
.nr { color: #777; font-style: italic; }
.bad { color: #b71c1c; font-weight: 600; }
.good { color: #1b5e20; font-weight: 600; }
.warn { color: #8a5a00; font-weight: 600; }
.legend span.sw { display: inline-block; width: 12px; height: 12px; border-radius: 2px; vertical-align: -1px; margin-right: 4px; }
.legend li { list-style: none; margin: 2px 0; }
.legend { padding-left: 0; }
svg.calendar { display: block; max-width: 100%; height: auto; }
svg.calendar text { font: 10px system-ui, "DejaVu Sans", sans-serif; fill: #555; }
rect.day.green { fill: #2e7d32; } rect.day.amber { fill: #f2a900; } rect.day.red { fill: #c62828; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; }
dl.kv dt { color: #555; } dl.kv dd { margin: 0; }
footer { margin-top: 30px; color: #555; font-size: 12px; border-top: 1px solid #ddd; padding-top: 8px; }
* { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
@page { size: A4; margin: 12mm; }
@media print {
  body { margin: 0; max-width: none; padding: 0; font-size: 10pt; }
  h2 { break-after: avoid; }
  section { break-inside: auto; }
  tr, .banner, svg.calendar, dl.kv { break-inside: avoid; }
  thead { display: table-header-group; }
  table { font-size: 8.5pt; }
}
"""


def render(data: dict[str, Any]) -> str:
    r = data["report"]
    title = f"{r['title']}: {_day(r['from'])} to {_day(r['to'], end=True)} (UTC)"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may load or run: the page is what it shows, in any browser, offline.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{e(title)}</title>",
        f"<style>{CSS}</style>",
        "</head><body>",
        _header(data, title),
        _calendar_section(data),
        _rpo_section(data),
        _drills_section(data),
        _problems_section(data),
        _ad_hoc_section(data),
        _integrity_section(data),
        _config_section(data),
        _footer(data),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# -- helpers ------------------------------------------------------------------------------------


def e(value: Any) -> str:
    return escape(str(value), quote=True)


def cell(value: Any, *, num: bool = False, cls: str | None = None) -> str:
    if value is None:
        return f"<td>{NOT_RECORDED}</td>"
    classes = " ".join(c for c in ("num" if num else None, cls) if c)
    attr = f' class="{classes}"' if classes else ""
    return f"<td{attr}>{e(value)}</td>"


def table(headers: list[str], rows: list[str], *, empty: str) -> str:
    if not rows:
        return f"<p>{e(empty)}</p>"
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def status_cell(status: str) -> str:
    cls = "good" if status == "succeeded" else "bad" if status in ("failed", "missed") else "warn"
    return cell(status, cls=cls)


def _day(iso: str, end: bool = False) -> str:
    """The date of a bound for people: an exclusive midnight end shows as the day before."""
    from datetime import datetime, timedelta

    at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if end and at.hour == at.minute == at.second == at.microsecond == 0:
        return (at - timedelta(days=1)).date().isoformat()
    return iso if (at.hour or at.minute or at.second) else at.date().isoformat()


def _who(row: dict[str, Any]) -> str:
    return cell(row.get("requested_by")) + cell(row.get("os_user"))


def _secs(value: Any) -> str:
    return f"<td>{NOT_RECORDED}</td>" if value is None else f'<td class="num">{e(f"{value:.3f}")} s</td>'


# -- sections -----------------------------------------------------------------------------------


def _header(data: dict[str, Any], title: str) -> str:
    r, c = data["report"], data["counts"]
    rows = [
        ("Period", f"{r['from']} to {r['to']} (end not included), {_n(r['days'], 'day')}"),
        ("Times", r["zone_note"]),
        ("Instance", r["instance"]),
        ("Generated", f"{r['generated_at']} by {r['requested_by'] or 'unknown'}"),
        ("OS user, host", f"{r['os_user'] or 'not recorded'} on {r['host'] or 'not recorded'}"),
        ("Recorded as", f"run {r['run_id']} of audit-report" if r.get("run_id") else "not recorded"),
        ("Tool", f"redis-maint {r['version'] or ''}".strip()),
        ("In the range", f"{c['runs']} runs, {c['backups']} backups ({c['complete_backups']} complete)"),
    ]
    out = [f"<header><h1>{e(title)}</h1>", '<dl class="kv meta">']
    out += [f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows]
    out.append("</dl>")
    if r["zone_assumed"]:
        out.append(
            '<p class="banner zone">Dates and times given without a timezone were read as UTC. '
            "Every time on this page is UTC.</p>"
        )
    if r["empty"]:
        out.append(f'<p class="banner empty" id="empty"><strong>{e(r["message"])}</strong></p>')
    out.append("</header>")
    return "\n".join(out)


def _calendar_section(data: dict[str, Any]) -> str:
    days = data["calendar"]
    counts = data["counts"]["calendar"]
    legend = "".join(
        f'<li><span class="sw" style="background:{COLOURS[k]}"></span><strong>{e(k)}</strong> '
        f"({_n(counts.get(k, 0), 'day')}): {e(v)}</li>"
        for k, v in LEGEND.items()
    )
    not_green = [
        f"<tr>{cell(d['date'])}{cell(d['status'], cls='bad' if d['status'] == 'red' else 'warn')}"
        f"{cell(d['tooltip'])}</tr>"
        for d in days
        if d["status"] != "green"
    ]
    return "\n".join(
        [
            '<section id="calendar"><h2>Backup calendar</h2>',
            "<p>One cell per day (UTC), weeks from Monday. Hover a cell for its backups.</p>",
            calendar_svg(days),
            f'<ul class="legend">{legend}</ul>',
            "<h3>Days without a backup checked by a restore drill</h3>",
            table(["day", "colour", "what the catalog shows"], not_green, empty="None: every day is green."),
            "</section>",
        ]
    )


def calendar_svg(days: list[dict[str, Any]]) -> str:
    if not days:
        return "<p>No days in the range.</p>"
    first = date.fromisoformat(days[0]["date"])
    monday = first.toordinal() - first.weekday()
    weeks = (date.fromisoformat(days[-1]["date"]).toordinal() - monday) // 7 + 1
    width, height = LEFT + weeks * STEP + RIGHT, TOP + 7 * STEP
    # Drawn at 1.5x, shrunk to the page's width when the range is long.
    out = [
        f'<svg class="calendar" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width * 3 // 2}" height="{height * 3 // 2}" role="img" '
        f'aria-label="backup calendar, {len(days)} days">'
    ]
    out += [
        f'<text x="0" y="{TOP + i * STEP + CELL - 3}">{name}</text>'
        for i, name in enumerate(WEEKDAYS)
        if name
    ]
    last_label = -3
    for d in days:
        day = date.fromisoformat(d["date"])
        col, row = (day.toordinal() - monday) // 7, day.weekday()
        x, y = LEFT + col * STEP, TOP + row * STEP
        if (day.day == 1 or d is days[0]) and col - last_label >= 3:
            out.append(f'<text x="{x}" y="{TOP - 6}">{e(day.strftime("%b %Y"))}</text>')
            last_label = col
        out.append(
            f'<rect class="day {e(d["status"])}" data-date="{e(d["date"])}" data-status="{e(d["status"])}" '
            f'x="{x}" y="{y}" width="{CELL}" height="{CELL}" rx="2" fill="{COLOURS[d["status"]]}">'
            f"<title>{e(d['tooltip'])}</title></rect>"
        )
    out.append("</svg>")
    return "".join(out)


def _rpo_section(data: dict[str, Any]) -> str:
    rpo = data["rpo"]
    largest = rpo["largest_gap"]
    verdict = (
        '<span class="good">met</span>'
        if rpo["compliant"]
        else f'<span class="bad">not met: {_gaps(len(rpo["over_rpo"]))} over it</span>'
    )
    lines = [
        '<section id="rpo"><h2>RPO compliance</h2>',
        f"<p>RPO <strong>{e(duration_text(rpo['rpo_s']))}</strong> (jobs.backup_age.rpo): {verdict}. "
        f"Gaps are measured between complete backups, from the last one before the range up to "
        f"{e(rpo['measured_until'])}.</p>",
    ]
    if largest is None:
        lines.append("<p>No gap to measure.</p>")
    else:
        lines.append(
            f"<p>Largest gap: <strong>{e(duration_text(largest['gap_s']))}</strong> from {_gap_end(largest, 'from')} "
            f"to {_gap_end(largest, 'to')}.</p>"
        )
    rows = [
        f"<tr>{cell(g['from'])}{cell(g['from_backup'] or 'no earlier complete backup')}{cell(g['to'])}"
        f"{cell(g['to_backup'] or ('none yet' if g['open'] else ''))}"
        f'<td class="num bad">{e(duration_text(g["gap_s"]))}</td></tr>'
        for g in rpo["over_rpo"]
    ]
    lines.append("<h3>Every gap over the RPO</h3>")
    lines.append(table(["from", "backup", "to", "next backup", "gap"], rows, empty="None."))
    lines.append("</section>")
    return "\n".join(lines)


def _gaps(n: int) -> str:
    return _n(n, "gap")


def _n(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _gap_end(gap: dict[str, Any], side: str) -> str:
    backup = gap[f"{side}_backup"]
    label = f" (backup {backup})" if backup else (" (no later backup)" if side == "to" else " (range start)")
    return f"{e(gap[side])}{e(label)}"


def _drills_section(data: dict[str, Any]) -> str:
    rows = []
    for d in data["restore_drills"]:
        rows.append(
            "<tr>"
            + cell(d["run_id"], num=True)
            + cell(d["started_at"])
            + cell(d["job"])
            + cell(d["backup_id"])
            + status_cell(d["status"])
            + _who(d)
            + _secs(d["download_s"])
            + _secs(d["load_s"])
            + _secs(d["total_s"])
            + cell(d["keys_source"], num=True)
            + cell(d["keys_loaded"], num=True)
            + cell(d["keys_expired"], num=True)
            + cell(d["keys_missing"], num=True)
            + "</tr>"
        )
    headers = ["run", "started", "job", "backup", "result", "claimed by", "OS user"]
    headers += ["download", "load", "total (RTO)", "keys at backup", "loaded", "expired", "missing"]
    return "\n".join(
        [
            '<section id="drills"><h2>Restore drills</h2>',
            "<p>Each drill downloads a backup, checks it and loads it in a throwaway Redis; its parts are "
            "the recovery time (RTO) measured.</p>",
            table(headers, rows, empty="No restore drill ran in this range."),
            "</section>",
        ]
    )


def _problems_section(data: dict[str, Any]) -> str:
    rows = [
        "<tr>"
        + cell(p["run_id"], num=True)
        + cell(p["job"])
        + status_cell(p["status"])
        + cell(p["trigger"])
        + cell(p["started_at"])
        + cell(p["scheduled_for"] if p["status"] == "missed" else p["finished_at"])
        + _who(p)
        + cell(_slots(p) + (p["error"] or ""))
        + "</tr>"
        for p in data["problem_runs"]
    ]
    headers = ["run", "job", "status", "trigger", "started (missed: slot)", "scheduled for / finished"]
    headers += ["claimed by", "OS user", "why"]
    return "\n".join(
        [
            '<section id="problems"><h2>Failed, missed, skipped and interrupted runs</h2>',
            table(headers, rows, empty="None in this range."),
            "</section>",
        ]
    )


def _slots(problem: dict[str, Any]) -> str:
    n = problem.get("missed_slots")
    return f"[{n:,} missed slots] " if isinstance(n, int) and n > 1 else ""


def _ad_hoc_section(data: dict[str, Any]) -> str:
    rows = []
    for a in data["ad_hoc"]:
        removed = a["sessions_removed"]
        if a["dry_run"] and a["would_remove"] is not None:
            removed_cell = f'<td class="num">0 (dry run: would remove {e(a["would_remove"])})</td>'
        elif removed is None:
            removed_cell = "<td>-</td>"
        else:
            removed_cell = cell(removed, num=True)
        rows.append(
            "<tr>"
            + cell(a["run_id"], num=True)
            + cell(a["started_at"])
            + cell(a["job"])
            + cell(a["what"])
            + _who(a)
            + cell(a["host"])
            + removed_cell
            + status_cell(a["status"])
            + "</tr>"
        )
    headers = [
        "run",
        "when",
        "job",
        "what",
        "claimed by (--as)",
        "OS user",
        "host",
        "sessions removed",
        "result",
    ]
    return "\n".join(
        [
            '<section id="ad-hoc"><h2>Ad hoc deletes, restores and keeps</h2>',
            "<p>“Claimed by” is what the operator said (<code>--as</code>, else $USER); the OS user is what "
            "the operating system said.</p>",
            table(headers, rows, empty="None in this range."),
            "</section>",
        ]
    )


def _kv(obj: dict[str, Any]) -> str:
    items = []
    for key, value in obj.items():
        if value is None:
            shown = NOT_RECORDED
        elif value == []:
            shown = "none"
        else:
            shown = e(value if isinstance(value, str) else json.dumps(value))
        items.append(f"<dt>{e(key)}</dt><dd class='mono'>{shown}</dd>")
    return f'<dl class="kv">{"".join(items)}</dl>'


def _audit_block(audit: dict[str, Any]) -> str:
    """`audit verify` as of this report: the chain, where it is original from, the newest checkpoint."""
    intact = audit.get("intact")
    verdict = '<span class="good">intact</span>' if intact else '<span class="bad">NOT intact</span>'
    out = [f"<p>Verified when this report was made: the hash-chained history is {verdict}.</p>"]
    shown = {
        "records": audit.get("records"),
        "head hash": f"{audit.get('head_hash')} (record {audit.get('head_seq')})",
        "chain id": audit.get("chain_id"),
        "original from": (
            f"record {audit['original_from']} (the {audit.get('adopted') or 0} records before it were "
            "chained once, when the history was upgraded)"
            if audit.get("original_from") not in (None, 0, 1)
            else "the first record"
        ),
    }
    checkpoint = audit.get("checkpoint") if isinstance(audit.get("checkpoint"), dict) else None
    if checkpoint is not None:
        newest = checkpoint.get("newest") or {}
        shown["checkpoints"] = (
            f"{checkpoint.get('status')} on {checkpoint.get('target') or 'no target'} "
            f"({checkpoint.get('checked', 0)} read)"
            + (f": {checkpoint['error']}" if checkpoint.get("error") else "")
        )
        shown["newest checkpoint"] = (
            f"{newest.get('key')} at {newest.get('at')}: {newest.get('records')} records, head "
            f"{newest.get('head_hash')}"
            if newest
            else None
        )
    known = {"intact", "records", "head_hash", "head_seq", "chain_id", "original_from", "adopted"}
    known |= {"checkpoint", "breaks", "breaks_total"}
    shown.update({k: v for k, v in audit.items() if k not in known})
    out.append(_kv(shown))
    breaks = audit.get("breaks") or []
    if breaks:
        total = audit.get("breaks_total", len(breaks))
        out.append(f'<p class="bad">{e(total)} breaks; the first {len(breaks)}:</p>')
        rows = [
            "<tr>"
            + cell(b.get("seq"), num=True)
            + cell(b.get("kind"))
            + cell(b.get("ref"))
            + cell(b.get("how"), cls="bad")
            + cell(b.get("detail"))
            + "</tr>"
            for b in breaks
        ]
        out.append(table(["record", "kind", "ref", "how", "detail"], rows, empty=""))
    return "\n".join(out)


def _integrity_section(data: dict[str, Any]) -> str:
    audit, check = data["integrity"]["audit_verify"], data["integrity"]["backups_check"]
    out = ['<section id="integrity"><h2>History and target integrity</h2>', "<h3>audit verify</h3>"]
    if audit is None:
        out.append(f"<p>{NOT_RECORDED}: this history has no hash chain to verify.</p>")
    else:
        out.append(_audit_block(audit))
    out.append("<h3>Last backups check</h3>")
    if check is None:
        out.append(f"<p>{NOT_RECORDED}: no <code>backups check</code> ran before the end of this range.</p>")
    else:
        ok = check.get("status") == "succeeded"
        verdict = (
            '<span class="good">no difference</span>' if ok else '<span class="bad">differences found</span>'
        )
        out.append(f"<p>Run {e(check.get('run_id'))} at {e(check.get('started_at'))}: {verdict}.</p>")
        out.append(_kv({k: v for k, v in check.items() if k not in ("run_id", "started_at")}))
    out.append("</section>")
    return "\n".join(out)


def _config_section(data: dict[str, Any]) -> str:
    hash_rows = [
        "<tr>"
        + (cell(h["config_hash"], cls="mono") if h["config_hash"] else f"<td>{NOT_RECORDED}</td>")
        + cell(h["runs"], num=True)
        + cell(f"{h['first_run']} to {h['last_run']}")
        + cell(h["first_at"])
        + cell(h["last_at"])
        + "</tr>"
        for h in data["config_hashes"]
    ]
    settings_rows = [
        f"<tr>{cell(s['key'], cls='mono')}{cell(json.dumps(s['value']), cls='mono')}</tr>"
        for s in data["settings"]
    ]
    return "\n".join(
        [
            '<section id="config"><h2>Configuration</h2>',
            "<h3>Config hash each run recorded</h3>",
            table(
                ["config hash", "runs", "run ids", "first", "last"], hash_rows, empty="No run in this range."
            ),
            "<h3>Settings in force when this report was made (secrets masked)</h3>",
            table(["setting", "value"], settings_rows, empty="No settings."),
            "</section>",
        ]
    )


def _footer(data: dict[str, Any]) -> str:
    r = data["report"]
    run = r.get("run_id")
    proof = (
        f"This page's sha256 is in the summary of run {e(run)} "
        f"(<code>redis-maint history show {e(run)} --json</code>)."
        if run
        else ""
    )
    return (
        f"<footer>Generated by redis-maint {e(r['version'] or '')} at {e(r['generated_at'])}. {proof} "
        "Each day's colour is also written as a word: in the table under the calendar (days that are not "
        "green) and in the CSV and JSON renderings (every day).</footer>"
    )
