import os
import threading

import pytest

from redis_maint.idle_cpu import run_idle


def _policy() -> tuple[int, str]:
    return os.sched_getscheduler(0), threading.current_thread().name


def test_work_runs_in_its_own_thread_at_idle_priority_and_the_caller_keeps_its_own():
    before = os.sched_getscheduler(0)
    policy, thread = run_idle(_policy, name="sweep-test")
    assert (policy, thread) == (os.SCHED_IDLE, "sweep-test")
    assert os.sched_getscheduler(0) == before != os.SCHED_IDLE


def test_the_work_s_exception_reaches_the_caller():
    def fails():
        raise LookupError("no such node")

    with pytest.raises(LookupError, match="no such node"):
        run_idle(fails, name="sweep-test")


def test_a_worker_thread_can_hand_work_to_an_idle_thread():
    """The daemon runs jobs in a thread pool: the sweep's own thread starts from one of those."""
    results = []
    worker = threading.Thread(target=lambda: results.append(run_idle(_policy, name="from-worker")))
    worker.start()
    worker.join(10)
    assert results == [(os.SCHED_IDLE, "from-worker")]
