"""The real Docker engine's side of the tests: the local check image's tag and redis-maint's containers."""

from __future__ import annotations

CHECK_IMAGE = "redis-maint-check:7"  # the tag scripts/build-check-image.sh builds by default
MANAGED = "redis-maint.managed=1"


def managed_containers(client) -> list:
    """Every container redis-maint made that still exists, running or not (`docker ps -a`)."""
    return client.containers.list(all=True, filters={"label": MANAGED})
