"""Load settings from defaults, a TOML file and the environment, reporting every error at once."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from redis_maint.errors import ConfigError
from redis_maint.redact import redact

ENV_PREFIX = "REDIS_MAINT_"
CONFIG_ENV = "REDIS_MAINT_CONFIG"
SHIPPED_CONFIG = Path(__file__).with_name("redis-maint.toml")
# Read by the CLI itself, not part of the schema.
_NOT_SETTINGS = {CONFIG_ENV, "REDIS_MAINT_LOG_FORMAT"}  # a CLI option's variable, not a setting


# Keys that moved, old path -> new path. The old name still works (with a warning in the log)
# and meets the new one only as an error, so a setting is never silently taken from the wrong place.
RENAMED: dict[tuple[str, ...], tuple[str, ...]] = {
    ("backup_target",): ("target", "uri"),
    ("jobs", "backup", "s3"): ("target", "s3"),
    ("notify", "backup_rpo"): ("jobs", "backup_age", "rpo"),
    ("jobs", "backup_verify", "session_pattern"): ("sessions", "key_pattern"),
    **{
        ("jobs", "session_sweep", key): ("sessions", key)
        for key in (
            "key_pattern",
            "created_field",
            "organisation_field",
            "scan_count",
            "read_batch",
            "act_batch",
            "idle_cpu",
            "unreadable_samples",
        )
    },
}


def load_settings(
    config_path: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
    jobs: Mapping[str, Any] | None = None,
):
    """Settings from `--config PATH`, else $REDIS_MAINT_CONFIG, else the shipped file; then env.

    With `jobs` (the job registry) every [jobs.<job>] table is validated against that job's own
    settings model too; without it those tables are kept as they are, unread.
    """
    from config import secrets
    from config.schema import Settings, with_jobs

    environ = os.environ if environ is None else environ
    data, sources, renamed = _gather(config_path, environ)
    model = Settings if jobs is None else with_jobs(jobs)
    try:
        settings = model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(err, sources) for err in exc.errors()]) from None
    secrets.register(settings)  # from now on redact() masks these values in any text
    settings._origins = sources
    settings._config_file = config_source(config_path, environ)
    _warn_renamed(renamed)
    return settings


def load_core(config_path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None):
    """The settings a read of the history needs (config.core_view), from the same sources as
    `load_settings`, checked without building the settings model; a value there that does not pass
    goes down the full path instead, which names it (exit 2) as every other command does."""
    from config.core_view import CoreSettings

    environ = os.environ if environ is None else environ
    data, sources, renamed = _gather(config_path, environ)
    core = CoreSettings.checked(data, sources, config_source(config_path, environ))
    if core is None:
        return load_settings(config_path, environ)
    core.register_secrets()
    _warn_renamed(renamed)
    return core


def raw_settings(
    config_path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The merged sources, unchecked: for what may be wrong without harm (where a cache lives)."""
    return _gather(config_path, os.environ if environ is None else environ)[0]


def _gather(
    config_path: str | os.PathLike | None, environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[tuple[str, ...], str], list[str]]:
    """Every source merged, weakest first, old names moved: (data, where each value came from, renames)."""
    data: dict[str, Any] = {}
    sources: dict[tuple[str, ...], str] = {}
    path, required = _config_file(config_path, environ)
    if path is not None:
        _merge(data, sources, _read_toml(path, required), f"file {path}")
    for key, (value, origin) in _env_settings(environ).items():
        _merge(data, sources, _nest(key, value), origin)
    return data, sources, _apply_renames(data, sources)


def _apply_renames(data: dict[str, Any], sources: dict[tuple[str, ...], str]) -> list[str]:
    """Move settings given under an old name to the new one; both at once is a config error."""
    notes, clashes = [], []
    for old, new in RENAMED.items():
        value = _pop(data, old)
        if value is _MISSING:
            continue
        origin, new_origin = sources.get(old, "default"), sources.get(new, "default")
        if _get(data, new) is not _MISSING:
            if _rank(origin) == _rank(new_origin):
                clashes.append(
                    f"{'.'.join(old)} (from {origin}) and {'.'.join(new)} (from {new_origin}) "
                    f"are the same setting; keep only {'.'.join(new)}"
                )
                continue
            if _rank(origin) < _rank(new_origin):
                continue  # the new name comes from a stronger source (env over file): it wins
        _put(data, new, value)
        for path in [p for p in sources if p[: len(old)] == old]:
            sources[new + path[len(old) :]] = sources.pop(path)
        notes.append(f"{'.'.join(old)} (from {origin}) is now {'.'.join(new)}; rename it")
    if clashes:
        raise ConfigError(clashes)
    return notes


