"""redis-check-aof and redis-check-rdb on a snapshot, in one throwaway container.

Never on live files: redis-check-aof opens every file read-write (`r+`) even to check it, so
it gets a private copy. A snapshot may hard-link immutable files (dump.rdb, the AOF base,
the manifest) to the live inode to save a copy; those links are replaced by real copies
(checked against the snapshot's sha256) before anything else touches them. `--fix` is never run.

Both tools run in one `sh -c` (redis:7-alpine has busybox sh; the local image has dash),
each followed by a marker line carrying its exit code, so one container gives every verdict.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis_maint.checks.containers import CheckEnv, ContainerSpec, Engine, Finished, plan_mount
from redis_maint.checks.verdicts import AOF_TOOL, RDB_TOOL, CheckResult, Verdict, failed, parse
from redis_maint.errors import IntegrityError

if TYPE_CHECKING:
    from redis_maint.snapshot.take import Snapshot

log = logging.getLogger("redis_maint.checks.integrity")

MARK = "@@redis-maint-check@@"
CHUNK = 1 << 20


@dataclass(frozen=True)
class CheckTarget:
    tool: str
    path: str  # relative to the checked directory, POSIX


def targets(aof: str | None, rdb: str | None) -> list[CheckTarget]:
    """The AOF manifest (or legacy AOF) for redis-check-aof, the RDB for redis-check-rdb."""
    found = []
    if aof:
        found.append(CheckTarget(AOF_TOOL, aof))
    if rdb:
        found.append(CheckTarget(RDB_TOOL, rdb))
    return found


def check_snapshot(
    env: CheckEnv,
    snapshot: Snapshot,
    *,
    run_id: int | str,
    cancel: threading.Event | None,
    timeout_s: float,
) -> list[dict[str, Any]]:
    """Check a snapshot's AOF set and RDB; one `{file, tool, verdict, offset, output}` per tool."""
    private_copies(snapshot.root, ((f.path, f.sha256) for f in snapshot.files))
    found = targets(snapshot.aof_manifest, snapshot.rdb)
    results = check_dir(env, snapshot.root, found, run_id=run_id, cancel=cancel, timeout_s=timeout_s)
    log.info(
        "integrity checked",
        extra={"checks": [(r.file, str(r.verdict)) for r in results], "root": str(snapshot.root)},
    )
    return [r.to_dict() for r in results]


def checks_ok(checks: list[dict[str, Any]]) -> bool:
    """True when something was checked and every verdict is ok."""
    return bool(checks) and all(c["verdict"] == Verdict.OK for c in checks)


def describe_failures(checks: list[dict[str, Any]]) -> str:
    """`file: verdict at offset N (tool)` for each check that is not ok, for error messages."""
    parts = []
    for c in checks:
        if c["verdict"] != Verdict.OK:
            at = f" at offset {c['offset']}" if c["offset"] is not None else ""
            parts.append(f"{c['file']}: {c['verdict']}{at} ({c['tool']})")
    return "; ".join(parts) or "nothing was checked"


def check_dir(
    env: CheckEnv,
    root: Path,
    found: list[CheckTarget],
    *,
    run_id: int | str,
    cancel: threading.Event | None,
    timeout_s: float,
) -> list[CheckResult]:
    """Run the tools on `root` (a disposable copy the container may open read-write)."""
    if not found:
        return []
    engine = Engine(env.docker, run_id)
    try:
        engine.ensure_image(env.image)
        hand_over(root, env.docker.user)
        spec = ContainerSpec(
            image=env.image,
            command=["sh", "-c", script(found)],
            purpose="check",
            mount=plan_mount(root, env.docker),
        )
        finished = engine.run(spec, timeout_s, cancel)
    finally:
        engine.close()
    return verdicts(finished, found, timeout_s)


def script(found: list[CheckTarget]) -> str:
    """One shell line per tool; stdin is /dev/null so nothing can ever wait for an answer."""
    lines = []
    for i, t in enumerate(found):
        lines.append(
            f'echo "{MARK} begin {i}"; {t.tool} {shlex.quote(t.path)} </dev/null 2>&1; echo "{MARK} end {i} $?"'
        )
    return "\n".join(lines)


def verdicts(finished: Finished, found: list[CheckTarget], timeout_s: float) -> list[CheckResult]:
    """Split the container's output at the markers and parse each tool's part."""
    sections = split_sections(finished.output)
    results = []
    for i, t in enumerate(found):
        text, code = sections.get(i, ("", None))
        if code is not None:
            results.append(parse(t.tool, code, text, t.path))
        elif finished.timed_out:
            results.append(failed(t.tool, t.path, f"killed: still running after {timeout_s:.0f}s", text))
        else:
            reason = f"the check container exited {finished.exit_code} before {t.tool} finished"
            results.append(failed(t.tool, t.path, reason, text or finished.output))
    return results


def split_sections(output: str) -> dict[int, tuple[str, int | None]]:
    """index -> (the tool's output, its exit code or None when it never finished)."""
    sections: dict[int, tuple[str, int | None]] = {}
    current: int | None = None
    buf: list[str] = []
    for line in output.splitlines():
        if line.startswith(f"{MARK} begin "):
            current, buf = int(line.split()[2]), []
            sections[current] = ("", None)
        elif line.startswith(f"{MARK} end ") and current is not None:
            sections[current] = ("\n".join(buf), int(line.split()[3]))
            current = None
        elif current is not None:
            buf.append(line)
            sections[current] = ("\n".join(buf), None)
    return sections


def private_copies(root: Path, files: Iterable[tuple[str, str]]) -> None:
    """Replace hard links to live files by real copies with the same bytes (sha256 checked)."""
    for rel, sha256 in files:
        path = root / rel
        if os.stat(path).st_nlink <= 1:
            continue
        tmp = path.with_name(f".{path.name}.private")
        shutil.copyfile(path, tmp)
        if _sha256(tmp) != sha256:
            tmp.unlink()
            raise IntegrityError(
                f"{rel} changed after it was snapshotted (sha256 differs); take a new snapshot"
            )
        os.replace(tmp, path)


def hand_over(root: Path, user: str) -> None:
    """The container user must open the copy read-write: chown it when we can, else open it up."""
    if not user:
        return
    ids = _numeric_user(user)
    paths = [root, *root.rglob("*")]
    if ids is not None and os.geteuid() == 0:
        for p in paths:
            os.chown(p, *ids, follow_symlinks=False)
        return
    for p in paths:
        if not p.is_symlink():
            extra = 0o777 if p.is_dir() else 0o666
            p.chmod(p.stat().st_mode | extra)


def _numeric_user(user: str) -> tuple[int, int] | None:
    uid, _, gid = user.partition(":")
    if uid.isdigit() and (not gid or gid.isdigit()):
        return int(uid), int(gid or uid)
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
