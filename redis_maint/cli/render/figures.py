"""Each job's figures under its verdict: what an operator needs at 3 a.m., in units people read."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from redis_maint.cli.render import human
from redis_maint.cli.render.lines import LABEL_INDENT, PROBLEM, WARN, Figures, generic, renders

LEVEL_STYLE = {"ok": "bold green", "warning": "bold yellow", "critical": "bold red"}
VERDICT_STYLE = {"ok": "green", "truncated": PROBLEM, "corrupt": PROBLEM, "error": PROBLEM}


# ---- health ----


@renders("health")
def health(s: dict[str, Any], f: Figures) -> None:
    if "level" not in s:
        generic(s, f)
        return
    f.add("level", s["level"], LEVEL_STYLE.get(s["level"]))
    for reason in s.get("reasons") or []:
        f.note(f"- {reason}", LEVEL_STYLE.get(s["level"], WARN), indent=LABEL_INDENT)
    if s.get("redis_version"):
        f.add("redis", f"{s['redis_version']} {s.get('role')}, up {human.duration(s.get('uptime_s'))}")
    if s.get("ping_ms") is not None:
        f.add("ping", f"{s['ping_ms']} ms")
    mem = s.get("memory") or {}
    if mem:
        share = f" ({mem['ratio'] * 100:.1f}%)" if mem.get("ratio") is not None else ""
        of = f" of {human.size(mem['maxmemory'])}" if mem.get("maxmemory") else " (no maxmemory)"
        f.add(
            "memory",
            f"{human.size(mem.get('used_memory'))}{of}{share}, {mem.get('maxmemory_policy')}, "
            f"{human.count(mem.get('evicted_keys'))} evicted",
        )
    clients = s.get("clients") or {}
    if clients:
        f.add("clients", f"{clients.get('connected')} connected, {clients.get('blocked')} blocked")
    keyspace = s.get("keyspace") or {}
    if keyspace:
        ratio = keyspace.get("hit_ratio")
        hits = "no reads yet" if ratio is None else f"hit ratio {ratio * 100:.1f}%"
        f.add("keys", f"{human.count(keyspace.get('keys'))}, {hits}")
    _persistence(s.get("persistence") or {}, f)
    _slowlog(s.get("slowlog") or {}, f)
    _aof_rewrite(s.get("aof_rewrite") or {}, f)


def _persistence(p: dict[str, Any], f: Figures) -> None:
    if not p:
        return
    from datetime import UTC, datetime

    statuses = {
        "bgsave": p.get("rdb_last_bgsave_status"),
        "AOF write": p.get("aof_last_write_status"),
        "AOF rewrite": p.get("aof_last_bgrewrite_status"),
    }
    bad = [name for name, v in statuses.items() if v not in (None, "ok")]
    saved = p.get("rdb_last_save_time")
    when = f"last save {human.ago(datetime.fromtimestamp(saved, UTC))}" if saved else "never saved"
    text = f"AOF {'on' if p.get('aof_enabled') else 'off'}, {when}, {human.count(p.get('rdb_changes_since_last_save'))} changes since"
    if bad:
        f.add("persistence", text + "; FAILED: " + ", ".join(bad), PROBLEM)
    else:
        f.add("persistence", text + "; bgsave, AOF write and rewrite ok")


def _slowlog(slow: dict[str, Any], f: Figures) -> None:
    new = slow.get("new_entries")
    if new is None:
        return
    commands: dict[str, int] = {}
    for e in slow.get("entries") or []:
        commands[e.get("command") or "?"] = commands.get(e.get("command") or "?", 0) + 1
    by = ", ".join(f"{c} x{n}" for c, n in sorted(commands.items(), key=lambda kv: -kv[1]))
    f.add("slowlog", f"{new} new entries" + (f" ({by})" if by else ""), WARN if new else None)


def _aof_rewrite(guard: dict[str, Any], f: Figures) -> None:
    if guard.get("error"):
        f.add("aof rewrite", guard["error"], WARN)
    elif guard.get("paused_by"):
        f.add("aof rewrite", f"paused (auto-aof-rewrite-percentage 0) by {guard['paused_by']}", WARN)


# ---- backup ----


@renders("backup")
def backup(s: dict[str, Any], f: Figures) -> None:
    if "would_back_up" in s:
        files = s["would_back_up"]
        f.add("would copy", f"{human.size(s.get('bytes'))} in {len(files)} files")
        for item in files:
            f.note(f"{item['path']}  {human.size(item.get('size'))}", indent=LABEL_INDENT)
        f.add("target", s.get("target"))
        f.add("bgsave", s.get("bgsave"))
        f.add("verify", "before upload" if s.get("verify_before_upload") else "off")
    else:
        _stored_backup(s, f)
    retention(s.get("retention"), f)


def _stored_backup(s: dict[str, Any], f: Figures) -> None:
    f.add("backup", s["backup_id"], "bold")
    files = s.get("files") or []
    if files:
        f.add("size", f"{human.size(s.get('bytes'))} in {len(files)} files")
    if s.get("phase"):
        f.add("failed in", s["phase"], PROBLEM)
    phases = s.get("durations_s") or {}
    if phases:
        rate = f" ({s['upload_mib_s']} MiB/s)" if s.get("upload_mib_s") else ""
        f.add("took", " · ".join(f"{k} {human.duration(v)}" for k, v in phases.items()) + rate)
    checks(s.get("checks"), f)
    redis = s.get("redis") or {}
    if redis.get("dbsize") is not None:
        f.add("keys", f"{human.count(redis['dbsize'])} (Redis {redis.get('redis_version')})")
    f.add("target", s.get("target"))


def retention(r: dict[str, Any] | None, f: Figures) -> None:
    """Which backups retention kept, which it pruned, and why: one line each."""
    if not r:
        return
    if "kept" not in r:  # skipped, or failed before deciding
        f.add(
            "retention",
            r.get("skipped") or r.get("error") or "not applied",
            PROBLEM if r.get("error") else None,
        )
        return
    policy = ", ".join(f"{k}={v}" for k, v in (r.get("policy") or {}).items())
    dry = " (dry run: nothing deleted)" if r.get("dry_run") else ""
    f.add(f"retention{dry}", f"kept {len(r['kept'])}, pruned {len(r['pruned'])} ({policy})")
    for k in r["kept"]:
        f.note(f"kept    {k['id']}  {', '.join(k['why'])}")
    for p in r.get("pruned_why") or [{"id": i, "why": ""} for i in r["pruned"]]:
        f.note(f"pruned  {p['id']}  {p['why']}")
    for p in r.get("prune_refused") or []:
        f.note(f"NOT pruned {p['id']}  {p['why']}", WARN)
    for backup_id in r.get("prune_finished") or []:
        f.note(f"pruned  {backup_id}  finishing a prune an earlier run started")
    for loc in r.get("incomplete_removed") or []:
        f.note(f"removed incomplete {loc}")
    for key in r.get("symlinks_skipped") or []:
        f.note(f"left alone: {key} is a symbolic link (retention never follows links)", WARN)
    marked = set(r.get("marked_missing") or [])
    for backup_id in r.get("missing_on_target") or []:
        what = "now marked missing in the catalog" if backup_id in marked else "complete in the catalog"
        f.note(f"WARNING: {backup_id} has no manifest on the target: {what}", PROBLEM)


# ---- integrity checks: verdicts, and the tool's own words only under -v ----


def checks(items: list[dict[str, Any]] | None, f: Figures, label: str = "checks") -> None:
    if items is None:
        return
    if not items:
        f.add(label, "none run")
        return
    bad = [c for c in items if c.get("verdict") != "ok"]
    summary = f"{len(items) - len(bad)} of {len(items)} ok" if bad else f"all {len(items)} ok"
    f.add(label, summary, PROBLEM if bad else "green")
    for c in items:
        at = f" at offset {c['offset']}" if c.get("offset") is not None else ""
        f.items.append(
            Text.assemble(
                " " * LABEL_INDENT,
                (f"{c.get('verdict', '?'):9}", VERDICT_STYLE.get(c.get("verdict"), PROBLEM)),
                f"{c.get('file')} ({c.get('tool')}){at}",
            )
        )
        if f.verbose and c.get("output"):
            for line in str(c["output"]).splitlines():
                f.note(f"| {line}", "dim", indent=LABEL_INDENT + 2)
    if not f.verbose and any(c.get("output") for c in items):
        f.note("(-v shows the tools' output)", "dim", indent=LABEL_INDENT)


@renders("aof-check")
def aof_check(s: dict[str, Any], f: Figures) -> None:
    if "would_snapshot" in s:
        f.add("would check", s["would_snapshot"])
        f.add("image", s.get("image"))
        return
    checks(s.get("checks"), f)
    for item in s.get("skipped") or []:
        f.note(f"skipped {item}", WARN, indent=LABEL_INDENT)
    files = s.get("files") or []
    if files:
        f.add("snapshot", f"{human.size(sum(x.get('size') or 0 for x in files))} in {len(files)} files")
    timings = s.get("timings") or {}
    if timings:
        f.add("took", " · ".join(f"{k.removesuffix('_s')} {human.duration(v)}" for k, v in timings.items()))
    f.add("image", s.get("image"))


@renders("backup-check", "backup-verify")
def backup_check(s: dict[str, Any], f: Figures) -> None:
    if "would_verify" in s:
        f.add("would check", s["would_verify"])
        f.add("target", s.get("target"))
        return
    backup_id = s.get("backup_id") or s.get("id")
    if backup_id is None:
        f.add("backup", s.get("reason") or "none", WARN)
        return
    ok = s.get("ok")
    f.add("backup", backup_id, "bold")
    if s.get("created_at"):
        f.add("created", f"{human.when(s['created_at'])} UTC ({human.ago(s['created_at'])})")
    files = s.get("files") or []
    bad = [x for x in files if x.get("verdict") != "ok"]
    f.add(
        "files",
        f"{len(files) - len(bad)} of {len(files)} match the manifest (sha256)",
        PROBLEM if bad or not ok else "green",
    )
    for x in files:
        style = None if x.get("verdict") == "ok" else PROBLEM
        f.note(
            f"{x.get('verdict', '?'):8} {x['path']} ({human.size(x.get('size'))})", style, indent=LABEL_INDENT
        )
    f.add("manifest", s.get("manifest"), None if s.get("manifest") == "ok" else PROBLEM)
    _deep(s.get("deep"), f)
    for problem in s.get("problems") or []:
        f.note(f"- {problem}", PROBLEM, indent=LABEL_INDENT)


def _deep(deep: dict[str, Any] | None, f: Figures) -> None:
    if not deep:
        return
    if "skipped" in deep:
        f.add("deep", f"skipped ({deep['skipped']})", WARN)
        return
    checks(deep.get("checks"), f, label="deep checks")
    server = deep.get("server")
    if server:
        # The wording of restore_drill.describe: runbooks and tests quote it.
        f.note(
            f"loaded   {server['keys']} keys ({server['sessions']} sessions) from {server.get('loaded_from') or '?'} "
            f"in {server.get('load_s')}s; the source had {deep.get('source_keys')}",
            indent=LABEL_INDENT,
        )
        f.note(f"digest   {server.get('digest')} (DEBUG DIGEST of the loaded dataset)", indent=LABEL_INDENT)
    _drill_evidence(deep, f)
    for problem in deep.get("problems") or []:
        f.note(f"- {problem}", PROBLEM, indent=LABEL_INDENT)


def _drill_evidence(deep: dict[str, Any], f: Figures) -> None:
    """Expired keys apart from missing ones, and the RTO parts (restore_drill.describe's wording)."""
    keys, parts = deep.get("keys"), deep.get("rto")
    if keys:
        f.note(
            f"keys     {keys['loaded']} of the source's {keys['source']} loaded; {keys['expired']} expired "
            f"since the backup (not missing); {keys['missing']} missing",
            WARN if keys.get("missing") else None,
            indent=LABEL_INDENT,
        )
    if parts:
        f.note(
            f"rto      download {parts['download_s']}s + load {parts['load_s']}s = {parts['total_s']}s",
            indent=LABEL_INDENT,
        )


@renders("backup-restore")
def backup_restore(s: dict[str, Any], f: Figures) -> None:
    if "would_restore" in s:
        f.add("would restore", s["would_restore"])
        f.add("into", s.get("dir"))
        return
    if s.get("online"):  # --online: into the running Redis (redis_maint/archive/online.py)
        _restored_online(s, f)
        return
    f.add("backup", s["id"], "bold")
    files = s.get("files") or []
    f.add(
        "restored",
        f"{human.size(sum(x.get('size') or 0 for x in files))} in {len(files)} files (sha256 ok) into {s.get('dir')}",
    )
    if s.get("moved_aside"):
        f.add("moved aside", s["moved_aside"], WARN)
    for warning in s.get("warnings") or []:
        f.note(f"note: {warning}", WARN, indent=LABEL_INDENT)
    if s.get("next"):
        f.add("start with", s["next"])
    for cmd in s.get("check_after_start") or []:
        f.add("then check", cmd)


def _restored_online(s: dict[str, Any], f: Figures) -> None:
    f.add("restored", s.get("what") or s.get("id"), "bold")
    f.add("into", f"{s['live']['redis']} (online, Redis {s['live']['version']})")
    f.add("keys", f"{human.count(s.get('keys_before'))} before, {human.count(s.get('keys_after'))} after")
    match = s.get("digest_matches")
    verdict = "not compared" if match is None else "matches the restored dataset" if match else "differs"
    f.add(
        "digest",
        f"{(s.get('after') or {}).get('digest') or '—'} ({verdict})",
        WARN if match is False else None,
    )
    f.add("lost", s["lost"]["note"], WARN if s["lost"].get("writes_refused") else None)
    rewrite = s.get("aof_rewrite") or {}
    f.add("aof", f"BGREWRITEAOF {rewrite['status']}" if "status" in rewrite else rewrite.get("skipped"))
    for warning in s.get("warnings") or []:
        f.note(f"note: {warning}", WARN, indent=LABEL_INDENT)


@renders("backup-keep", "backup-unkeep")
def backup_keep(s: dict[str, Any], f: Figures) -> None:
    f.add("backup", s.get("backup_id"), "bold")
    f.add("reason", s.get("reason") or "—")


@renders("backup-age")
def backup_age(s: dict[str, Any], f: Figures) -> None:
    rpo = human.duration(s.get("rpo_s"))
    if s.get("backup_id") is None:
        f.add("newest", s.get("note") or "no complete backup", WARN)
    else:
        age = s.get("age_s") or 0
        late = age > (s.get("rpo_s") or float("inf"))
        f.add("newest", f"{s['backup_id']}, {human.duration(age)} old", PROBLEM if late else None)
    f.add("rpo", f"{rpo} (instance {s.get('instance')})")


@renders("backup-reconcile", "backup-audit")
def backup_reconcile(s: dict[str, Any], f: Figures) -> None:
    """`backups check`: what was compared, then each difference on a line of its own."""
    if "would_check" in s:
        f.add("would check", f"{s['would_check']} backups on {s.get('target')}")
        return
    if "checked" not in s:
        generic(s, f)
        return
    how = "sha256 of every object re-read" if s.get("read_data") else "sizes, ETag/VersionId where recorded"
    f.add("checked", f"{human.count(s['checked'])} backups, {human.count(s.get('objects'))} objects ({how})")
    if s.get("read_data"):
        f.add("read", human.size(s.get("bytes_read")))
    f.add("target", s.get("target"))
    f.add(
        "result",
        "catalog and target agree"
        if s.get("ok")
        else ", ".join(f"{len(s[k])} {k}" for k in ("missing", "changed", "unknown") if s.get(k)),
        "green" if s.get("ok") else PROBLEM,
    )
    for m in s.get("missing") or []:
        f.note(f"missing  {m['id']}  {', '.join(m['files'])}", PROBLEM)
    for c in s.get("changed") or []:
        f.note(f"changed  {c['id']}  {c.get('path') or ''}  {c['why']}", PROBLEM)
    for u in s.get("unknown") or []:
        f.note(f"unknown  {u['location']}" + ("" if u.get("manifest") else " (no manifest)"), WARN)
    for m in s.get("marked") or []:
        f.note(f"catalog  {m['id']}: {m['from']} -> {m['to']}")


# ---- sessions: deleted by reason, repaired and unreadable, in a small table ----

REASONS = {
    "stale": "stale (older than {stale_after})",
    "expired_no_ttl": "expired, had no TTL",
    "unreadable": "unreadable",
    "organisation": "of the organisation",
    "all": "every session",
}


@renders("session-sweep", "session-delete")
def sessions(s: dict[str, Any], f: Figures) -> None:
    from rich.padding import Padding

    table = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False, header_style="bold")
    table.add_column("sessions", no_wrap=True)
    table.add_column("would delete" if f.dry_run else "deleted", justify="right", no_wrap=True)
    for reason, n in (s.get("deleted") or {}).items():
        if n or (reason in ("stale", "expired_no_ttl") and s.get("mode") == "sweep"):
            table.add_row(_reason(reason, s), human.count(n))
    table.add_row(
        "TTL would be repaired" if f.dry_run else "TTL repaired", human.count(s.get("ttl_repaired", 0))
    )
    unreadable = s.get("unreadable", 0)
    flag = WARN if unreadable else ""
    table.add_row(Text("unreadable (found)", style=flag), Text(human.count(unreadable), style=flag))
    f.block(Padding(table, (0, 0, 0, LABEL_INDENT)))
    if "matched" in s:
        f.add("matched", human.count(s["matched"]), WARN if s["matched"] == 0 else None)
    scanned = f"{human.count(s.get('scanned'))} sessions in {human.duration(s.get('duration_s'))}"
    rate = f" ({human.count(s['keys_per_s'])} keys/s)" if s.get("keys_per_s") else ""
    f.add("scanned", scanned + rate + (f" on {s['nodes']} nodes" if (s.get("nodes") or 1) > 1 else ""))
    _sessions_left(s, f)
    if f.dry_run:
        f.note("dry run: nothing was deleted or changed", WARN, indent=2)


