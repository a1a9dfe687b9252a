"""Restore a stored backup into a directory for a Redis started there: all of it or nothing.

Order: read the manifest (a hostile one fails here, exit 1), refuse if a Redis runs on the
directory (exit 2, whatever --force says), refuse a non-empty directory without --force,
download and verify into a staging dir inside the directory (same filesystem, so the final
step is renames), move the old Redis files aside, rename the new ones in. Any failure undoes
what was done: old files go back, and directories this restore created are removed.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis_maint.backup import stored
from redis_maint.backup.live_redis import DirCheck
from redis_maint.errors import UsageError
from redis_maint.progress import Progress
from redis_maint.storage import Target
from redis_maint.storage.base import fsync_dir
from redis_maint.timeutil import utcnow

Probe = Callable[[Path], DirCheck]
STAGING_MARK = ".redis-maint-restore-"


def restore(
    target: Target,
    location: str,
    directory: Path,
    *,
    force: bool,
    probe: Probe,
    checkpoint: stored.Checkpoint | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Download, verify, then lay the files out in `directory`; refuses a directory a Redis runs on."""
    directory, manifest, live = preflight(target, location, directory, force=force, probe=probe)
    created = _make_dirs(directory)
    try:
        moved = _lay_out(target, location, manifest, directory, checkpoint, progress)
    except BaseException:
        _remove_dirs(created)
        raise
    return {
        "id": manifest["id"],
        "target": target.uri_for(location),
        "dir": str(directory),
        "files": [{k: f[k] for k in ("path", "size", "sha256")} for f in manifest["files"]],
        "moved_aside": moved,
        "appendonly": "yes" if manifest.get("aof_manifest") else "no",
        "redis_version": manifest.get("redis_version"),
        "next": _start_hint(directory, manifest),
        "expected_dbsize": _dbsize(manifest),
        "check_after_start": check_commands(manifest, None),
        "warnings": live.notes,
    }


def preflight(
    target: Target, location: str, directory: Path, *, force: bool, probe: Probe
) -> tuple[Path, dict[str, Any], DirCheck]:
    """The refusals a restore makes before it writes anything (UsageError): a Redis runs on the
    directory, or the directory is not empty and `force` is not given. Reads the manifest (a hostile
    one raises IntegrityError) and returns the absolute directory, the manifest and the probe's answer."""
    directory = Path(os.path.abspath(directory))
    manifest = stored.read_manifest(target, location)
    live = probe(directory)
    if live.live:
        raise UsageError(refusal(directory, live, manifest))
    if _entries(directory) and not force:
        raise UsageError(
            f"{directory} is not empty ({', '.join(_entries(directory)[:5])}); restore into an empty "
            "directory, or pass --force to move the Redis files already there aside"
        )
    return directory, manifest, live


def _entries(directory: Path) -> list[str]:
    try:
        return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    except OSError as exc:
        raise stored.local_write_error(exc, directory) from None


def _make_dirs(directory: Path) -> list[Path]:
    """Create `directory` and missing parents; return the ones created, deepest first."""
    missing, p = [], directory
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    if os.path.lexists(directory) and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a directory; pass a directory to --target")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_dirs(missing)
        raise stored.local_write_error(exc, directory) from None
    return missing


def _remove_dirs(created: list[Path]) -> None:
    for d in created:  # deepest first; only if still empty, never anything someone else put there
        try:
            d.rmdir()
        except OSError:
            return


def _lay_out(
    target: Target, location: str, manifest: dict, directory: Path, checkpoint, progress: Progress | None
) -> str | None:
    staged = directory / f"{STAGING_MARK}{secrets.token_hex(4)}"
    stored.download_files(target, location, manifest, staged, checkpoint, progress)
    try:
        moved = _swap_in(directory, staged, manifest)
        fsync_dir(directory)
        return moved
    except OSError as exc:
        raise stored.local_write_error(exc, directory) from None
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _swap_in(directory: Path, staged: Path, manifest: dict) -> str | None:
    """Old Redis files aside, new ones in by rename; on failure, the old ones back."""
    aside = _move_aside(directory, _redis_names(manifest))
    placed: list[str] = []
    try:
        for name in sorted({f["path"].split("/", 1)[0] for f in manifest["files"]}):
            (staged / name).rename(directory / name)
            placed.append(name)
    except BaseException:
        for name in reversed(placed):
            (directory / name).rename(staged / name)  # removed with the staging dir
        _move_back(directory, aside)
        raise
    return None if aside is None else str(aside)


