"""End to end: HTTP → API → SNS → SQS → a real worker process → handler, retry, DLQ.

Everything runs as it does in production, as separate processes, against the
real moto server the `emulator` fixture started.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.system import LocalSystem, local_system
from infra import aws
from infra.envelope import encode, make_envelope
from infra.failure import Failure
from infra.topology import Topology, load_topology
from tests import REPO
from tests.support import outbox as handler_outbox
from tests.support.emulator import AwsEnv
from tests.support.polling import eventually
from tests.support.queues import depth, dlq_url, peek_until, queue_url

pytestmark = pytest.mark.e2e


@dataclass
class Pipeline:
    """A running system plus what the tests need to observe it."""

    system: LocalSystem
    topology: Topology
    outbox: Path

    def post(self, job_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{self.system.api_url}/v1/jobs/{job_type}", json=payload, timeout=10)
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        return body

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        return handler_outbox.runs(self.outbox, job_id)

    def url(self, queue: str) -> str:
        return queue_url(self.topology, queue)

    def dlq_url(self, queue: str) -> str:
        return dlq_url(self.topology, queue)

    def depth(self, url: str) -> tuple[int, int, int]:
        found = depth(url)
        return found.visible, found.in_flight, found.delayed

    def dead_letters(self, queue: str, count: int) -> list[dict[str, Any]]:
        """Wait for ``count`` messages in ``queue``'s DLQ and return them (left in place)."""
        return peek_until(
            self.dlq_url(queue), count, what=f"{count} message(s) in the DLQ of {queue}"
        )


@pytest.fixture
def pipeline(
    aws_env: AwsEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Pipeline]:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    queues_file = REPO / "tests" / "fixtures" / "pipeline.yaml"
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(queues_file))
    monkeypatch.setenv("CONVEYOR_TEST_OUTBOX", str(outbox))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # worker processes import tests.jobs
    topology = load_topology(queues_file)
    with local_system(topology, use_emulator=False, log_dir=tmp_path) as system:
        yield Pipeline(system, topology, outbox)


def test_posted_job_runs_its_handler_and_its_messages_are_deleted(pipeline: Pipeline) -> None:
    job = pipeline.post("test.record", {"label": "hello"})
    assert sorted(job["queues"]) == ["audit", "work"]  # fan-out to both subscribers

    runs = eventually(
        lambda: (r := pipeline.attempts(job["id"])) and len(r) == 2 and r,
        what="the handler to run on both queues",
    )
    assert sorted(r["queue"] for r in runs) == ["audit", "work"]
    assert all(r["attempt"] == 1 and r["outcome"] == "ok" for r in runs)
    for queue in ("work", "audit"):
        url = pipeline.url(queue)
        eventually(lambda url=url: pipeline.depth(url) == (0, 0, 0), what=f"{queue} to drain")
        assert pipeline.depth(pipeline.dlq_url(queue)) == (0, 0, 0)


def test_flaky_job_is_retried_with_growing_gaps_and_succeeds(pipeline: Pipeline) -> None:
    job = pipeline.post("test.flaky", {"succeed_on_attempt": 3})

    runs = eventually(
        lambda: (r := pipeline.attempts(job["id"])) and r[-1]["outcome"] == "ok" and r,
        what="the flaky job to succeed",
    )
    assert [r["attempt"] for r in runs] == [1, 2, 3]
    assert [r["outcome"] for r in runs] == ["failed", "failed", "ok"]
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(runs)]
    # Backoff without jitter: 1 s after the first failure, 2 s after the second.
    # Visibility timeouts are lower bounds, so these hold however slow the machine is.
    assert gaps[0] >= 1.0
    assert gaps[1] >= 2.0
    assert gaps[1] > gaps[0]
    eventually(lambda: pipeline.depth(pipeline.url("work")) == (0, 0, 0), what="work to drain")
    assert pipeline.depth(pipeline.dlq_url("work")) == (0, 0, 0)


def test_always_failing_job_reaches_the_dlq_after_max_attempts(pipeline: Pipeline) -> None:
    job = pipeline.post("test.fail", {"label": "doomed"})

    [message] = pipeline.dead_letters("work", 1)
    failure = Failure.from_message(message)
    assert failure is not None
    assert failure.reason == "attempts_exhausted"
    assert failure.attempts == 3 == failure.max_attempts
    assert failure.error_type == "ValueError"
    assert failure.error_message == "cannot process doomed"
    assert "ValueError" in failure.traceback
    assert failure.job_id == job["id"]
    assert failure.job_type == "test.fail"
    assert failure.first_attempt_at is not None
    assert failure.first_attempt_at <= failure.last_failure_at
    assert json.loads(message["Body"])["id"] == job["id"]  # the original body, unchanged
    assert [r["attempt"] for r in pipeline.attempts(job["id"])] == [1, 2, 3]
    eventually(lambda: pipeline.depth(pipeline.url("work")) == (0, 0, 0), what="work to drain")


def test_permanent_error_is_dead_lettered_on_the_first_attempt(pipeline: Pipeline) -> None:
    job = pipeline.post("test.permanent", {"label": "never"})

    [message] = pipeline.dead_letters("work", 1)
    failure = Failure.from_message(message)
    assert failure is not None
    assert (failure.reason, failure.attempts, failure.job_id) == ("permanent_error", 1, job["id"])
    assert failure.error_message == "never can never work"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("this is not json", "invalid_json"),
        ('{"hello": "world"}', "not_an_envelope"),
        (
            '{"specversion":"1.0","id":"x1","type":"test.record","source":"/t",'
            '"time":"2026-01-01T00:00:00Z","conveyorversion":99,"data":{"label":"a"}}',
            "unsupported_version",
        ),
        (
            '{"specversion":"1.0","id":"x2","type":"nope.unknown","source":"/t",'
            '"time":"2026-01-01T00:00:00Z","data":{}}',
            "unknown_job_type",
        ),
        (
            '{"specversion":"1.0","id":"x3","type":"test.record","source":"/t",'
            '"time":"2026-01-01T00:00:00Z","data":{"label":42}}',
            "invalid_payload",
        ),
    ],
)
def test_malformed_message_reaches_the_dlq_on_first_receive(
    pipeline: Pipeline, body: str, reason: str
) -> None:
    aws.client("sqs").send_message(QueueUrl=pipeline.url("work"), MessageBody=body)

    [message] = pipeline.dead_letters("work", 1)
    failure = Failure.from_message(message)
    assert failure is not None
    assert failure.reason == reason
    assert failure.attempts == 1
    assert message["Body"] == body  # byte for byte, so nothing is lost
    eventually(lambda: pipeline.depth(pipeline.url("work")) == (0, 0, 0), what="work to drain")


def test_same_message_delivered_twice_is_handled_without_error(pipeline: Pipeline) -> None:
    envelope = make_envelope("test.record", {"label": "twice"})
    body = encode(envelope)
    sqs = aws.client("sqs")
    for _ in range(2):
        sqs.send_message(QueueUrl=pipeline.url("work"), MessageBody=body)

    runs = eventually(
        lambda: (r := pipeline.attempts(envelope.id)) and len(r) == 2 and r,
        what="both deliveries to run",
    )
    assert all(r["outcome"] == "ok" and r["job_id"] == envelope.id for r in runs)
    eventually(lambda: pipeline.depth(pipeline.url("work")) == (0, 0, 0), what="work to drain")
    assert pipeline.depth(pipeline.dlq_url("work")) == (0, 0, 0)