def _reason(reason: str, s: dict[str, Any]) -> str:
    params = s.get("params") or {}
    if reason == "organisation":
        return "without an organisationId" if params.get("no_org") else f"of organisation {params.get('org')}"
    return REASONS.get(reason, reason).format(stale_after=s.get("stale_after", "max_age"))


def _sessions_left(s: dict[str, Any], f: Figures) -> None:
    if s.get("changed_skipped"):
        f.add("left alone", f"{human.count(s['changed_skipped'])} changed while the run read them", WARN)
    for sample in s.get("unreadable_samples") or []:
        f.note(f"unreadable: {sample}", WARN, indent=LABEL_INDENT)
    orgs = s.get("remaining_by_org") or {}
    no_org = s.get("remaining_no_org") or 0
    if "remaining" in s:
        f.add(
            "remaining",
            f"{human.count(s['remaining'])} sessions ({human.count(no_org)} without an organisationId)",
        )
    if orgs and f.verbose:
        for org, n in orgs.items():
            f.note(f"{human.count(n):>9}  {org}", indent=LABEL_INDENT)
    pressure = s.get("memory_pressure") or {}
    if pressure.get("applied"):
        f.add(
            "memory", f"used/max {pressure.get('ratio')} over {pressure.get('threshold')}: swept early", WARN
        )