def _redis_names(manifest: dict[str, Any]) -> set[str]:
    """Top-level names a Redis would load from: replace all, so a stale AOF cannot shadow the restore."""
    names = {"dump.rdb", "appendonlydir", "appendonly.aof"}
    for rel in (manifest.get("rdb"), manifest.get("aof_manifest"), *(f["path"] for f in manifest["files"])):
        if rel:
            names.add(rel.split("/", 1)[0])
    return names


def _move_aside(directory: Path, names: set[str]) -> Path | None:
    present = [n for n in sorted(names) if os.path.lexists(directory / n)]
    if not present:
        return None
    aside = directory / f".before-restore-{utcnow():%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
    aside.mkdir()
    try:
        for name in present:
            (directory / name).rename(aside / name)
    except BaseException:
        _move_back(directory, aside)
        raise
    return aside


def _move_back(directory: Path, aside: Path | None) -> None:
    if aside is None:
        return
    for entry in aside.iterdir():
        entry.rename(directory / entry.name)
    aside.rmdir()


def _start_hint(directory: Path, manifest: dict[str, Any]) -> str:
    rdb = manifest.get("rdb") or "dump.rdb"
    cmd = ["redis-server", "--dir", str(directory), "--dbfilename", rdb]
    if not manifest.get("aof_manifest"):
        return shlex.join([*cmd, "--appendonly", "no"])
    aof = manifest["aof_manifest"]
    appenddir = aof.split("/", 1)[0] if "/" in aof else None
    extra = ["--appenddirname", appenddir] if appenddir and appenddir != "appendonlydir" else []
    return shlex.join([*cmd, "--appendonly", "yes", *extra])


def _dbsize(manifest: dict[str, Any]) -> int | None:
    value = manifest.get("dbsize")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_commands(manifest: dict[str, Any], port: int | None) -> list[str]:
    """What to run once Redis is up on the restored files, to see it loaded this backup."""
    cli = f"redis-cli -p {port}" if port else "redis-cli"
    verify = shlex.join(["redis-maint", "backups", "verify", manifest["id"], "--deep", "--json"])
    expected = _dbsize(manifest)
    return [
        f"{cli} DBSIZE  # expect {expected if expected is not None else 'the key count at backup time'} "
        "(the manifest's dbsize; keys whose TTL ran out since the backup are not loaded)",
        f"{cli} DEBUG DIGEST  # expect deep.server.digest from `{verify}` "
        "(DEBUG needs enable-debug-command local; in compose: docker-compose exec redis redis-cli DEBUG DIGEST)",
    ]


def refusal(directory: Path, live: DirCheck, manifest: dict[str, Any]) -> str:
    """Why the restore will not write there, how to stop that Redis, and how to check afterwards."""
    port = next((r.port for r in live.live if r.port), None)
    stops = list(dict.fromkeys(cmd for r in live.live for cmd in r.stop))
    again = shlex.join(["redis-maint", "backups", "restore", manifest["id"], "--target", str(directory)])
    lines = [
        f"a Redis is running on {directory}; --force does not override this. A running Redis rewrites "
        "its files from memory and keeps appending to the AOF it has open, so it would throw the "
        "restored files away. Found:",
        *(f"  - {r.detail}" for r in live.live),
        *(f"  ({note})" for note in live.notes),
        "Stop it first:",
        *(f"  {stop}" for stop in stops),
        f"then run `{again} --force`, start Redis on {directory} again, and check the restore:",
        *(f"  {cmd}" for cmd in check_commands(manifest, port)),
    ]
    return "\n".join(lines)
