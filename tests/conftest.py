"""Registers the shared fixtures once, for every test module (tests/support/fixtures/).

Helpers are imported from tests.support; a test module never imports this file or another test module.
"""

import pytest

# Plain asserts in the helpers report their operands, as they do in tests.
pytest.register_assert_rewrite("tests.support")

pytest_plugins = [
    "tests.support.fixtures.core",  # isolated settings, redis_server, s3, cli, ...
    "tests.support.fixtures.backup",  # backup_env, bucket, pitr_source
    "tests.support.fixtures.docker",  # docker_engine, check_image, local_image, no_leftovers
    "tests.support.fixtures.cluster",  # redis_cluster
    "tests.support.fixtures.postgres",  # postgres_server, postgres_url, history_url (sqlite | postgresql)
    "tests.support.fixtures.sentinel",  # sentinel_bed, sentinel_bed_to_fail (primary, replica, Sentinel)
]
