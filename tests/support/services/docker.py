"""The real Docker engine's side of the tests: the local check image's tag and redis-maint's containers.

The engine is shared by every test process (xdist workers, other suites on the machine), so a test
that asserts "no container left behind" looks only at its own: the containers whose mounts come from
its tmp_path (every container a job starts mounts a directory under docker.snapshot_dir, which the
fixtures put under tmp_path), or that carry this process's run id (TEST_RUN_ID, for Engines that
tests make themselves).
"""

from __future__ import annotations

import os
from pathlib import Path

CHECK_IMAGE = "redis-maint-check:7"  # the tag scripts/build-check-image.sh builds by default
MANAGED = "redis-maint.managed=1"
LABEL_RUN = "redis-maint.run-id"
# The run-id label of the containers tests start through their own Engine: one per test process.
TEST_RUN_ID = f"t-{os.getpid()}"


def managed_containers(client, **filters: str) -> list:
    """Every container redis-maint made that still exists, running or not (`docker ps -a`), whoever made it.

    A container removed while the list is read (another process finishing its check) is left out.
    """
    labels = [MANAGED, *([filters.pop("label")] if "label" in filters else [])]
    return client.containers.list(all=True, filters={**filters, "label": labels}, ignore_removed=True)


def belongs_to(container, scope: Path) -> bool:
    """Whether a test whose files are under `scope` (its tmp_path) made this container."""
    if container.labels.get(LABEL_RUN) == TEST_RUN_ID:
        return True
    root = os.path.realpath(scope)
    for mount in container.attrs.get("Mounts") or []:
        source = os.path.realpath(mount.get("Source") or "/nonexistent")
        if source == root or source.startswith(root + os.sep):
            return True
    return False


def own_containers(client, scope: Path, **filters: str) -> list:
    """The managed containers (see managed_containers) that the test with tmp_path `scope` made."""
    return [c for c in managed_containers(client, **filters) if belongs_to(c, scope)]
