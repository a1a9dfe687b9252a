"""Fixtures for the backup tests (loaded with `pytest_plugins`; helpers are in backup_helpers)."""

from __future__ import annotations

import boto3
import pytest

from tests.backup_helpers import BUCKET


@pytest.fixture
def backup_env(monkeypatch, tmp_path):
    """Backup settings for tests: no Docker integrity check, staging under tmp_path."""
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__VERIFY_BEFORE_UPLOAD", "false")
    monkeypatch.setenv("REDIS_MAINT_JOBS__BACKUP__STAGING_DIR", str(tmp_path / "staging"))
    return tmp_path / "staging"


@pytest.fixture
def bucket(s3, monkeypatch):
    """An empty bucket in moto's server, with the backup target pointing at it."""
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("REDIS_MAINT_TARGET__URI", f"s3://{BUCKET}/redis")
    return BUCKET
