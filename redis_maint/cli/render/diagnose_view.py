"""A diagnose run for people: the verdict first (findings, critical first, each with its runbook
procedure and the commands to run next), then one line per part. `redis-maint diagnose` and
`history show RUN_ID` of a diagnose run both render through here."""

from __future__ import annotations

from typing import Any

from redis_maint.cli.render import human
from redis_maint.cli.render.lines import LABEL_INDENT, PROBLEM, WARN, Figures, generic, renders

SEVERITY_STYLE = {"critical": PROBLEM, "warning": "bold yellow", "info": "cyan"}
LEVEL_STYLE = {"ok": "bold green", "info": "cyan", **SEVERITY_STYLE}
PART_STATUS_STYLE = {"failed": PROBLEM, "timeout": PROBLEM, "skipped": WARN}
PARTS = ("reachability", "container", "host", "memory", "persistence", "load", "datafiles")


@renders("diagnose")
def diagnose(s: dict[str, Any], f: Figures) -> None:
    if "verdict" not in s:
        generic(s, f)
        return
    verdict = s.get("verdict") or []
    f.add("level", f"{s.get('level')}: {_counts(verdict)}", LEVEL_STYLE.get(s.get("level"), ""))
    for finding in verdict:
        _finding(finding, f)
    parts = s.get("parts") or {}
    f.add("parts", f"{len(parts)} looked at")
    for name in [*PARTS, *(p for p in parts if p not in PARTS)]:
        if name in parts:
            _part(name, parts[name], f)


def _counts(verdict: list[dict[str, Any]]) -> str:
    if not verdict:
        return "nothing found"
    counts = {}
    for finding in verdict:
        counts[finding["severity"]] = counts.get(finding["severity"], 0) + 1
    words = {"critical": "critical", "warning": "warning", "info": "note"}
    return ", ".join(f"{n} {words[k]}{'s' if n > 1 and k != 'critical' else ''}" for k, n in counts.items())


def _finding(finding: dict[str, Any], f: Figures) -> None:
    severity = finding.get("severity", "info")
    f.add(severity.upper(), finding.get("title"), SEVERITY_STYLE.get(severity))
    if finding.get("detail"):
        f.note(finding["detail"], indent=LABEL_INDENT)
    f.note(f"runbook  {finding.get('procedure')}", indent=LABEL_INDENT)
    for i, command in enumerate(finding.get("next") or []):
        f.note(f"{'next' if i == 0 else '':<8} {command}", "bold" if i == 0 else None, indent=LABEL_INDENT)


def _part(name: str, p: dict[str, Any], f: Figures) -> None:
    status = p.get("status")
    if status != "ok":
        f.note(f"{name:<13} {status}: {p.get('reason')}", PART_STATUS_STYLE.get(status), indent=4)
        return
    line = LINES.get(name, lambda _p: "")(p)
    f.note(f"{name:<13} ok{': ' + line if line else ''} ({human.duration(p.get('duration_s'))})", indent=4)


def _reachability(p: dict[str, Any]) -> str:
    server = p.get("server") or {}
    ping = (
        f"PING {p['ping_ms']} ms" if p.get("ping_ms") is not None else f"{p.get('state')}: {p.get('error')}"
    )
    version = f", Redis {server['redis_version']} {server.get('role')}" if server.get("redis_version") else ""
    return ping + version


def _container(p: dict[str, Any]) -> str:
    if not p.get("found"):
        return f"no container {p.get('name')!r}"
    stats = p.get("stats") or {}
    usage = ""
    if stats:
        usage = f", CPU {stats.get('cpu_percent')}%, memory {human.size(stats.get('memory_bytes'))}"
    oom = ", OOM-killed" if p.get("oom_killed") else ""
    return f"{p['name']} {p.get('state')}, {p.get('restarts')} restarts{oom}{usage}, {len(p.get('logs') or [])} log lines"


def _host(p: dict[str, Any]) -> str:
    mem = p.get("memory") or {}
    disk = p.get("data_dir") or {}
    need = (p.get("need") or {}).get("total_bytes")
    ram = f"{human.size(mem.get('available_bytes'))} of {human.size(mem.get('total_bytes'))} RAM free"
    if not disk.get("exists"):
        return f"{ram}; data dir {disk.get('path')} missing"
    return f"{ram}; {human.size(disk.get('free_bytes'))} free on the data dir, saves need ~{human.size(need)}"


def _memory(p: dict[str, Any]) -> str:
    of = f" of {human.size(p['maxmemory'])}" if p.get("maxmemory") else " (no maxmemory)"
    keys = p.get("keys") or {}
    top = ", ".join(f"{r['prefix']} {human.size(r.get('bytes'))}" for r in (keys.get("by_prefix") or [])[:3])
    sampled = "" if keys.get("complete", True) else f" (sampled {human.count(keys.get('scanned'))} keys)"
    return (
        f"{human.size(p.get('used_memory'))}{of}, {p.get('maxmemory_policy')}, "
        f"{human.count(p.get('evicted_keys'))} evicted" + (f"; top {top}{sampled}" if top else "")
    )


def _persistence(p: dict[str, Any]) -> str:
    age = p.get("last_save_age_s")
    saved = f"last save {human.duration(age)} ago" if age is not None else "never saved"
    return (
        f"bgsave {p.get('rdb_last_bgsave_status')}, AOF {'on' if p.get('aof_enabled') else 'off'} "
        f"(write {p.get('aof_last_write_status')}), {saved}"
    )


def _load(p: dict[str, Any]) -> str:
    c = p.get("clients") or {}
    slow = p.get("slowlog") or {}
    return f"{c.get('connected')} clients, {c.get('blocked')} blocked; {slow.get('new_entries')} new slowlog entries"


def _datafiles(p: dict[str, Any]) -> str:
    files = p.get("files") or []
    checks = p.get("checks") or []
    verdicts = (
        ", ".join(f"{c['file']} {c['verdict']}" for c in checks) or p.get("check_error") or "not checked"
    )
    return f"{len(files)} files ({human.size(sum(x['size'] for x in files))}); {verdicts}"


LINES = {
    "reachability": _reachability,
    "container": _container,
    "host": _host,
    "memory": _memory,
    "persistence": _persistence,
    "load": _load,
    "datafiles": _datafiles,
}
