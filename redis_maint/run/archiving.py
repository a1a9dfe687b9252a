"""Wiring of the AOF archiver (redis_maint/archive/) from the settings, for the daemon and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from redis_maint.archive.service import ArchiverService, ServiceConfig
from redis_maint.history.runs import HistoryStore

if TYPE_CHECKING:
    from config.schema import Settings


def service_config(settings: Settings, config_hash: str | None = None) -> ServiceConfig:
    a = settings.archive
    return ServiceConfig(
        instance=settings.instance,
        node_url=settings.node_redis_url,
        redis_timeout=settings.redis_timeout,
        data_dir=Path(settings.data_dir),
        staging_dir=Path(settings.state_dir) / "archive-staging",
        interval=a.interval,
        window=a.window,
        configure_redis=a.configure_redis,
        lease_ttl=settings.lock.lease_ttl,
        config_hash=config_hash,
    )


def build_service(
    settings: Settings, store: HistoryStore, *, requested_by: str = "daemon", config_hash: str | None = None
) -> ArchiverService:
    from redis_maint.redis_conn import connect

    return ArchiverService(
        service_config(settings, config_hash),
        store,
        settings.target.open,
        connect,
        requested_by=requested_by,
    )
