"""The `backup-keep` and `backup-unkeep` jobs: `redis-maint backups keep|unkeep ID`, as runs in history
with who and why. Never scheduled.

A kept backup is never pruned by retention until it is unkept. Both change only the catalog. An
unknown, pruned or incomplete backup (keep) or one that is not kept (unkeep) is refused before the
lease (exit 2, nothing recorded). The summary is `{backup_id, reason}`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from config.types import OnDemandSettings
from jobs.base import Job, JobContext, Params

if TYPE_CHECKING:
    from redis_maint.history.catalog import Catalog


def _catalog(store: Any) -> Catalog:
    from redis_maint.history.catalog import Catalog  # sqlalchemy: only when a keep runs

    return Catalog(store)


class KeepSettings(OnDemandSettings):
    """backup-keep and backup-unkeep run only from `redis-maint backups keep` / `unkeep`."""


class KeepParams(Params):
    backup_id: str = Field(min_length=1, description="the backup (`redis-maint backups list`)")
    reason: str | None = Field(default=None, description="why, for the audit trail")

    def recorded(self) -> dict[str, Any]:
        return {}  # the summary is these two values already


class KeepCheck(KeepParams):
    def before_lease(self, settings: Any, store: Any) -> None:
        _catalog(store).check_keepable(self.backup_id)


class UnkeepCheck(KeepParams):
    def before_lease(self, settings: Any, store: Any) -> None:
        _catalog(store).check_kept(self.backup_id)


def keep(ctx: JobContext) -> dict[str, Any]:
    return _change(ctx, _catalog(ctx.store).keep)


def unkeep(ctx: JobContext) -> dict[str, Any]:
    return _change(ctx, _catalog(ctx.store).unkeep)


def _change(ctx: JobContext, change) -> dict[str, Any]:
    params: KeepParams = ctx.params
    if not ctx.dry_run:
        change(params.backup_id, reason=params.reason, by=ctx.requested_by or "unknown")
    return {"backup_id": params.backup_id, "reason": params.reason}


KEEP = Job(
    name="backup-keep",
    description="keep one backup from retention (backups keep ID); never scheduled",
    settings_model=KeepSettings,
    run=keep,
    params_model=KeepCheck,
)
UNKEEP = Job(
    name="backup-unkeep",
    description="let retention apply to a kept backup again (backups unkeep ID); never scheduled",
    settings_model=KeepSettings,
    run=unkeep,
    params_model=UnkeepCheck,
)
