"""The asyncio pool class as Celery drives it: apply_async, callbacks, warm and cold stops.

This exercises the Celery hooks the pool relies on (workers/compat.py: BasePool.on_start,
on_apply, on_stop, on_terminate, signal_safe and celery.concurrency.base.apply_target).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from billiard.einfo import ExceptionInfo
from billiard.exceptions import WorkerLostError

from tests.support.polling import eventually
from workers.aio.bridge import await_job
from workers.aio.pool import AsyncioPool


@pytest.fixture
def pool() -> Iterator[AsyncioPool]:
    p = AsyncioPool(limit=4)
    p.start()
    yield p
    p.terminate()


class Calls:
    def __init__(self) -> None:
        self.accepted: list[int] = []
        self.results: list[Any] = []
        self.threads: set[str] = set()

    def accept(self, pid: int, time_accepted: float) -> None:
        self.accepted.append(pid)

    def done(self, result: Any) -> None:
        self.threads.add(threading.current_thread().name)
        self.results.append(result)


def test_jobs_run_on_the_loop_and_report_through_the_callbacks(pool: AsyncioPool) -> None:
    calls = Calls()

    async def work(n: int) -> int:
        await asyncio.sleep(0)
        return n * n

    for n in range(3):
        pool.apply_async(
            lambda n: await_job(work(n)),
            args=(n,),
            callback=calls.done,
            accept_callback=calls.accept,
        )
    eventually(lambda: len(calls.results) == 3, what="three results")
    assert sorted(calls.results) == [0, 1, 4]
    assert len(calls.accepted) == 3
    assert calls.threads == {"conveyor-aio-loop"}  # one thread for every job


def test_a_warm_stop_waits_for_the_jobs_in_flight(pool: AsyncioPool) -> None:
    calls = Calls()
    gate = threading.Event()

    async def slow() -> str:
        while not gate.is_set():
            await asyncio.sleep(0.01)
        return "finished"

    pool.apply_async(lambda: await_job(slow()), callback=calls.done)
    eventually(lambda: pool._tasks, what="the job to start")
    threading.Timer(0.2, gate.set).start()
    pool.stop()  # returns once the job finished
    assert calls.results == ["finished"]


def test_a_cold_stop_cancels_the_jobs_and_reports_them_lost(pool: AsyncioPool) -> None:
    calls = Calls()
    cancelled: list[bool] = []

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    pool.apply_async(lambda: await_job(forever()), callback=calls.done)
    eventually(lambda: pool._tasks, what="the job to start")
    pool.terminate()
    assert cancelled == [True]
    [result] = calls.results
    # What a pool process's death reports: the request rejects, the message comes back.
    assert isinstance(result, ExceptionInfo)
    assert isinstance(result.exception.exc, WorkerLostError)  # billiard's picklable wrapper


def test_a_job_cancelled_through_its_handle_reports_lost(pool: AsyncioPool) -> None:
    calls = Calls()

    async def forever() -> None:
        await asyncio.Event().wait()

    # What Celery's Request.cancel does in a cold shutdown: terminate_job, then the handle.
    handle = pool.apply_async(lambda: await_job(forever()), callback=calls.done)
    eventually(lambda: pool._tasks, what="the job to start")
    pool.terminate_job(os.getpid())
    handle.terminate()
    eventually(lambda: calls.results, what="the job to report")
    [result] = calls.results
    assert isinstance(result.exception.exc, WorkerLostError)
