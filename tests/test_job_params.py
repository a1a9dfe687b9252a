"""Run parameters are typed and checked before the lease: a typo exits 2 and leaves no history row."""

from __future__ import annotations

import pytest

from tests.support.builders.sessions import HOUR_MS, put, server_now_ms, session
from tests.support.common import json_out


def _rows(cli) -> list:
    return json_out(cli("history", "--json"))


@pytest.mark.parametrize("value", ["2", "90"])
def test_older_than_without_a_unit_exits_2_and_deletes_nothing(redis_server, cli, value):
    client = redis_server.client()
    put(client, "session:a", session(server_now_ms(client) - 2 * HOUR_MS, "acme"))

    result = cli("sessions", "sweep", "--older-than", value)

    assert result.exit_code == 2
    assert f'--older-than: "{value}" has no unit; did you mean {value}h or {value}d?' in result.stderr
    assert client.exists("session:a") == 1
    assert _rows(cli) == []


def test_an_upper_case_unit_exits_2(redis_server, cli):
    result = cli("sessions", "sweep", "--older-than", "1M")

    assert result.exit_code == 2
    assert "lower case" in result.stderr


def test_history_since_needs_a_unit(redis_server, cli):
    result = cli("history", "--since", "7")

    assert result.exit_code == 2
    assert '--since: "7" has no unit' in result.stderr


def test_run_session_delete_without_parameters_is_a_usage_error_with_no_row(redis_server, cli):
    result = cli("run", "session-delete", "--json")

    assert result.exit_code == 2
    assert "exactly one of the parameters org or all" in result.stderr
    assert _rows(cli) == []


def test_a_parameter_the_job_does_not_take_is_a_usage_error(redis_server, cli):
    result = cli("run", "health", "--no-prune")

    assert result.exit_code == 2
    assert "health: it takes no parameter 'prune'" in result.stderr
    assert _rows(cli) == []


def test_bad_parameters_never_take_the_lease_or_fire_a_failure(redis_server, settings):
    from redis_maint.errors import UsageError
    from redis_maint.history.leases import active_holder
    from redis_maint.history.runs import HistoryStore
    from redis_maint.run import runner

    s = settings()
    store = HistoryStore(s.history_url)
    with pytest.raises(UsageError):
        runner.execute(s, "session-sweep", trigger="manual", params={"older_than": "0s"}, store=store)
    with pytest.raises(UsageError):
        runner.execute(s, "session-sweep", trigger="manual", params={"colder_than": "2h"}, store=store)
    assert store.list() == []
    assert active_holder(store, "session-sweep") is None


def test_recorded_params_are_what_the_operator_set(redis_server, cli):
    row = json_out(cli("sessions", "sweep", "--older-than", "36h", "--dry-run", "--json"))

    assert row["summary"]["params"] == {"older_than": "1d12h"}
