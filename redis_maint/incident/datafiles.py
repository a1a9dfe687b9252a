"""Redis's data files when Redis does not run: is there an AOF and an RDB, and would Redis load
them? A copy is checked with redis-check-aof/rdb in the throwaway check container (the aof-check
job's path, redis_maint/checks/integrity.py), bound by the part's time; the live files are only read.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

from redis_maint.errors import ContainerError, MaintenanceError
from redis_maint.incident import findings as F
from redis_maint.incident.parts import Probe

AOF_DIR = "appendonlydir"
LEGACY_AOF = "appendonly.aof"
RDB = "dump.rdb"


def check(
    probe: Probe,
    data_dir: str,
    *,
    env: Any,  # redis_maint.checks.containers.CheckEnv
    staging: Path,
    run_id: int | str,
    cancel: threading.Event | None,
    timeout_s: float,
    restore: tuple[str, ...],
) -> dict[str, Any]:
    root = Path(data_dir)
    probe.doing(f"listing {root}")
    found = present(root)
    data: dict[str, Any] = {"data_dir": str(root), "files": found, "checks": None}
    if not found:
        probe.findings.add(
            "warning",
            "datafiles.none",
            f"no dump.rdb and no AOF in {root}: Redis would start empty",
            F.CORRUPTION,
            [F.DOCTOR, *restore],
            "If Redis had data, REDIS_MAINT_DATA_DIR may point elsewhere, or the files are gone: restore a backup.",
        )
        return data
    try:
        probe.doing(f"copying the data files to {staging}")
        aof, rdb = stage(root, staging, found)
        probe.doing("running redis-check-aof/rdb in the check container")
        data["checks"] = _run_checks(env, staging, aof, rdb, run_id, cancel, timeout_s)
    except (ContainerError, MaintenanceError, OSError) as exc:
        data["check_error"] = str(exc)
        probe.findings.add(
            "info",
            "datafiles.unchecked",
            "the data files could not be checked",
            F.CORRUPTION,
            [F.DOCTOR],
            str(exc),
        )
        return data
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _judge(probe, data["checks"], restore)
    return data


def present(root: Path) -> list[dict[str, Any]]:
    """The data files Redis would load, with their sizes: dump.rdb, appendonlydir/*, appendonly.aof."""
    files = []
    for rel in (RDB, LEGACY_AOF):
        if (root / rel).is_file():
            files.append({"path": rel, "size": (root / rel).stat().st_size})
    if (root / AOF_DIR).is_dir():
        for p in sorted((root / AOF_DIR).iterdir()):
            if p.is_file():
                files.append({"path": f"{AOF_DIR}/{p.name}", "size": p.stat().st_size})
    return files


def stage(root: Path, staging: Path, found: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """Copy the files into `staging` (the check tools open files read-write: never the live ones).
    Returns what to check: the AOF manifest (or legacy AOF) and the RDB, relative to `staging`."""
    need = sum(f["size"] for f in found)
    staging.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(staging).free
    if need > free:
        raise MaintenanceError(
            f"{staging} has {free:,} bytes free but a copy of the data files needs {need:,}; "
            "free space under docker.snapshot_dir"
        )
    for f in found:
        dest = staging / f["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / f["path"], dest)
    paths = {f["path"] for f in found}
    manifests = sorted(p for p in paths if p.startswith(f"{AOF_DIR}/") and p.endswith(".manifest"))
    aof = manifests[0] if manifests else (LEGACY_AOF if LEGACY_AOF in paths else None)
    return aof, RDB if RDB in paths else None


def _run_checks(env, staging, aof, rdb, run_id, cancel, timeout_s) -> list[dict[str, Any]]:
    from redis_maint.checks.integrity import check_dir, targets

    results = check_dir(env, staging, targets(aof, rdb), run_id=run_id, cancel=cancel, timeout_s=timeout_s)
    return [r.to_dict() for r in results]


def _judge(probe: Probe, checks: list[dict[str, Any]], restore: tuple[str, ...]) -> None:
    for c in checks:
        at = f" at offset {c['offset']}" if c.get("offset") is not None else ""
        if c["verdict"] == "truncated":
            probe.findings.add(
                "critical",
                "datafiles.aof_truncated",
                f"{c['file']} is truncated{at} ({c['tool']}): Redis refuses to load it unless aof-load-truncated is yes",
                F.CORRUPTION,
                [*restore, "docker-compose up -d redis"],
                "The last command in the AOF was cut off (a crash or a full disk while appending). With "
                "`aof-load-truncated yes` (the runbook's redis.conf) Redis loads everything before it and "
                "loses only that command; otherwise restore the newest backup that verifies.",
            )
        elif c["verdict"] == "corrupt":
            probe.findings.add(
                "critical",
                "datafiles.corrupt",
                f"{c['file']} is corrupt{at} ({c['tool']}): Redis cannot load it",
                F.CORRUPTION,
                list(restore),
                "Move data/ aside (keep it) and restore the newest backup that verifies; `redis-check-aof "
                "--fix` would cut data, only ever on the moved-aside copy.",
            )
        elif c["verdict"] == "error":
            probe.findings.add(
                "warning",
                "datafiles.check_error",
                f"{c['file']} could not be checked ({c['tool']})",
                F.CORRUPTION,
                [F.DOCTOR],
                (c.get("output") or "")[-300:],
            )