def _rank(origin: str) -> int:
    """Sources, weakest first: defaults, the file, the environment."""
    return 2 if origin.startswith("env ") else 1 if origin.startswith("file ") else 0


def _warn_renamed(notes: list[str]) -> None:
    import logging

    for note in notes:
        logging.getLogger("config").warning("deprecated setting name", extra={"setting": note})


_MISSING = object()


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _pop(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    parent = _get(data, path[:-1]) if len(path) > 1 else data
    if not isinstance(parent, dict) or path[-1] not in parent:
        return _MISSING
    return parent.pop(path[-1])


def _put(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {})
    data[path[-1]] = value


def config_source(
    config_path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The settings file `load_settings` reads, and why that one (doctor prints it)."""
    environ = os.environ if environ is None else environ
    if config_path:
        return f"{config_path} (--config)"
    if environ.get(CONFIG_ENV):
        return f"{environ[CONFIG_ENV]} (${CONFIG_ENV})"
    if SHIPPED_CONFIG.exists():
        return f"{SHIPPED_CONFIG} (the shipped file)"
    return "none (built-in defaults and environment only)"


def _config_file(explicit, environ) -> tuple[Path | None, bool]:
    if explicit:
        return Path(explicit), True
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]), True
    return (SHIPPED_CONFIG if SHIPPED_CONFIG.exists() else None), False


def _read_toml(path: Path, required: bool) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        if required:
            raise ConfigError([f"config file {path} does not exist; fix --config or {CONFIG_ENV}"]) from None
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config file {path} is not valid TOML: {exc}"]) from None
    except OSError as exc:
        raise ConfigError([f"config file {path} cannot be read: {exc.strerror}"]) from None


def _env_settings(environ: Mapping[str, str]) -> dict[tuple[str, ...], tuple[Any, str]]:
    found = {}
    for name, raw in environ.items():
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in _NOT_SETTINGS:
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        found[path] = (_env_value(raw), f"env {name}")
    return found


def _env_value(raw: str) -> Any:
    # Lists and tables can be given as JSON; everything else stays a string for pydantic to coerce.
    if raw.strip().startswith(("[", "{")):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(path):
        out = {part: out}
    return out


def _merge(into: dict, sources: dict, new: Mapping, origin: str, prefix: tuple[str, ...] = ()) -> None:
    for key, value in new.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], sources, value, origin, path)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value
            _record_sources(sources, path, value, origin)


def _record_sources(sources: dict, path: tuple[str, ...], value: Any, origin: str) -> None:
    sources[path] = origin
    if isinstance(value, Mapping):
        for key, sub in value.items():
            _record_sources(sources, (*path, key), sub, origin)


def _describe(err: dict[str, Any], sources: dict[tuple[str, ...], str]) -> str:
    loc = tuple(str(part) for part in err["loc"])
    field = ".".join(loc) or "(top level)"
    origin = "default"
    for n in range(len(loc), 0, -1):
        if loc[:n] in sources:
            origin = sources[loc[:n]]
            break
    if err["type"] == "extra_forbidden":
        return f"{field}: unknown setting (from {origin}); check the spelling against `redis-maint config sample`"
    message = err["msg"].removeprefix("Value error, ")
    value = redact(repr(_masked_input(err["loc"], err.get("input"))))
    return f"{field}: {message} (got {value}, from {origin})"


def _masked_input(loc: tuple, value: Any) -> Any:
    """A rejected value as its field's secret kind masks it (a webhook URL shows its host only)."""
    from pydantic import BaseModel

    from config import secrets
    from config.schema import Settings

    model: Any = Settings
    for part in loc:
        info = model.model_fields.get(part) if isinstance(part, str) else None
        if info is None:
            return value
        kind = next((m for m in info.metadata if isinstance(m, secrets.SecretKind)), None)
        if kind is not None:
            return kind.mask(value) if isinstance(value, str) else value
        model = info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return value
    return value
