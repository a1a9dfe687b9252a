"""Settings: one schema (config.schema), loaded by config.loader, sample in redis-maint.toml."""

from config.loader import load_settings

__all__ = ["load_settings"]
