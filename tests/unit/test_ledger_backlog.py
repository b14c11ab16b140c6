"""The ledger writer behind its jobs: a job's waiting update is replaced, not queued (issue 20).

A worker process whose ledger writes lag behind its jobs used to queue two updates
per job (running, then the outcome) until its queue held 10,000: the per-job memory
growth the soak benchmark measured. Once behind, the writer now keeps one update
per job, and the start time survives.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from infra.ledger import RunState, RunUpdate, latest_of
from workers.hooks import LEDGER_COALESCE_AFTER, BackgroundWriter

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _update(job_id: str, state: RunState, *, attempt: int = 1, at: datetime = T0) -> RunUpdate:
    return RunUpdate(
        queue="work", job_id=job_id, job_type="t.job", state=state, attempt=attempt, at=at
    )


def test_the_later_update_wins_and_keeps_the_attempts_start() -> None:
    running = _update("j1", "running", at=T0)
    done = _update("j1", "succeeded", at=T0 + timedelta(seconds=3))
    merged = latest_of(running, done)
    assert merged.state == "succeeded"
    assert merged.started_at == T0
    assert latest_of(done, running) == merged  # whatever the order they arrive in


def test_an_earlier_attempts_start_is_not_carried_over() -> None:
    retrying = _update("j1", "retrying", attempt=1)
    running = _update("j1", "running", attempt=2, at=T0 + timedelta(seconds=5))
    assert latest_of(retrying, running) == running
    first_start = _update("j1", "running", attempt=1)
    done = _update("j1", "succeeded", attempt=2)
    assert latest_of(first_start, done).started_at is None


def test_a_writer_behind_keeps_one_update_per_job_and_writes_each_jobs_last_state() -> None:
    gate = threading.Event()
    written: list[RunUpdate] = []

    def write(update: RunUpdate) -> None:
        gate.wait(10)  # DynamoDB slower than the jobs
        written.append(update)

    writer = BackgroundWriter(write, writers=1)
    jobs = 200
    for i in range(jobs):
        writer.submit(_update(f"j{i}", "running", at=T0))
        writer.submit(_update(f"j{i}", "succeeded", at=T0 + timedelta(seconds=1)))
    # Behind by far more than the threshold: about one waiting update per job, not two.
    assert writer._pending <= jobs + LEDGER_COALESCE_AFTER
    gate.set()
    assert writer.flush(timeout_s=10)

    last: dict[str, RunUpdate] = {}
    for update in written:
        last[update.job_id] = update
    assert len(last) == jobs
    assert all(u.state == "succeeded" for u in last.values())
    # Jobs whose running update was replaced still record when they started.
    coalesced = [u for u in written if u.state == "succeeded" and u.started_at is not None]
    assert coalesced
    assert all(u.started_at == T0 for u in coalesced)
    assert len(written) < 2 * jobs


def test_a_writer_that_keeps_up_writes_every_state_in_order() -> None:
    written: list[str] = []
    writer = BackgroundWriter(lambda u: written.append(u.state), writers=4)
    states: list[RunState] = ["running", "retrying", "running", "succeeded"]
    for attempt, state in zip([1, 1, 2, 2], states, strict=True):
        writer.submit(_update("j1", state, attempt=attempt))
        assert writer.flush(timeout_s=5)
    assert written == ["running", "retrying", "running", "succeeded"]
