"""The host: memory (/proc/meminfo, as `free -m`), the data dir's disk (as `df -h`), and whether
the free disk covers what a BGSAVE and an AOF rewrite write next: each writes a new file about
the size of the dataset (used_memory_dataset; the current dump.rdb when Redis cannot say)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from redis_maint.incident import findings as F
from redis_maint.incident.parts import Probe

MEMINFO = Path("/proc/meminfo")
OVERCOMMIT = Path("/proc/sys/vm/overcommit_memory")


def check(probe: Probe, data_dir: str, info: dict[str, Any] | None) -> dict[str, Any]:
    probe.doing("reading /proc/meminfo")
    memory = meminfo()
    probe.doing(f"reading the disk of {data_dir}")
    disk = disk_of(Path(data_dir))
    files = data_file_sizes(Path(data_dir))
    need = write_need(info, files)
    data = {
        "memory": memory,
        "overcommit_memory": _overcommit(),
        "data_dir": disk,
        "files": files,
        "need": need,
    }
    _judge(probe, data, info)
    return data


def meminfo() -> dict[str, int] | None:
    try:
        text = MEMINFO.read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return {
        "total_bytes": values.get("MemTotal"),
        "available_bytes": values.get("MemAvailable"),
        "swap_total_bytes": values.get("SwapTotal"),
        "swap_free_bytes": values.get("SwapFree"),
    }


def _overcommit() -> int | None:
    try:
        return int(OVERCOMMIT.read_text().strip())
    except (OSError, ValueError):
        return None


def disk_of(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"path": str(path), "exists": path.is_dir()}
    if not out["exists"]:
        return out
    usage = shutil.disk_usage(path)
    out.update(
        total_bytes=usage.total,
        free_bytes=usage.free,
        used_percent=round((usage.total - usage.free) / usage.total * 100, 1) if usage.total else None,
        writable=os.access(path, os.W_OK),
    )
    return out


def data_file_sizes(data_dir: Path) -> dict[str, int | None]:
    """dump.rdb and the AOF (appendonlydir/ or a legacy appendonly.aof), in bytes."""
    rdb = data_dir / "dump.rdb"
    aof_dir = data_dir / "appendonlydir"
    legacy = data_dir / "appendonly.aof"
    aof = None
    if aof_dir.is_dir():
        aof = sum(p.stat().st_size for p in aof_dir.iterdir() if p.is_file())
    elif legacy.is_file():
        aof = legacy.stat().st_size
    return {"rdb_bytes": rdb.stat().st_size if rdb.is_file() else None, "aof_bytes": aof}


def write_need(info: dict[str, Any] | None, files: dict[str, int | None]) -> dict[str, Any]:
    """Bytes the next BGSAVE and AOF rewrite write (each a new file about the dataset's size)."""
    if info and info.get("used_memory_dataset") is not None:
        dataset, source = int(info["used_memory_dataset"]), "used_memory_dataset"
    else:
        dataset, source = int(files.get("rdb_bytes") or 0), "dump.rdb size"
    aof_on = bool(int(info.get("aof_enabled", 0))) if info else files.get("aof_bytes") is not None
    return {
        "bgsave_bytes": dataset,
        "aof_rewrite_bytes": dataset if aof_on else 0,
        "total_bytes": dataset * (2 if aof_on else 1),
        "estimated_from": source,
    }


def _judge(probe: Probe, data: dict[str, Any], info: dict[str, Any] | None) -> None:
    add = probe.findings.add
    disk = data["data_dir"]
    if not disk["exists"]:
        add(
            "critical",
            "host.data_dir_missing",
            f"Redis's data dir {disk['path']} does not exist (as this process sees it)",
            F.PERSISTENCE,
            [F.DOCTOR, "redis-maint config show --origin"],
            "If Redis's own `dir` is gone, every BGSAVE and AOF rewrite fails and Redis answers MISCONF; "
            "otherwise REDIS_MAINT_DATA_DIR points at the wrong place.",
        )
        return
    if not disk.get("writable"):
        add(
            "warning",
            "host.data_dir_readonly",
            f"{disk['path']} is not writable by this process",
            F.PERSISTENCE,
            [F.DOCTOR],
        )
    need, free = data["need"]["total_bytes"], disk["free_bytes"]
    if need and free < need:
        add(
            "critical",
            "host.disk_for_save",
            f"{_mib(free)} free on the data dir's disk, but the next BGSAVE and AOF rewrite need about {_mib(need)}",
            F.PERSISTENCE,
            ["df -h", F.HEALTH_RUN],
            "A save that runs out of disk fails, and Redis then refuses writes (MISCONF). Free space "
            "or grow the volume before the next save.",
        )
    elif need and free < 2 * need:
        add(
            "warning",
            "host.disk_for_save",
            f"only {_mib(free)} free for saves that need about {_mib(need)}",
            F.PERSISTENCE,
            ["df -h"],
        )
    memory = data["memory"] or {}
    used = int(info.get("used_memory", 0)) if info else 0
    available = memory.get("available_bytes")
    if used and available is not None and available < used:
        add(
            "warning",
            "host.memory_for_fork",
            f"{_mib(available)} of host memory available, less than Redis's {_mib(used)}",
            F.MEMORY,
            ["free -m", F.SWEEP_DRY],
            "A BGSAVE or AOF rewrite forks; under heavy writes copy-on-write can need up to used_memory more.",
        )
    if data["overcommit_memory"] == 0 and used:
        add(
            "info",
            "host.overcommit",
            "vm.overcommit_memory is 0; Redis recommends 1 so a fork for BGSAVE cannot be refused",
            F.PERSISTENCE,
            ["sysctl vm.overcommit_memory"],
        )


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 1048576:.1f} MiB"
