"""max_runtime_s where jobs run in the node process: the solo pool's timer, the overrun watch,
the handler's cooperative deadline (tests/e2e/test_pool_kinds.py runs them in real nodes)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from infra.errors import EXIT_RECYCLED
from infra.topology import load_topology
from tests import REPO
from tests.support.polling import eventually
from workers.api import JobContext
from workers.time_limit import OverrunWatch, alarm_limit, runtime_limits


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def watch(clock: Clock, recycled: list[str], exits: list[int]) -> OverrunWatch:
    return OverrunWatch(
        {"slow": 2.0},
        recycled.append,
        exit_after_s=0.01,
        grace_s=5.0,
        clock=clock,
        hard_exit=exits.append,
    )


def test_a_job_past_its_limit_and_grace_recycles_the_node_once_then_exits() -> None:
    clock, recycled, exits = Clock(), [], []
    w = watch(clock, recycled, exits)
    w.job_started(task_id="j1", task=SimpleNamespace(name="slow"))
    clock.now += 6.9  # within limit + grace
    assert w.check() is None
    clock.now += 0.2
    assert w.check() == "job j1 (slow) overran max_runtime_s 2"
    assert w.check() == "job j1 (slow) overran max_runtime_s 2"
    assert recycled == ["job j1 (slow) overran max_runtime_s 2"]  # once
    # Still alive after exit_after_s (a thread that never returns): the process ends.
    eventually(lambda: exits == [EXIT_RECYCLED], what="the hard exit")


def test_finished_jobs_and_job_types_without_a_limit_are_not_watched() -> None:
    clock, recycled, exits = Clock(), [], []
    w = watch(clock, recycled, exits)
    w.job_started(task_id="j1", task=SimpleNamespace(name="slow"))
    w.job_started(task_id="j2", task=SimpleNamespace(name="unlimited"))
    w.job_finished(task_id="j1")
    clock.now += 3600
    assert w.check() is None
    assert recycled == []
    assert exits == []


def test_the_limits_are_those_of_the_pool_s_job_types() -> None:
    topology = load_topology(REPO / "tests" / "fixtures" / "pools.yaml", environment="unit")
    assert runtime_limits(topology, ["threaded"]) == {"test.overrun": 2}


def test_the_solo_timer_raises_the_soft_limit_in_the_handler() -> None:
    def busy() -> None:
        with alarm_limit(0.05):
            for _ in range(1000):  # at most 10 s: the alarm comes long before
                time.sleep(0.01)

    with pytest.raises(SoftTimeLimitExceeded):
        busy()


def test_the_solo_timer_is_cleared_when_the_block_ends() -> None:
    with alarm_limit(0.05):
        pass
    time.sleep(0.1)  # past the limit: nothing may be raised now


def test_the_solo_timer_does_nothing_off_the_main_thread() -> None:
    done: list[bool] = []

    def off_main() -> None:
        with alarm_limit(0.01):
            done.append(True)

    thread = threading.Thread(target=off_main)
    thread.start()
    thread.join()
    assert done == [True]


def test_the_handler_can_read_how_long_it_has_left() -> None:
    def ctx(deadline: float | None) -> JobContext:
        return JobContext("j", "t", 1, 3, "q", datetime.now(UTC), deadline=deadline)

    assert ctx(None).time_left_s() is None
    limited = ctx(time.monotonic() + 60)
    left = limited.time_left_s()
    assert left is not None
    assert 0 < left <= 60
    left = ctx(time.monotonic() - 1).time_left_s()
    assert left is not None
    assert left < 0
