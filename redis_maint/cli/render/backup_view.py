"""`backups show ID` for people: status and size first, then files, checks and the catalog's events."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.text import Text

from redis_maint.cli.render import human
from redis_maint.cli.render.columns import BACKUP_STYLE
from redis_maint.cli.render.figures import checks
from redis_maint.cli.render.lines import PROBLEM, WARN, Figures

SHA_SHOWN = 16  # enough to compare by eye; --json has all 64


def render_backup(out: dict[str, Any], verbose: int = 0) -> list[RenderableType]:
    catalog, manifest = out.get("catalog"), out.get("manifest") or {}
    status = catalog["status"] if catalog else "not in the catalog"
    head = Text.assemble(
        ("backup ", "bold"), (out["id"], "bold"), "  ", (status, BACKUP_STYLE.get(status, WARN))
    )
    if catalog and catalog.get("kept"):
        head.append(
            f"  kept by {catalog.get('kept_by')}"
            + (f": {catalog['kept_reason']}" if catalog.get("kept_reason") else "")
        )
    f = Figures(verbose=verbose)
    created = (catalog or {}).get("created_at") or manifest.get("created_at")
    if created:
        f.add("created", f"{human.when(created)} UTC ({human.ago(created)})")
    files = manifest.get("files") or (catalog or {}).get("files") or []
    size = (catalog or {}).get("size") or manifest.get("size")
    what = f"{human.size(size)} in {len(files)} files"
    if manifest.get("dbsize") is not None:
        what += f", {human.count(manifest['dbsize'])} keys (Redis {manifest.get('redis_version')} {manifest.get('role')})"
    f.add("size", what)
    f.add("target", out["target"])
    if catalog is None:
        f.note("not in the catalog (found on the target by its manifest)", WARN, indent=2)
    _verified(catalog, f)
    if out.get("manifest_error"):
        f.add("manifest", out["manifest_error"], PROBLEM)
    for x in files:
        sha = str(x.get("sha256") or "")[:SHA_SHOWN]
        f.note(f"{x['path']}  {human.size(x.get('size'))}  sha256 {sha}…", indent=15)
    checks(manifest.get("checks") or (catalog or {}).get("checks"), f)
    for event in (catalog or {}).get("events") or []:
        f.note(f"{human.when(event['at'])}  {event['event']:10} {event['detail']}", indent=2)
    return [head, *f.items]


def _verified(catalog: dict[str, Any] | None, f: Figures) -> None:
    if not catalog or not catalog.get("verified_at"):
        f.add("verified", "never (redis-maint backups verify ID)")
        return
    ok = catalog.get("verify_ok")
    f.add(
        "verified", f"{'ok' if ok else 'FAILED'} {human.ago(catalog['verified_at'])}", None if ok else PROBLEM
    )
