"""The job runner decides each delivery's outcome: succeed, retry after backoff, dead-letter."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from infra.envelope import encode, make_envelope
from infra.topology import Topology, load_topology
from tests import REPO
from workers.api import RetryLater
from workers.runner import JobRunner

TOPOLOGY = REPO / "tests" / "fixtures" / "pipeline.yaml"


@pytest.fixture
def topology() -> Topology:
    return load_topology(TOPOLOGY, environment="unit")


@pytest.fixture
def runner(topology: Topology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobRunner:
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(tmp_path))
    return JobRunner(topology, ["work", "audit"], rng=random.Random(1))


def message(body: str, attempt: int = 1) -> dict[str, Any]:
    return {
        "MessageId": "m-1",
        "Body": body,
        "Attributes": {
            "ApproximateReceiveCount": str(attempt),
            "ApproximateFirstReceiveTimestamp": "1767225600000",
        },
    }


def job(job_type: str, data: dict[str, Any]) -> str:
    return encode(make_envelope(job_type, data))


def test_success(runner: JobRunner, tmp_path: Path) -> None:
    body = job("test.record", {"label": "x"})
    outcome = runner.run(message(body), "work")
    assert outcome.kind == "succeeded"
    assert outcome.job_id == json.loads(body)["id"]
    assert (tmp_path / f"{outcome.job_id}.jsonl").exists()  # the handler ran


def test_failure_before_the_budget_is_a_retry_with_the_backoff_delay(runner: JobRunner) -> None:
    body = job("test.flaky", {"succeed_on_attempt": 5})
    delays = [runner.run(message(body, attempt), "work").delay_s for attempt in (1, 2)]
    assert delays == [1, 2]  # base 1 s, doubling, no jitter (pipeline.yaml)
    outcome = runner.run(message(body, 2), "work")
    assert (outcome.kind, outcome.error_type) == ("retry", "ConnectionError")


def test_failure_on_the_last_attempt_is_dead_lettered_with_the_record(runner: JobRunner) -> None:
    outcome = runner.run(message(job("test.fail", {"label": "z"}), attempt=3), "work")
    assert outcome.kind == "dead_letter"
    failure = outcome.failure
    assert failure is not None
    assert (failure.reason, failure.attempts, failure.max_attempts) == ("attempts_exhausted", 3, 3)
    assert failure.error_type == "ValueError"
    assert failure.first_attempt_at == "2026-01-01T00:00:00+00:00"
    assert "raise ValueError" in failure.traceback


def test_permanent_error_skips_the_remaining_attempts(runner: JobRunner) -> None:
    outcome = runner.run(message(job("test.permanent", {"label": "p"})), "work")
    assert outcome.kind == "dead_letter"
    assert outcome.failure is not None
    assert outcome.failure.reason == "permanent_error"


def test_job_type_not_handled_on_this_queue_is_dead_lettered(runner: JobRunner) -> None:
    # audit receives only test.record; a test.fail put on it by hand has no handler there.
    outcome = runner.run(message(job("test.fail", {"label": "q"})), "audit")
    assert outcome.failure is not None
    assert outcome.failure.reason == "no_handler"


def test_a_dataref_outside_the_payload_bucket_is_dead_lettered(runner: JobRunner) -> None:
    # Never fetched: a message must not make a worker read another bucket.
    doc = json.loads(job("test.record", {"label": "x"}))
    doc["dataref"] = "s3://someone-elses-bucket/key"
    outcome = runner.run(message(json.dumps(doc)), "work")
    assert outcome.failure is not None
    assert outcome.failure.reason == "invalid_dataref"
    assert "someone-elses-bucket" in outcome.failure.error_message


def test_a_handler_that_asks_for_a_delay_gets_it(
    topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy(payload: object, ctx: object) -> None:
        raise RetryLater("busy", delay_s=42.2)

    runner = JobRunner(topology, ["work"])
    runner._handlers["work", "test.record"] = busy
    outcome = runner.run(message(job("test.record", {"label": "x"})), "work")
    assert (outcome.kind, outcome.delay_s) == ("retry", 43)
