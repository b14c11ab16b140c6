"""The asyncio pool's bridge and runner: sync hooks around an awaited ``async def`` handler."""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from infra.envelope import encode, make_envelope
from infra.topology import Topology, load_topology
from tests import REPO
from tests.support import outbox
from workers.aio.bridge import NotInAsyncioPoolError, await_job, run_sync, run_to_completion
from workers.runner import JobRunner

TOPOLOGY = REPO / "tests" / "fixtures" / "pools.yaml"
where = contextvars.ContextVar("where", default="unset")


def run(fn: Any, *args: Any) -> Any:
    return asyncio.run(run_sync(fn, *args))


def test_sync_code_waits_for_a_coroutine_and_gets_its_result() -> None:
    async def double(n: int) -> int:
        await asyncio.sleep(0)
        return 2 * n

    assert run(lambda: await_job(double(4)) + await_job(double(1))) == 10


def test_the_coroutine_s_exception_is_raised_in_the_sync_code() -> None:
    async def fail() -> None:
        await asyncio.sleep(0)
        raise KeyError("boom")

    def call() -> str:
        try:
            await_job(fail())
        except KeyError:
            return "caught"
        return "not raised"

    assert run(call) == "caught"


def test_at_the_limit_the_coroutine_is_cancelled_and_the_soft_limit_raised() -> None:
    seen: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    def call() -> str:
        try:
            await_job(forever(), 0.05)
        except SoftTimeLimitExceeded as exc:
            return str(exc)
        return "not raised"

    assert "cancelled at max_runtime_s (0.05 s)" in run(call)
    assert seen == ["cancelled"]


def test_a_timeout_error_of_the_handler_is_its_own_not_the_limit() -> None:
    async def times_out() -> None:
        await asyncio.sleep(0)
        raise TimeoutError("the HTTP call timed out")

    def call() -> str:
        try:
            await_job(times_out(), 60)
        except TimeoutError as exc:
            return type(exc).__name__
        return "not raised"

    assert run(call) == "TimeoutError"


def test_context_the_sync_code_set_is_seen_by_the_coroutine() -> None:
    async def read() -> str:
        return where.get()

    def call() -> str:
        where.set("job")
        return await_job(read())

    assert run(call) == "job"


def test_jobs_wait_side_by_side_on_one_loop() -> None:
    async def main() -> list[str]:
        gate = asyncio.Event()
        order: list[str] = []

        async def first() -> None:
            order.append("first waits")
            await gate.wait()
            order.append("first done")

        async def second() -> None:
            order.append("second opens")
            gate.set()

        one = asyncio.ensure_future(run_sync(await_job, first()))
        await asyncio.sleep(0)
        await run_sync(await_job, second())
        await one
        return order

    # The first job's greenlet is switched out while it waits: the second runs meanwhile.
    assert asyncio.run(main()) == ["first waits", "second opens", "first done"]


def test_outside_the_pool_an_awaitable_is_refused() -> None:
    async def nothing() -> None:
        return None

    with pytest.raises(NotInAsyncioPoolError, match="worker_pool: asyncio"):
        await_job(nothing())


# -- the runner on the asyncio pool ------------------------------------------------------


@pytest.fixture
def topology() -> Topology:
    return load_topology(TOPOLOGY, environment="unit")


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(tmp_path))
    return tmp_path


def message(job_type: str, data: dict[str, Any], attempt: int = 1) -> dict[str, Any]:
    return {
        "MessageId": "m-1",
        "Body": encode(make_envelope(job_type, data)),
        "Attributes": {"ApproximateReceiveCount": str(attempt)},
    }


def test_the_runner_awaits_an_async_handler(topology: Topology, box: Path) -> None:
    runner = JobRunner(topology, ["looped"], awaiter=await_job)
    outcome = run(runner.run, message("test.note", {"label": "x"}), "looped")
    assert outcome.kind == "succeeded"
    assert outbox.outcomes(box, str(outcome.job_id)) == ["ok"]


def test_an_async_handler_s_failures_are_retried_or_dead_lettered(
    topology: Topology, box: Path
) -> None:
    runner = JobRunner(topology, ["looped"], awaiter=await_job, rng=random.Random(1))
    retry = run(runner.run, message("test.flaky", {"succeed_on_attempt": 2}), "looped")
    assert (retry.kind, retry.error_type, retry.delay_s) == ("retry", "ConnectionError", 1)
    dead = run(runner.run, message("test.permanent", {"label": "p"}), "looped")
    assert dead.kind == "dead_letter"
    assert dead.failure is not None
    assert dead.failure.reason == "permanent_error"


def test_an_async_handler_past_max_runtime_is_a_failed_attempt_like_prefork_s(
    topology: Topology, box: Path
) -> None:
    runner = JobRunner(topology, ["looped"], awaiter=await_job)
    outcome = run(runner.run, message("test.overrun", {"seconds": 60}), "looped")  # limit 2 s
    assert (outcome.kind, outcome.error_type) == ("retry", "SoftTimeLimitExceeded")
    assert outbox.outcomes(box, str(outcome.job_id)) == ["started", "cancelled"]
    last = run(runner.run, message("test.overrun", {"seconds": 60}, attempt=3), "looped")
    assert last.failure is not None
    assert (last.failure.reason, last.failure.error_type) == (
        "attempts_exhausted",
        "SoftTimeLimitExceeded",
    )


def test_an_async_handler_without_the_asyncio_pool_fails_its_attempt(
    topology: Topology, box: Path
) -> None:
    runner = JobRunner(topology, ["looped"])
    outcome = runner.run(message("test.note", {"label": "x"}), "looped")
    assert (outcome.kind, outcome.error_type) == ("retry", "TypeError")
    assert "needs worker_pool: asyncio" in str(outcome.error)


def test_the_handler_runs_within_the_pool_s_time_limit(topology: Topology, box: Path) -> None:
    limits: list[float] = []

    @contextmanager
    def spy(runtime_s: float) -> Iterator[None]:
        limits.append(runtime_s)
        yield

    runner = JobRunner(topology, ["threaded"], time_limit=spy)
    runner.run(message("test.overrun", {"seconds": 0}), "threaded")
    runner.run(message("test.note", {"label": "x"}), "threaded")  # no max_runtime_s
    assert limits == [2]


def test_without_a_pool_a_coroutine_runs_on_a_loop_of_its_own(
    topology: Topology, box: Path
) -> None:
    # The Lambda adapter's awaiter: one record at a time, a loop per record.
    runner = JobRunner(topology, ["looped"], awaiter=run_to_completion)
    assert runner.run(message("test.note", {"label": "x"}), "looped").kind == "succeeded"
    stopped = runner.run(message("test.overrun", {"seconds": 60}), "looped")
    assert (stopped.kind, stopped.error_type) == ("retry", "SoftTimeLimitExceeded")
