"""Infrastructure that redis-maint's jobs call: history, locks, run path, Redis helpers."""

__version__ = "0.1.0"
