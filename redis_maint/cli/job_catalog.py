"""What `jobs` needs of every registered job (name, description, default schedule, whether it runs
on demand only, which settings it takes), kept in a small file so that listing the jobs does not
import every job module and its libraries.

The file is `<state_dir>/job-catalog.json`, under a key made from the files of the `jobs` and
`config` packages (paths, sizes, modification times): any change to them rebuilds it from
jobs.REGISTRY. Nothing in it is secret. A file that cannot be read or written is no error: the
registry is imported instead.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import click

from config.core_view import JobFacts

CACHE_NAME = "job-catalog.json"
FORMAT = 3  # bump when JobFacts or its meaning changes


def job_catalog(state_dir: str | None) -> list[JobFacts]:
    """Every registered job's facts, in registry order: from the cache when it is current."""
    key = fingerprint()
    path = Path(state_dir) / CACHE_NAME if state_dir and key else None
    cached = _read(path, key) if path is not None else None
    if cached is not None:
        return cached
    facts = from_registry()
    if path is not None:
        _write(path, key, facts)
    return facts


def catalog_for_help(ctx: click.Context) -> list[JobFacts]:
    """The catalog for `run --help`, found from the settings' state_dir as given (unchecked: help
    never fails on a bad setting; at worst the registry is imported)."""
    from config.core_view import DEFAULTS
    from config.loader import raw_settings
    from redis_maint.errors import MaintenanceError

    app = ctx.find_root().obj
    try:
        state_dir = raw_settings(getattr(app, "config_path", None)).get("state_dir", DEFAULTS["state_dir"])
    except MaintenanceError:
        state_dir = None
    return job_catalog(state_dir if isinstance(state_dir, str) else None)


def from_registry() -> list[JobFacts]:
    from config.types import OnDemandSettings
    from jobs import REGISTRY
    from redis_maint.schedules import parse_schedule

    return [
        JobFacts(
            name=name,
            description=job.description,
            schedule_default=str(parse_schedule(job.settings_model.model_fields["schedule"].default)),
            on_demand=issubclass(job.settings_model, OnDemandSettings),
            fields=tuple(job.settings_model.model_fields),
            scope=job.scope,
        )
        for name, job in REGISTRY.items()
    ]


def fingerprint() -> str | None:
    """A key that changes whenever a file of the jobs or config packages does (None: not found)."""
    import hashlib
    from importlib.util import find_spec

    digest = hashlib.sha256(f"job-catalog {FORMAT}\n".encode())
    for package in ("jobs", "config"):
        spec = find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        for directory in spec.submodule_search_locations:
            for path in sorted(Path(directory).rglob("*.py")):
                try:
                    st = path.stat()
                except OSError:
                    return None
                digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _read(path: Path, key: str) -> list[JobFacts] | None:
    try:
        data = json.loads(path.read_text())
        if data.get("key") != key:
            return None
        return [JobFacts(**{**job, "fields": tuple(job["fields"])}) for job in data["jobs"]]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _write(path: Path, key: str, facts: list[JobFacts]) -> None:
    """Atomically (a reader never sees half a file); a state dir we cannot write is no error."""
    body = {"key": key, "jobs": [{**vars(f), "fields": list(f.fields)} for f in facts]}
    tmp = path.with_name(f".{CACHE_NAME}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(body, indent=1))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
